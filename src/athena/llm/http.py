"""What both wire formats share: one aiohttp session, deadlines, and turning transport failures into LLMError.

aiohttp rather than httpx because it was measured here (loopback, c=1, against tests/support/fake_llm.py;
``python -m bench.bench_gateway`` repeats it): aiohttp 0.6-0.7 ms p50 per non-streamed request and about
1 ms to the first streamed delta, httpx 1.7-3.3 ms and 1.7-3.0 ms. The gateway's whole overhead budget is
about 1 ms, so the client library would otherwise be most of it.

Deadlines: a non-streamed answer must be complete within ``llm_timeout``; a stream must show the model's
first output within ``llm_first_token_timeout`` (capped by ``llm_timeout``) and end within ``llm_timeout``,
both counted from the request's start. Sending and reading a whole answer runs under one
``asyncio.timeout_at``; a stream's reads are bounded by one loop timer (LineReader), so no timeout context
spans a generator's ``yield``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import re
import time
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import orjson
import structlog
from yarl import URL

from athena.llm.base import (
    ChatMessage,
    LLMContextOverflow,
    LLMError,
    LLMHTTPError,
    LLMModelMissing,
    LLMTimeout,
    LLMUnreachable,
    LLMWrongEndpoint,
)
from athena.observability import LLM_ERRORS, LLM_FIRST_TOKEN_SECONDS, LLM_SECONDS

T = TypeVar("T")

log = structlog.get_logger("athena.llm")

ERROR_BODY_LIMIT = 4096  # bytes of an HTTP error body kept for the message and the relay
# How servers say a prompt is too long: OpenAI and vLLM ("maximum context length is 2048 tokens"), llama.cpp
# ("exceeds the available context size", n_ctx), llama-cpp-python, LM Studio, LiteLLM.
_OVERFLOW = re.compile(r"context (?:length|size|window)|context_length_exceeded|n_ctx|too many tokens", re.I)
_WINDOW = re.compile(r"(?:maximum context length is|context window of|\"n_ctx\":\s*)\s*(\d+)", re.I)
_JSON_HEADERS = {"Content-Type": "application/json"}


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 5.0
    first_token: float = 15.0
    total: float = 30.0


class Deadline:
    """Where a request stands against its deadlines; ``at`` moves from the first-token to the total one."""

    __slots__ = ("at", "first", "first_seen", "start", "timeouts", "total")

    def __init__(self, timeouts: Timeouts, *, streaming: bool) -> None:
        self.timeouts = timeouts
        self.start = time.monotonic()
        loop_now = asyncio.get_running_loop().time()
        self.total = loop_now + timeouts.total
        self.first = loop_now + min(timeouts.first_token, timeouts.total) if streaming else self.total
        self.at = self.first
        self.first_seen = False

    def got_first_token(self) -> float:
        """Switch to the whole-answer deadline; return seconds since the start."""
        self.at = self.total
        self.first_seen = True
        return time.monotonic() - self.start

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def error(self) -> LLMTimeout:
        t = self.timeouts
        if self.at == self.total:
            return LLMTimeout(f"the LLM did not finish its answer within {t.total:g} s")
        return LLMTimeout(f"the LLM sent no text within {min(t.first_token, t.total):g} s")


class _Expired(Exception):
    """Set on a response's stream by LineReader's timer: the pending read raises it."""


MAX_LINE = 2**20


class LineReader:
    """Complete lines of a streamed body, in batches: everything that arrived in one network read.

    Batches keep a relay's per-event cost down (one write for several events that came together); one
    timer per request (moved once, at the first token) replaces a timeout context per read. When it fires,
    the response stream is failed with ``_Expired``, which the pending or next read raises.
    """

    __slots__ = ("_backend", "_buf", "_deadline", "_resp", "_started", "_timer")

    def __init__(self, backend: HTTPBackend, resp: aiohttp.ClientResponse, deadline: Deadline) -> None:
        self._backend = backend
        self._resp = resp
        self._deadline = deadline
        self._buf = b""
        self._started = False
        self._timer = asyncio.get_running_loop().call_at(deadline.at, self._expire)

    def _expire(self) -> None:
        self._resp.content.set_exception(_Expired())

    def first_token(self) -> None:
        """Move from the first-token deadline to the whole-answer one (the caller has seen progress)."""
        if not self._started:
            self._started = True
            self._backend.observe_first_token(self._deadline)
            self._timer.cancel()
            self._timer = asyncio.get_running_loop().call_at(self._deadline.at, self._expire)

    def close(self) -> None:
        self._timer.cancel()

    async def next(self) -> list[bytes]:
        """The next complete lines (without their newline); [] at the end of the body."""
        content = self._resp.content
        while True:
            try:
                data = await content.readany()
            except (aiohttp.ClientError, _Expired, ValueError) as exc:
                raise self._backend.translate(exc, self._deadline) from None
            if not data:
                if self._buf:
                    last, self._buf = self._buf, b""
                    return [last]
                return []
            if b"\n" not in data:
                self._buf += data
                if len(self._buf) > MAX_LINE:
                    raise LLMError(f"the LLM sent a line longer than {MAX_LINE} bytes")
                continue
            if self._buf:
                data = self._buf + data
            lines = data.split(b"\n")
            self._buf = lines.pop()
            return lines


def dumps(body: Mapping[str, Any]) -> bytes:
    try:
        return orjson.dumps(body)
    except TypeError as exc:
        raise LLMError(f"request options are not JSON-serialisable: {exc}") from exc


def loads(raw: bytes | str, what: str = "answer") -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise LLMError(f"the LLM's {what} is not valid JSON: {_snippet(raw)}") from None


def _snippet(raw: bytes | str, limit: int = 80) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[:limit] + "...")


class HTTPBackend:
    """One shared aiohttp session per backend, opened in ``open()`` and closed in ``close()``."""

    name: str
    model: str
    api: str  # "openai" or "ollama": the wire format, named in errors about a wrong URL or API kind
    models_path: str  # the model list, which ping() reads
    chat_path: str  # where answers are asked for

    def __init__(
        self,
        url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeouts: Timeouts | None = None,
        name: str,
        max_connections: int = 64,
        context_tokens: int | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.context_tokens = context_tokens
        self.model = model
        self.name = name
        self.timeouts = timeouts or Timeouts()
        self._api_key = api_key
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, URL] = {}
        self._chat_url = self.endpoint(self.chat_path)
        self._takes_any_model = False  # ping(): the server answered a model it does not list (llama.cpp)
        self._llm_seconds = LLM_SECONDS.labels(backend=name)
        self._first_token_seconds = LLM_FIRST_TOKEN_SECONDS.labels(backend=name)
        self._errors = {kind: LLM_ERRORS.labels(backend=name, kind=kind) for kind in ERROR_KINDS}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, url={self.url!r}, model={self.model!r})"

    def learn_context(self, tokens: int) -> None:
        """A context window the server told us (its properties, an overflow error): kept for the process."""
        if tokens != self.context_tokens:
            log.info("llm.context_window", backend=self.name, tokens=tokens)
            self.context_tokens = tokens

    def endpoint(self, path: str) -> URL:
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = URL(self.url + path)
        return url

    # -- lifecycle -------------------------------------------------------------------------------------
    async def open(self) -> None:
        if self._session is None or self._session.closed:
            headers = {"Accept": "application/json, text/event-stream, application/x-ndjson"}
            if self._api_key:
                headers["Authorization"] = f"Bearer {self._api_key}"
            self._session = aiohttp.ClientSession(
                headers=headers,
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=self.timeouts.connect, sock_connect=self.timeouts.connect
                ),
                connector=aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=30),
                cookie_jar=aiohttp.DummyCookieJar(),  # an API client has no use for cookies
                read_bufsize=2**18,
                max_line_size=2**20,
                max_field_size=2**16,
                auto_decompress=True,
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> HTTPBackend:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            raise LLMError(f"the {self.name} backend is not open")
        return self._session

    # -- requests --------------------------------------------------------------------------------------
    async def _send(
        self, method: str, url: URL, body: bytes | None, deadline: Deadline
    ) -> aiohttp.ClientResponse:
        """Send a request; return the response once its headers are in and its status is 2xx."""
        try:
            async with asyncio.timeout_at(deadline.at):
                return await self._start(method, url, body)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise self.translate(exc, deadline) from None

    async def _start(self, method: str, url: URL, body: bytes | None) -> aiohttp.ClientResponse:
        """The request without a deadline of its own (the caller's covers it).

        A keep-alive connection the server closed while idle fails before any byte comes back (the client
        sees it end, or a reset); that one case is retried once on a fresh connection.
        """
        headers = _JSON_HEADERS if body is not None else None
        try:
            resp = await self._http().request(method, url, data=body, headers=headers)
        except aiohttp.ClientError as exc:
            if not _dropped(exc):
                raise
            try:
                resp = await self._http().request(method, url, data=body, headers=headers)
            except aiohttp.ServerDisconnectedError:
                raise LLMUnreachable(
                    f"the LLM at {self.url} closed the connection without answering"
                ) from None
        if resp.status >= 400:
            try:
                raw = await resp.content.read(ERROR_BODY_LIMIT)
            finally:
                resp.close()
            raise self.http_error(resp.status, raw, url.path)
        return resp

    def http_error(self, status: int, raw: bytes, path: str) -> LLMHTTPError:
        """An upstream HTTP error, told apart: a prompt too long for the model's window, the model not
        served, the URL or API kind wrong, else the plain status (a refused key, an overloaded server)."""
        message = _http_error_message(status, raw)
        if status in (400, 413, 422) and _OVERFLOW.search(message):
            found = _WINDOW.search(raw.decode("utf-8", "replace"))
            window = int(found.group(1)) if found else None
            if window:
                self.learn_context(window)
            return LLMContextOverflow(message, status, raw, window)
        if status in (400, 404) and _MODEL_MISSING.search(_detail(raw)):
            return LLMModelMissing(f"the LLM at {self.url} does not serve the model: {message}", status, raw)
        if status in (404, 405):
            return LLMWrongEndpoint(
                f"the LLM at {self.url} has no {path} (HTTP {status}), so it is not an {self.api} API there: "
                f"{WRONG_ENDPOINT_HINT}",
                status,
                raw,
            )
        return LLMHTTPError(message, status, raw)

    async def _request_json(
        self, method: str, path: str, body: bytes | None, deadline: Deadline, *, absolute: bool = False
    ) -> bytes:
        """A whole answer's bytes within the deadline (one timeout for sending and reading)."""
        url = URL(path) if absolute else self.endpoint(path)
        try:
            async with asyncio.timeout_at(deadline.at):
                resp = await self._start(method, url, body)
                try:
                    return await resp.read()
                finally:
                    resp.release()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise self.translate(exc, deadline) from None

    def lines(self, resp: aiohttp.ClientResponse, deadline: Deadline) -> LineReader:
        return LineReader(self, resp, deadline)

    def translate(self, exc: BaseException, deadline: Deadline | None = None) -> LLMError:
        """A short, clear LLMError for a transport failure (the order matters: some are both)."""
        if isinstance(exc, LLMError):
            return exc
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return LLMTimeout(
                f"could not connect to the LLM at {self.url} within {self.timeouts.connect:g} s"
            )
        if isinstance(exc, aiohttp.ClientConnectorError):
            err = exc.os_error
            if isinstance(err, ConnectionRefusedError):
                reason = "connection refused"
            else:
                reason = (err.strerror or str(err)) if err else str(exc)
            return LLMUnreachable(f"cannot reach the LLM at {self.url}: {reason}")
        if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
            return LLMError("the LLM closed the connection in the middle of its answer")
        if isinstance(exc, TimeoutError | _Expired):
            return deadline.error() if deadline else LLMTimeout("the LLM did not answer in time")
        if isinstance(exc, ValueError):  # aiohttp: a line longer than the read buffer
            return LLMError(f"the LLM sent something that is not its protocol: {exc}")
        return LLMError(f"HTTP error talking to the LLM at {self.url}: {type(exc).__name__}: {exc}")

    # -- shared endpoints ------------------------------------------------------------------------------
    async def _probe(self, path: str) -> Any:
        """GET a JSON listing with the connect timeout as the whole budget; a 200 that is not JSON is the
        wrong endpoint (a web page where the API should be)."""
        deadline = Deadline(
            Timeouts(self.timeouts.connect, self.timeouts.connect, self.timeouts.connect), streaming=False
        )
        raw = await self._request_json("GET", path, None, deadline)
        try:
            return loads(raw, "model list")
        except LLMError as exc:
            raise self.not_a_model_list(f"{exc}") from None

    def not_a_model_list(self, what: str) -> LLMWrongEndpoint:
        return LLMWrongEndpoint(
            f"the LLM at {self.url} answered {self.models_path} with something that is not an {self.api} "
            f"model list ({what}): {WRONG_ENDPOINT_HINT}",
            200,
        )

    async def models(self) -> list[str]:
        raise NotImplementedError

    def _body(self, messages: Sequence[ChatMessage], options: Mapping[str, Any], stream: bool) -> bytes:
        """A chat request for this API."""
        raise NotImplementedError

    async def ping(self) -> None:
        """Ready means: the model list answers, is this API's, and names the configured model. Anything
        less fails with the reason an operator needs (unreachable, a refused key, a wrong URL or API kind,
        the model missing).

        Some servers answer any model name with the one they run (llama.cpp lists a file path): when the
        list does not name the model, one one-token request for it decides, and a server that answers it
        is remembered as one that takes any name (no further requests)."""
        served = await self.models()
        if serves(served, self.model) or self._takes_any_model:
            return
        listed = ", ".join(repr(m) for m in served[:8]) + (", ..." if len(served) > 8 else "")
        missing = (
            f"the LLM at {self.url} does not serve model {self.model!r} "
            f"({'it serves ' + listed if served else 'it serves no model'})"
        )
        limit = Timeouts(self.timeouts.connect, self.timeouts.connect, self.timeouts.connect)
        deadline = Deadline(limit, streaming=False)
        try:
            probe = self._body([{"role": "user", "content": "Hi"}], {"max_tokens": 1}, False)  # one token
            await self._request_json("POST", self.chat_path, probe, deadline)
        except LLMModelMissing:
            raise LLMModelMissing(missing, 404) from None
        except LLMError as exc:
            raise LLMModelMissing(f"{missing}, and a request for it failed: {exc}", 404) from None
        self._takes_any_model = True

    # -- metrics ---------------------------------------------------------------------------------------
    def observe_answer(self, deadline: Deadline) -> None:
        """A complete answer; one that was not streamed (or showed nothing before its end) had its first
        token at its end, so every call is in the first-token histogram."""
        if not deadline.first_seen:
            self.observe_first_token(deadline)
        self._llm_seconds.observe(deadline.elapsed())

    def count_error(self, exc: LLMError) -> None:
        """An answer failed (probes are not counted): athena_llm_errors_total{backend, kind}."""
        self._errors[exc.kind].inc()

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        """Around an answer's call: its failure counted once, by kind."""
        try:
            yield
        except LLMError as exc:
            self.count_error(exc)
            raise

    async def counted(self, source: AsyncGenerator[T, None]) -> AsyncGenerator[T, None]:
        """A streamed answer's items, its failure counted once (closing it early is no failure)."""
        with self.counting():
            async with aclosing(source) as items:
                async for item in items:
                    yield item

    def observe_first_token(self, deadline: Deadline) -> None:
        self._first_token_seconds.observe(deadline.got_first_token())


WRONG_ENDPOINT_HINT = (
    "check the URL and the API kind (openai: the base URL ending where /chat/completions begins, "
    "e.g. http://host:11434/v1; ollama: the server's root)"
)
# An upstream's 400/404 that is about the model, not the path: Ollama ('model "x" not found, try pulling
# it first'), OpenAI and vLLM ('The model `x` does not exist'), LiteLLM ('Invalid model name').
_MODEL_MISSING = re.compile(
    r"model\b.*\b(not found|does not exist|not exist|not available|unknown|no such|try pulling)"
    r"|\b(invalid|unknown|no such) model",
    re.IGNORECASE,
)


# Every LLMError.kind.
ERROR_KINDS = ("timeout", "unreachable", "model_missing", "wrong_endpoint", "http", "protocol")


def _dropped(exc: aiohttp.ClientError) -> bool:
    """A connection the server closed or reset under us (not one that could not be made)."""
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return True
    return (
        isinstance(exc, aiohttp.ClientOSError) and not isinstance(exc, aiohttp.ClientConnectorError)
        and exc.errno in (errno.ECONNRESET, errno.EPIPE)
    )


def serves(served: list[str], model: str) -> bool:
    """Whether a model list names the model; Ollama's implicit ":latest" tag counts as the same name."""
    if model in served:
        return True
    bare = model.removesuffix(":latest")
    return any(m.removesuffix(":latest") == bare for m in served)


def _detail(raw: bytes) -> str:
    """The text of an error body, whatever its shape (OpenAI, Ollama, vLLM, FastAPI, plain text)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")[:500]
    if isinstance(data, dict):
        return " ".join(error_detail(data.get(k) or "") for k in ("error", "message", "detail"))
    return str(data)[:500]


def error_detail(err: Any) -> str:
    """An upstream's ``error`` (``{"message": ...}`` or a string) as one short line for an LLMError."""
    if isinstance(err, dict):
        err = err.get("message") or ""
    return " ".join(str(err).split())[:200]


def _http_error_message(status: int, raw: bytes) -> str:
    try:
        data = orjson.loads(raw)
        detail = error_detail(data.get("error") or "") if isinstance(data, dict) else ""
    except orjson.JSONDecodeError:
        detail = error_detail(raw.decode("utf-8", "replace"))
    return f"the LLM answered HTTP {status}" + (f": {detail}" if detail else "")
