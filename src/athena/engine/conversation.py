"""The per-turn pipeline: session, local handlers, LLM with history, save. Knows nothing about HTTP.

Every way a turn can fail ends in a Reply a voice user can hear (`response_type="error"`), with `failure`
telling the wire formats which HTTP status fits.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import structlog
from ulid import ULID

from athena.config import Settings
from athena.engine.prompt import build_messages
from athena.engine.types import Failure, LocalAnswer, LocalHandler, Reply, Turn
from athena.llm.base import LLMBackend, LLMError, LLMTimeout
from athena.observability import ANSWERS, LOCAL_SECONDS
from athena.sessions.manager import SessionManager
from athena.sessions.models import InvalidDeviceId, Message, Session, validate_device_id
from athena.stores.base import SessionGone, StoreError

log = structlog.get_logger("athena.engine")

SPOKEN_ERRORS: dict[Failure, str] = {
    "llm_error": "Sorry, I can't reach my language model right now.",
    "llm_timeout": "Sorry, my language model is taking too long to answer.",
    "store": "Sorry, I can't reach my memory right now. Please try again in a moment.",
    "internal": "Sorry, something went wrong on my side.",
}
_QUOTES = "\"'“”‘’«»)]*_ \t\r\n"


def wants_follow_up(answer: str) -> bool:
    """HA's own rule: the assistant asked something, so the satellite reopens the microphone."""
    return answer.rstrip(_QUOTES).endswith("?")


class TurnFailed(Exception):
    """A streamed turn failed after it started; `reply` is the error Reply (already counted and logged)."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.speech)
        self.reply = reply


class Engine:
    def __init__(
        self,
        manager: SessionManager,
        llm: LLMBackend,
        settings: Settings,
        handlers: Sequence[LocalHandler] = (),
    ) -> None:
        self.manager = manager
        self.llm = llm
        self.settings = settings
        self.handlers = list(handlers)
        self.clock: Callable[[], float] = manager.clock

    # -- one turn, whole answer -------------------------------------------------------------------
    async def handle(self, turn: Turn) -> Reply:
        started = time.perf_counter()
        session: Session | None = None
        try:
            session = await self._session(turn)
            history = await self._history(session, turn)
            local = await self._local(turn, session, history)
            if local is not None:
                return await self._answer_local(turn, session, local, started)
            # No timeout here: each backend enforces llm_timeout itself, so a fallback gets a full one.
            messages = build_messages(self.settings, turn, history)
            text = _clean_answer(await self.llm.chat(messages, **turn.llm_options))
            return await self._finish(turn, session, text, started)
        except LLMTimeout as exc:
            return self._fail(turn, session, "llm_timeout", exc, started)
        except LLMError as exc:
            return self._fail(turn, session, "llm_error", exc, started)
        except StoreError as exc:
            return self._fail(turn, session, "store", exc, started)
        except Exception as exc:  # a voice user still hears a sentence; the traceback goes to the log
            return self._fail(turn, session, "internal", exc, started)

    # -- one turn, streamed -----------------------------------------------------------------------
    async def open_stream(self, turn: Turn) -> TurnStream:
        """Resolve the session and run the local path now (so a store failure is an HTTP status, not a broken
        stream); the LLM call starts when the stream is iterated. Raises TurnFailed on a store failure."""
        started = time.perf_counter()
        session: Session | None = None
        answered: Reply | None = None
        try:
            session = await self._session(turn)
            history = await self._history(session, turn)
            local = await self._local(turn, session, history)
            if local is not None:  # answered now, so the stream reports the right (maybe fresh) session
                answered = await self._answer_local(turn, session, local, started)
        except StoreError as exc:
            raise TurnFailed(self._fail(turn, session, "store", exc, started)) from exc
        except Exception as exc:
            raise TurnFailed(self._fail(turn, session, "internal", exc, started)) from exc
        return TurnStream(self, turn, session, history, answered, started)

    # -- operator view ----------------------------------------------------------------------------
    async def transcript(self, device: str) -> tuple[dict[str, Any], list[Message]] | None:
        """The device's live session and every stored message (not trimmed for the LLM)."""
        described = await self.manager.describe(device)
        if described is None:
            return None
        messages = await self.manager.store.history(
            described["id"], self.settings.history_max_messages, device=described["device"]
        )
        return described, messages

    # -- steps ------------------------------------------------------------------------------------
    async def _session(self, turn: Turn) -> Session:
        if turn.device is not None:
            return await self.manager.resolve(turn.device, new=turn.new_session, name=turn.device_name)
        if turn.conversation_id:
            known = await self.manager.get(turn.conversation_id)
            if known is not None:
                return await self.manager.resolve(known.device, new=turn.new_session)
            key = f"conversation:{turn.conversation_id}"
            try:
                validate_device_id(key)
            except InvalidDeviceId:
                pass
            else:
                return await self.manager.resolve(key, new=turn.new_session)
        return await self.manager.resolve(f"oneoff:{ULID()}")

    async def _history(self, session: Session, turn: Turn) -> list[Message]:
        if turn.prior:
            try:
                session = await self.manager.append_turn(session, *turn.prior)
            except SessionGone:
                log.info("turn.session_gone", device=session.device, session_id=session.id, step="prior")
        return await self.manager.history(session)

    async def _local(self, turn: Turn, session: Session, history: Sequence[Message]) -> LocalAnswer | None:
        for handler in self.handlers:
            try:
                answer = await handler.handle(turn, session, history)
            except StoreError:
                raise
            except Exception:  # a broken local handler must not cost the user the LLM's answer
                log.exception(
                    "turn.local_handler_failed", handler=type(handler).__name__, device=session.device
                )
                continue
            if answer is not None:
                return answer
        return None

    async def _answer_local(self, turn: Turn, session: Session, local: LocalAnswer, started: float) -> Reply:
        if local.reset:
            fresh = await self.manager.resolve(session.device, new=True, name=turn.device_name)
            ANSWERS.labels(path="reset").inc()
            log.info(
                "turn.answered",
                device=session.device,
                session_id=fresh.id,
                path="reset",
                latency_ms=_ms(started),
            )
            return Reply(
                speech=local.speech,
                session_id=fresh.id,
                response_type=local.response_type,
                path="reset",
                success=local.success,
                failed=local.failed,
                continue_conversation=wants_follow_up(local.speech),
            )
        LOCAL_SECONDS.observe(time.perf_counter() - started)
        return await self._finish(turn, session, local.speech, started, local=local)

    async def _finish(
        self, turn: Turn, session: Session, text: str, started: float, local: LocalAnswer | None = None
    ) -> Reply:
        path = local.path if local is not None else "llm"
        latency = _ms(started)
        now = self.clock()
        meta: dict[str, Any] = {"device": session.device, "path": path, "latency_ms": latency}
        if local is None:
            meta.update(backend=self.llm.name, model=self.llm.model)
        else:
            meta.update(local.meta)
        user_meta = {"device": session.device}
        try:
            await self.manager.append_turn(
                session,
                Message("user", turn.text, now, user_meta),
                Message("assistant", text, now, meta),
            )
        except SessionGone:
            # "Start over" from another request won the race: this answer is still right, it just isn't kept.
            log.info("turn.session_gone", device=session.device, session_id=session.id, step="save")
        ANSWERS.labels(path=path).inc()
        log.info("turn.answered", device=session.device, session_id=session.id, path=path, latency_ms=latency)
        log.debug("turn.text", device=session.device, text=turn.text, answer=text)
        return Reply(
            speech=text,
            session_id=session.id,
            response_type=local.response_type if local is not None else "query_answer",
            path=path,
            success=local.success if local is not None else (),
            failed=local.failed if local is not None else (),
            continue_conversation=wants_follow_up(text),
        )

    def _fail(
        self, turn: Turn, session: Session | None, failure: Failure, exc: BaseException, started: float
    ) -> Reply:
        ANSWERS.labels(path="error").inc()
        fields = {
            "device": session.device if session else turn.device,
            "session_id": session.id if session else None,
            "failure": failure,
            "error": str(exc) or type(exc).__name__,
            "latency_ms": _ms(started),
        }
        if failure == "internal":
            log.exception("turn.failed", **fields)
        else:
            log.warning("turn.failed", **fields)
        return Reply(
            speech=SPOKEN_ERRORS[failure],
            session_id=session.id if session else (turn.conversation_id or ""),
            response_type="error",
            path="error",
            error_code="failed_to_handle",
            failure=failure,
        )


class TurnStream:
    """Async-iterate for the answer's text deltas; afterwards `reply` holds the saved turn's Reply.

    A failure after the stream started raises TurnFailed (its reply is also in `reply`); nothing is saved
    then, nor when the consumer stops early.
    """

    def __init__(
        self,
        engine: Engine,
        turn: Turn,
        session: Session,
        history: list[Message],
        answered: Reply | None,
        started: float,
    ) -> None:
        self._engine = engine
        self._turn = turn
        self._history = history
        self._started = started
        self.session = session
        self.session_id = answered.session_id if answered else session.id
        self.reply: Reply | None = answered

    def __aiter__(self) -> AsyncIterator[str]:
        return self._run()

    async def _run(self) -> AsyncIterator[str]:
        engine, turn, session = self._engine, self._turn, self.session
        if self.reply is not None:  # answered locally
            yield self.reply.speech
            return
        messages = build_messages(engine.settings, turn, self._history)
        parts: list[str] = []
        failure: Failure | None = None
        error: BaseException | None = None
        stream = engine.llm.stream(messages, **turn.llm_options)
        try:
            async for delta in stream:
                if delta:
                    parts.append(delta)
                    yield delta
        except LLMTimeout as exc:
            failure, error = "llm_timeout", exc
        except LLMError as exc:
            failure, error = "llm_error", exc
        except Exception as exc:
            failure, error = "internal", exc
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
        text = "".join(parts).strip()
        if failure is None and not text:
            failure, error = "llm_error", LLMError("empty answer")
        if failure is not None:
            assert error is not None
            self.reply = engine._fail(turn, session, failure, error, self._started)
            raise TurnFailed(self.reply) from error
        try:
            self.reply = await engine._finish(turn, session, text, self._started)
        except StoreError as exc:
            # The answer was already heard; only keeping it failed.
            log.warning("turn.save_failed", device=session.device, session_id=session.id, error=str(exc))
            self.reply = Reply(speech=text, session_id=session.id)


def _clean_answer(text: Any) -> str:
    if not isinstance(text, str) or not text.strip():
        raise LLMError("empty or non-text answer")
    return text.strip()


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
