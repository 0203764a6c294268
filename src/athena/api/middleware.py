"""The one middleware every request passes: request id, auth, body size, metrics.

Pure ASGI (no BaseHTTPMiddleware, no Request objects) because it sits on the hot path of every voice turn and
the gateway's budget is about a millisecond over calling the LLM directly.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

import orjson
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from athena.api.auth import ApiToken
from athena.api.errors import error_body
from athena.observability import REQUEST_SECONDS, REQUESTS, REQUESTS_IN_FLIGHT

log = structlog.get_logger("athena.api")

OPEN_PREFIX = "/health"  # liveness/readiness probes carry no token
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")
_BODY_METHODS = {"POST", "PUT", "PATCH"}


class GatewayMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        token: ApiToken,
        max_body: int,
        endpoints: Collection[str],
        start_error: Callable[[], str | None] = lambda: None,
        body_limits: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.token = token
        self.max_body = max_body
        self._body_limits = dict(body_limits or {})  # by path; max_body for the rest
        self._endpoints = frozenset(endpoints)
        self._start_error = start_error
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._quiet_startup(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope["headers"])  # last value wins for repeated names; fine for these headers
        given = headers.get(b"x-request-id")
        rid = given if given is not None and _REQUEST_ID.fullmatch(given) else os.urandom(8).hex().encode()
        ctx = structlog.contextvars.bind_contextvars(request_id=rid.decode())
        status = 500
        REQUESTS_IN_FLIGHT.inc()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), (b"x-request-id", rid)]}
            await send(message)

        try:
            path: str = scope["path"]
            if not path.startswith(OPEN_PREFIX) and not self.token.matches(headers.get(b"authorization")):
                await _reject(
                    send_with_id,
                    401,
                    "missing or wrong API token: send 'Authorization: Bearer <token>'",
                    extra=[(b"www-authenticate", b"Bearer")],
                )
                return
            if scope["method"] in _BODY_METHODS:
                limit = self._body_limits.get(path, self.max_body)
                checked = await self._bounded(headers, receive, send_with_id, limit)
                if checked is None:
                    return
                receive = checked
            await self.app(scope, receive, send_with_id)
        finally:
            REQUESTS_IN_FLIGHT.dec()
            endpoint = self._endpoint(scope)
            elapsed = time.perf_counter() - started
            self._observe(endpoint, status, elapsed)
            log.debug(
                "http.request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                ms=round(elapsed * 1000, 2),
            )
            structlog.contextvars.reset_contextvars(**ctx)

    async def _bounded(
        self, headers: dict[bytes, bytes], receive: Receive, send: Send, limit: int
    ) -> Receive | None:
        """Refuse a body over the path's limit before anything parses it: by Content-Length, else by
        reading it."""
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _reject(send, 400, "Content-Length is not a number")
                return None
            if declared > limit:
                await _reject(send, 413, f"request body is {declared} bytes; the limit is {limit}")
                return None
            return receive
        # Chunked (no Content-Length): buffer up to the limit, then replay it to the app.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return receive  # disconnect: let the app see it
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _reject(send, 413, f"request body is over the limit of {limit} bytes")
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay

    def _observe(self, endpoint: str, status: int, elapsed: float) -> None:
        # labels() takes a lock and builds a key on every call: keep the children (a bounded set of routes).
        key = (endpoint, status)
        pair = self._children.get(key)
        if pair is None:
            pair = (
                REQUESTS.labels(endpoint=endpoint, status=str(status)),
                REQUEST_SECONDS.labels(endpoint=endpoint),
            )
            self._children[key] = pair
        pair[0].inc()
        pair[1].observe(elapsed)

    def _quiet_startup(self, send: Send) -> Send:
        """An expected start-up failure (store or LLM unreachable) is one line, not a traceback."""

        async def send_short(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed" and (error := self._start_error()):
                message = {**message, "message": f"Athena cannot start: {error}"}
            await send(message)

        return send_short

    def _endpoint(self, scope: Scope) -> str:
        """A bounded label: the matched route's template, else the path if it is known, else "other"."""
        path = getattr(scope.get("route"), "path", None)
        if isinstance(path, str):
            return path
        return scope["path"] if scope["path"] in self._endpoints else "other"


async def _reject(
    send: Send, status: int, message: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = orjson.dumps(error_body(status, message))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(extra or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
