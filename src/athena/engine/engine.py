"""The one owner of a turn: its session, "start over", the local path, the LLM with history, the Reply.

One pipeline serves whole and streamed answers: `open()` runs the steps that need no LLM (session, start
over, local handlers) and returns a TurnRun; its `deltas()` stream the LLM's text; `handle()` is the same run,
awaited whole. Every way a turn can fail ends in a Reply a voice user can hear (`response_type="error"`), with
`failure` telling the wire formats which status fits. Knows nothing about HTTP.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import replace
from typing import Any, Protocol

import structlog

from athena.engine.keys import conversation_key, device_key, one_off_key
from athena.engine.operator import Operator
from athena.engine.prompt import PromptSettings, build_messages
from athena.engine.tools import ToolRounds, gave_up
from athena.llm.base import (
    ChatMessage,
    Completion,
    LLMBackend,
    LLMContextOverflow,
    LLMError,
    LLMHTTPError,
    RelayChunk,
    Relayed,
)
from athena.local.reset import is_start_over
from athena.observability import ANSWERS, FAILURES, LOCAL_SECONDS
from athena.records import Message, MessageMeta, Session
from athena.sessions.manager import DeviceView, SessionManager, estimate_tokens, trim
from athena.stores.base import DeviceChanged, SessionGone, StoreError
from athena.tools import Toolbox
from athena.turns import AnswerPath, Failure, LocalAnswer, Reply, Turn

log = structlog.get_logger("athena.engine")

# What a voice user hears when a turn fails, in the languages "start over" knows (others hear English).
SPOKEN_ERRORS: dict[str, dict[Failure, str]] = {
    "en": {
        "llm_error": "Sorry, I can't reach my language model right now.",
        "llm_timeout": "Sorry, my language model is taking too long to answer.",
        "llm_model_missing": "Sorry, the language model I'm set up to use isn't installed on its server.",
        "llm_misconfigured": "Sorry, my language model's address isn't set up right.",
        "store": "Sorry, I can't reach my memory right now. Please try again in a moment.",
        "internal": "Sorry, something went wrong on my side.",
    },
    "de": {
        "llm_error": "Entschuldigung, ich erreiche mein Sprachmodell gerade nicht.",
        "llm_timeout": "Entschuldigung, mein Sprachmodell braucht zu lange für eine Antwort.",
        "llm_model_missing": "Entschuldigung, mein Sprachmodell ist auf seinem Server nicht installiert.",
        "llm_misconfigured": "Entschuldigung, die Adresse meines Sprachmodells ist falsch eingestellt.",
        "store": "Entschuldigung, ich erreiche mein Gedächtnis gerade nicht. Versuch es gleich noch einmal.",
        "internal": "Entschuldigung, bei mir ist etwas schiefgegangen.",
    },
    "fr": {
        "llm_error": "Désolé, je n'arrive pas à joindre mon modèle de langage pour le moment.",
        "llm_timeout": "Désolé, mon modèle de langage met trop de temps à répondre.",
        "llm_model_missing": "Désolé, mon modèle de langage n'est pas installé sur son serveur.",
        "llm_misconfigured": "Désolé, l'adresse de mon modèle de langage est mal configurée.",
        "store": "Désolé, je n'arrive pas à accéder à ma mémoire. Réessaie dans un instant.",
        "internal": "Désolé, quelque chose s'est mal passé de mon côté.",
    },
    "es": {
        "llm_error": "Lo siento, ahora mismo no puedo contactar con mi modelo de lenguaje.",
        "llm_timeout": "Lo siento, mi modelo de lenguaje está tardando demasiado en responder.",
        "llm_model_missing": "Lo siento, mi modelo de lenguaje no está instalado en su servidor.",
        "llm_misconfigured": "Lo siento, la dirección de mi modelo de lenguaje está mal configurada.",
        "store": "Lo siento, ahora mismo no puedo acceder a mi memoria. Inténtalo de nuevo en un momento.",
        "internal": "Lo siento, algo ha fallado por mi parte.",
    },
    "nl": {
        "llm_error": "Sorry, ik kan mijn taalmodel nu niet bereiken.",
        "llm_timeout": "Sorry, mijn taalmodel doet er te lang over om te antwoorden.",
        "llm_model_missing": "Sorry, mijn taalmodel is niet geïnstalleerd op zijn server.",
        "llm_misconfigured": "Sorry, het adres van mijn taalmodel is verkeerd ingesteld.",
        "store": "Sorry, ik kan mijn geheugen nu niet bereiken. Probeer het zo nog eens.",
        "internal": "Sorry, er ging bij mij iets mis.",
    },
}


# The device policy's answers (ATHENA_DEVICE_POLICY=known, or a blocked device).
SPOKEN_REFUSED = "Sorry, this device is not allowed to talk to me yet."
SPOKEN_BLOCKED = "Sorry, this device is blocked."


def spoken_error(failure: Failure, language: str | None) -> str:
    base = (language or "en").replace("_", "-").split("-", 1)[0].casefold()
    return SPOKEN_ERRORS.get(base, SPOKEN_ERRORS["en"])[failure]


_QUOTES = "\"'“”‘’«»)]*_ \t\r\n"


def wants_follow_up(answer: str) -> bool:
    """HA's own rule: the assistant asked something, so the satellite reopens the microphone."""
    return answer.rstrip(_QUOTES).endswith("?")


_LLM_FAILURES: dict[str, Failure] = {
    "timeout": "llm_timeout", "model_missing": "llm_model_missing", "wrong_endpoint": "llm_misconfigured",
}


def failure_of(exc: BaseException) -> Failure:
    if isinstance(exc, LLMError):
        return _LLM_FAILURES.get(exc.kind, "llm_error")
    if isinstance(exc, StoreError):
        return "store"
    return "internal"


class LocalHandler(Protocol):
    """Tried in order before the LLM; returning None passes the turn on."""

    async def handle(self, turn: Turn, history: Sequence[Message]) -> LocalAnswer | None: ...


class RelayFailed(Exception):
    """The stateless relay's upstream failed; `status` and `body`: the upstream's HTTP error, if any."""

    def __init__(self, failure: Failure, message: str, status: int | None = None, body: bytes = b"") -> None:
        super().__init__(message)
        self.failure = failure
        self.status = status
        self.body = body


class Engine:
    def __init__(
        self,
        sessions: SessionManager,
        llm: LLMBackend,
        *,
        handlers: Sequence[LocalHandler] = (),
        prompt: PromptSettings | None = None,
        max_tokens: int | None = None,
        toolbox: Toolbox | None = None,
        tool_rounds: int = 5,
        answer_deadline: float = 30.0,
        area_of: Callable[[Turn], str | None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.llm = llm
        self.handlers = list(handlers)
        self.prompt = prompt or PromptSettings()
        self.max_tokens = max_tokens  # the answer cap when a turn sets none (ATHENA_LLM_MAX_TOKENS)
        self.toolbox = toolbox  # Athena's own tools (MCP), for the turns it owns
        self.tool_rounds = tool_rounds  # ATHENA_TOOL_ROUNDS: model calls with tools, at most, per turn
        self.answer_deadline = answer_deadline  # seconds: no new tool round after this
        self.area_of = area_of  # the device's room from HA's registry, when the caller did not say
        self.clock: Callable[[], float] = sessions.clock
        self.operator = Operator(sessions, self.prompt.time_zone)  # the console's devices, exports, usage

    # -- turns ----------------------------------------------------------------------------------------
    async def open(self, turn: Turn) -> TurnRun:
        """Run the steps before the LLM: afterwards `session_id` is known, and `reply` is set when the turn
        was answered without the LLM (start over, a local answer, a failure)."""
        run = TurnRun(self, turn)
        await run.start()
        return run

    async def handle(self, turn: Turn) -> Reply:
        run = await self.open(turn)
        async with aclosing(run.deltas()) as deltas:
            async for _ in deltas:
                pass
        assert run.reply is not None
        if not run.reply.kept:  # nothing was heard yet: say the turn was not kept, so it is asked again
            return self.failed(turn, run.session, StoreError("the answer could not be saved"), run._started)
        return run.reply

    # -- the stateless relay --------------------------------------------------------------------------
    async def relay(self, body: Mapping[str, Any]) -> Relayed:
        try:
            relayed = await self.llm.relay(body)
        except LLMError as exc:
            raise self._relay_failed(exc, streamed=False) from None
        ANSWERS.labels(path="llm").inc()
        return relayed

    async def relay_stream(self, body: Mapping[str, Any]) -> AsyncGenerator[RelayChunk, None]:
        """The upstream's events; the answer is counted when the stream ends (not when a client leaves)."""
        try:
            async with aclosing(self.llm.relay_stream(body)) as chunks:
                async for chunk in chunks:
                    yield chunk
        except LLMError as exc:
            raise self._relay_failed(exc, streamed=True) from None
        ANSWERS.labels(path="llm").inc()

    def _relay_failed(self, exc: LLMError, *, streamed: bool) -> RelayFailed:
        failure = failure_of(exc)
        ANSWERS.labels(path="error").inc()
        FAILURES.labels(reason=failure).inc()
        status, body = (exc.status, exc.body) if isinstance(exc, LLMHTTPError) else (None, b"")
        log.warning("relay.failed", error=str(exc) or type(exc).__name__, status=status, streamed=streamed)
        return RelayFailed(failure, f"the language model failed: {exc}", status, body)

    # -- operators ------------------------------------------------------------------------------------
    async def models(self) -> list[str]:
        return await self.llm.models()

    async def sessions_live(self) -> list[dict[str, Any]]:
        return await self.sessions.list_active()

    async def transcript(self, device: str) -> tuple[dict[str, Any], list[Message]] | None:
        """The device's live session and every stored message (not trimmed for the LLM)."""
        described = await self.sessions.describe(device)
        if described is None:
            return None
        return described, await self.sessions.messages(described["id"], device)

    async def end_session(self, device: str) -> bool:
        """"Start over" from outside a turn (an operator, `athena chat`'s /new). False: nothing was live."""
        return await self.sessions.clear(device)

    # -- bookkeeping shared by every run ----------------------------------------------------------------
    def answered(self, turn: Turn, session: Session, path: AnswerPath, latency: float) -> None:
        """Count and log an answer, once it is kept (the one place answers are counted)."""
        ANSWERS.labels(path=path).inc()
        log.info("turn.answered", device=session.device, session_id=session.id, path=path, latency_ms=latency)
        log.debug("turn.text", device=session.device, text=turn.text)

    def refused(self, turn: Turn, device: DeviceView, started: float) -> Reply:
        """The device policy's answer to a device not allowed (ATHENA_DEVICE_POLICY=known, or blocked)."""
        ANSWERS.labels(path="refused").inc()
        log.info("turn.refused", device=device.device, status=device.status, latency_ms=_ms(started))
        return Reply(
            speech=SPOKEN_BLOCKED if device.status == "blocked" else SPOKEN_REFUSED,
            session_id="", response_type="error", path="refused", error_code="failed_to_handle",
            failure="refused",
        )

    def failed(self, turn: Turn, session: Session | None, exc: BaseException, started: float) -> Reply:
        failure = failure_of(exc)
        ANSWERS.labels(path="error").inc()
        FAILURES.labels(reason=failure).inc()
        fields = {
            "device": session.device if session else device_key(turn),
            "session_id": session.id if session else None,
            "failure": failure,
            "error": str(exc) or type(exc).__name__,
            "latency_ms": _ms(started),
        }
        if failure == "internal":
            log.error("turn.failed", exc_info=exc, **fields)
        else:
            log.warning("turn.failed", **fields)
        return Reply(
            speech=spoken_error(failure, turn.language),
            session_id=session.id if session else (turn.conversation_id or ""),
            response_type="error",
            path="error",
            error_code="failed_to_handle",
            failure=failure,
        )


class TurnRun:
    """One turn in progress. After `Engine.open()`: `session_id` is known and `reply` is set if the turn is
    already answered. `deltas()` streams the answer's text (an answer found without the LLM is one delta);
    when it ends, `reply` holds the saved turn — or an error reply when the LLM failed, and then nothing is
    saved. A consumer that stops early saves nothing either."""

    def __init__(self, engine: Engine, turn: Turn) -> None:
        self.engine = engine
        self.asked = turn  # as it arrived; `turn` is it as the device's settings shape it
        self.turn = turn
        self.device: DeviceView | None = None  # None: not a device's turn
        self.session: Session | None = None
        self.reply: Reply | None = None
        self._history: list[Message] = []
        self._started = time.perf_counter()
        self._completion = Completion("")  # how the model's last call ended
        self._round_start = 0  # where the current call's deltas begin in the answer's parts

    @property
    def session_id(self) -> str:
        if self.reply is not None:
            return self.reply.session_id
        return self.session.id if self.session is not None else ""

    async def start(self) -> None:
        engine = self.engine
        try:
            for again in (True, False):  # again: another gateway changed this device's settings meanwhile
                try:
                    reset = await self._begin()
                    break
                except DeviceChanged:
                    if not again:
                        raise
            if self.session is None:  # refused by the device policy
                return
            turn = self.turn
            if reset is not None:  # the fresh session is the whole of "start over": one store write
                engine.answered(turn, self.session, "reset", _ms(self._started))
                self.reply = Reply(
                    speech=reset, session_id=self.session.id, response_type="action_done", path="reset",
                    continue_conversation=wants_follow_up(reset),
                )
                return
            if turn.area is None and engine.area_of is not None and (area := engine.area_of(turn)):
                self.turn = turn = replace(turn, area=area)  # the model is told where the user is
            if turn.prior:  # turns HA answered itself: kept first, then the history read again with them
                await self._save(turn.prior, step="prior")
                self._history = await engine.sessions.history(self.session)
            local = None if turn.tool_results else await self._local()
            if local is not None:
                LOCAL_SECONDS.observe(time.perf_counter() - self._started)
                self.reply = await self._finish(local.speech, local=local)
        except Exception as exc:  # a voice user still hears a sentence; the reason goes to the log
            self.reply = await self._failed(exc)

    async def _begin(self) -> str | None:
        """The device's settings (and the policy's refusal), the turn as they shape it, "start over", the
        session. Returns the "start over" answer, if that is what was said."""
        asked, sessions = self.asked, self.engine.sessions
        key = device_key(asked)
        self.device = None if key is None else await sessions.admit(key, asked.device_name, asked.area)
        if self.device is not None and self.device.refused:
            self.reply = self.engine.refused(asked, self.device, self._started)
            return None
        self.turn = turn = shaped(asked, self.device)
        reset = None if turn.tool_results else is_start_over(turn.text, turn.language)
        self.session = await self._session(new=turn.new_session or reset is not None, reset=reset is not None)
        return reset

    async def deltas(self) -> AsyncGenerator[str, None]:
        if self.reply is not None:
            if self.reply.failure is None:
                yield self.reply.speech
            return
        engine, turn = self.engine, self.turn
        tools = await self._tools()
        options = self._options(tools)
        history = self._fitting(self._history, options)
        parts: list[str] = []
        try:
            for attempt in (1, 2):
                messages = build_messages(engine.prompt, turn, history)
                try:
                    async with aclosing(self._ask(messages, options, parts)) as asked:
                        async for delta in asked:
                            yield delta
                    break
                except LLMContextOverflow as exc:
                    if parts or attempt == 2 or not history:
                        raise
                    history = self._shorter(history, options, messages, exc)
                    log.info("turn.context_overflow", session_id=self.session_id, history_kept=len(history))
            completion = self._completion
            while tools is not None and completion.tool_calls:
                if tools.rounds >= engine.tool_rounds or self._late():
                    log.warning("turn.tools_gave_up", session_id=self.session_id, rounds=tools.rounds)
                    apology = gave_up(turn.language)
                    yield apology
                    parts.append(apology)
                    completion = Completion(apology, "tool_rounds")
                    break
                said = "".join(parts[self._round_start:]).strip()
                messages += await tools.run(completion.tool_calls, said, engine.clock())
                if parts and not parts[-1][-1:].isspace():  # so the next call's words do not run on
                    parts.append(" ")
                    yield " "
                async with aclosing(self._ask(messages, options, parts)) as asked:
                    async for delta in asked:
                        yield delta
                completion = self._completion
            heard = "".join(parts).strip()
            if not heard and not completion.tool_calls:
                raise LLMError("empty answer")
            final = "".join(parts[self._round_start:]).strip()  # earlier calls' words are kept with them
            self.reply = await self._finish(final, completion=completion, tools=tools, heard=heard)
        except Exception as exc:
            if parts and isinstance(exc, StoreError):  # heard when streamed: only keeping it failed
                log.warning("turn.save_failed", session_id=self.session_id, error=str(exc))
                self.reply = Reply(speech="".join(parts).strip(), session_id=self.session_id, kept=False)
            else:
                self.reply = await self._failed(exc)

    async def _ask(
        self, messages: Sequence[ChatMessage], options: Mapping[str, Any], parts: list[str]
    ) -> AsyncGenerator[str, None]:
        """One call of the model: its deltas (also added to `parts`); then `_completion` is how it ended."""
        self._round_start = len(parts)
        # No deadline here: each backend enforces its own, so a fallback gets a full one.
        async with aclosing(self.engine.llm.stream(messages, **options)) as stream:
            async for delta in stream:
                parts.append(delta)
                yield delta
        self._completion = stream.completion or Completion("".join(parts[self._round_start:]))

    async def _tools(self) -> ToolRounds | None:
        """Athena's tools for this turn: none when the caller brought its own (they are the caller's to run),
        and none when no tool server answers."""
        engine, turn = self.engine, self.turn
        if engine.toolbox is None or turn.tools or self.session is None:
            return None
        offered = {tool.name: tool for tool in await engine.toolbox.tools()}
        if not offered:
            return None
        return ToolRounds(engine.toolbox, offered, self.session.device, turn.area, turn.language)

    def _late(self) -> bool:
        return time.perf_counter() - self._started > self.engine.answer_deadline

    # -- what the model is sent -----------------------------------------------------------------------
    def _options(self, tools: ToolRounds | None) -> dict[str, Any]:
        """The turn's options; the answer cap unless the caller set one; the caller's tools, or Athena's."""
        options = dict(self.turn.llm_options)
        if self.engine.max_tokens and not {"max_tokens", "max_completion_tokens"} & options.keys():
            options["max_tokens"] = self.engine.max_tokens
        if self.turn.tools:
            options["tools"] = list(self.turn.tools)
        elif tools is not None:
            options["tools"] = tools.specs()
        return options

    def _fitting(self, history: list[Message], options: Mapping[str, Any]) -> list[Message]:
        """The history that leaves room, in the model's context window (when known), for the instructions,
        this turn, the tools and the longest answer allowed. Estimates are rough: a tenth is kept spare."""
        window = self.engine.llm.context_tokens
        if not window:
            return history
        fixed = estimate_tokens(build_messages(self.engine.prompt, self.turn, []))
        fixed += estimate_tokens(list(options.get("tools") or ()))
        fixed += int(options.get("max_tokens") or options.get("max_completion_tokens") or 0)
        return trim(history, window - window // 10 - fixed)

    def _shorter(
        self,
        history: list[Message],
        options: Mapping[str, Any],
        refused: Sequence[ChatMessage],
        exc: LLMContextOverflow,
    ) -> list[Message]:
        """After the model refused the prompt as too long: what fits the window the error named — or, when it
        named none, a window somewhat smaller than the refused prompt (kept for later turns too) — and at most
        half the history."""
        llm = self.engine.llm
        if exc.context_tokens is None:
            asked = estimate_tokens(list(refused)) + int(options.get("max_tokens") or 0)
            if not llm.context_tokens or llm.context_tokens > asked:
                llm.learn_context(asked * 3 // 4)
        return trim(self._fitting(history, options), estimate_tokens(history) // 2)

    # -- steps ----------------------------------------------------------------------------------------
    async def _session(self, *, new: bool, reset: bool = False) -> Session:
        sessions, turn = self.engine.sessions, self.turn
        reset_ms = _ms(self._started) if reset else None  # a "start over" counts in usage
        if (key := device_key(turn)) is None and turn.conversation_id:
            known = await sessions.get(turn.conversation_id)  # a session id Athena returned earlier
            key = known.device if known is not None else conversation_key(turn.conversation_id)
            name, area, view = None, None, None
        else:
            name, area, view = turn.device_name, turn.area, self.device
        if key is None:
            return await sessions.resolve(one_off_key(), reset_ms=reset_ms)
        if reset:
            return await sessions.resolve(key, new=new, name=name, area=area, view=view, reset_ms=reset_ms)
        # The session and its history in one store operation: the common turn's first of two.
        session, self._history = await sessions.begin(key, new=new, name=name, area=area, view=view)
        return session

    async def _failed(self, exc: BaseException) -> Reply:
        """The spoken error; and, when there is a session to keep them in, the question and what went wrong,
        for the operator's transcript and the usage figures (the LLM's history leaves them out)."""
        reply = self.engine.failed(self.turn, self.session, exc, self._started)
        if self.session is None or isinstance(exc, StoreError):
            return reply
        device, now = self.session.device, self.engine.clock()
        meta = MessageMeta(
            device=device, path="error", latency_ms=_ms(self._started),
            error=f"{reply.failure}: {str(exc) or type(exc).__name__}",
        )
        asked = Message("user", self.turn.text, now, MessageMeta(device, "error"))
        said = list(self.turn.tool_results) or [asked]
        try:
            await self._save([*said, Message("assistant", reply.speech, now, meta)], step="failed")
        except StoreError as err:
            log.warning("turn.failure_not_kept", session_id=self.session.id, error=str(err))
        return reply

    async def _local(self) -> LocalAnswer | None:
        for handler in self.engine.handlers:
            try:
                answer = await handler.handle(self.turn, self._history)
            except StoreError:
                raise
            except Exception:  # a broken local handler must not cost the user the LLM's answer
                log.exception("turn.local_handler_failed", handler=type(handler).__name__)
                continue
            if answer is not None:
                return answer
        return None

    async def _save(self, messages: Sequence[Message], *, step: str) -> None:
        assert self.session is not None
        try:
            self.session = await self.engine.sessions.append_turn(self.session, *messages)
        except SessionGone:
            # "Start over" from another request won the race: this answer is still right, it isn't kept.
            log.info("turn.session_gone", device=self.session.device, session_id=self.session.id, step=step)

    async def _finish(
        self,
        text: str,
        *,
        local: LocalAnswer | None = None,
        completion: Completion | None = None,
        tools: ToolRounds | None = None,
        heard: str | None = None,
    ) -> Reply:
        """Save the turn (`text`: the answer as kept) and build its Reply (`heard`: all that was said, when
        tool rounds spoke before the answer)."""
        engine, turn, session = self.engine, self.turn, self.session
        assert session is not None
        path: AnswerPath = "local" if local is not None else "llm"
        now = engine.clock()
        latency = _ms(self._started)
        if local is not None:
            meta = MessageMeta(
                device=session.device, path=path, latency_ms=latency, intent=local.memory,
                follow_up=local.follow_up, recognize_ms=local.recognize_ms, ha_ms=local.ha_ms,
            )
            response_type, success, failed = local.response_type, local.success, local.failed
        else:
            assert completion is not None
            meta = MessageMeta(
                device=session.device, path=path, latency_ms=latency, backend=engine.llm.name,
                model=engine.llm.model, finish_reason=completion.finish_reason,
                tool_calls=completion.tool_calls, intent=tools.memory if tools is not None else None,
            )
            success, failed = (tuple(tools.success), tuple(tools.failed)) if tools else ((), ())
            response_type = "action_done" if success else "query_answer"
        said = list(turn.tool_results) or [Message("user", turn.text, now, MessageMeta(session.device))]
        rounds = tools.records if tools is not None else []
        await self._save([*said, *rounds, Message("assistant", text, now, meta)], step="save")
        engine.answered(turn, session, path, latency)
        return Reply(
            speech=heard or text,
            session_id=session.id,
            response_type=response_type,
            path=path,
            success=success,
            failed=failed,
            continue_conversation=wants_follow_up(heard or text),
            finish_reason=completion.finish_reason if completion is not None else None,
            usage=completion.usage if completion is not None else None,
            tool_calls=completion.tool_calls if completion is not None else (),
        )


def shaped(turn: Turn, device: DeviceView | None) -> Turn:
    """The turn as the device's settings shape it: their language replaces the one it came with, and their
    system prompt (and "answer in" that language) is added to the turn's own extra prompt."""
    if device is None or not (device.language or device.system_prompt):
        return turn
    extra = [p for p in (turn.extra_system_prompt, device.system_prompt) if p]
    if device.language:
        extra.append(f"Always answer in the language with the code {device.language!r}.")
    return dataclasses.replace(
        turn, language=device.language or turn.language, extra_system_prompt="\n\n".join(extra)
    )


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)

