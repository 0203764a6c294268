"""One JSON error shape for every failure a client can cause or see, OpenAI-style so OpenAI clients parse it:
`{"error": {"code": ..., "message": ..., "type": ...}}`. Client input never produces a 500."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from athena.api.responses import json_response
from athena.turns import Failure

log = structlog.get_logger("athena.api")

_STATUS_CODES = {
    400: ("bad_request", "invalid_request_error"),
    401: ("unauthorized", "authentication_error"),
    403: ("forbidden", "permission_error"),
    404: ("not_found", "not_found_error"),
    405: ("method_not_allowed", "invalid_request_error"),
    413: ("body_too_large", "invalid_request_error"),
    415: ("unsupported_media_type", "invalid_request_error"),
    422: ("invalid_value", "invalid_request_error"),
    500: ("internal_error", "server_error"),
    502: ("upstream_error", "api_error"),
    503: ("unavailable", "api_error"),
    504: ("upstream_timeout", "api_error"),
}


class ApiError(Exception):
    """Raised anywhere under a route; answered as the error shape (``code`` defaults by status)."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, self.code)


# How a turn's failure answers a client that gets HTTP statuses (OpenAI clients, the operator API).
FAILURES: dict[Failure, tuple[int, str]] = {
    "llm_timeout": (504, "llm_timeout"),
    "llm_error": (502, "llm_unavailable"),
    "llm_model_missing": (502, "llm_model_missing"),
    "llm_misconfigured": (502, "llm_misconfigured"),
    "store": (503, "store_unavailable"),
    "internal": (500, "internal_error"),
}


def failure_error(failure: Failure, message: str) -> ApiError:
    status, code = FAILURES[failure]
    return ApiError(status, message, code)


def error_body(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    default_code, kind = _STATUS_CODES.get(
        status, ("error", "api_error" if status >= 500 else "invalid_request_error")
    )
    return {"error": {"code": code or default_code, "message": message, "type": kind}}


def error_response(
    status: int, message: str, code: str | None = None, headers: Mapping[str, str] | None = None
) -> Response:
    return json_response(error_body(status, message, code), status, headers)


def describe_validation(errors: list[Any]) -> str:
    """pydantic's errors as one sentence naming each field: "text: Field required; language: ...".

    A value that fits no member of a union gives one error per member, located by the member's type
    (`content.str`, `content.list[...]`): those become one "content: ... or ..." entry.
    """
    found: dict[str, list[str]] = {}
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        where = ".".join(p for p in loc if not _TYPE_TAG.fullmatch(p)) or "body"
        message = str(err.get("msg", "invalid value"))
        if message not in found.setdefault(where, []):
            found[where].append(message)
    parts = [f"{where}: {' or '.join(messages)}" for where, messages in list(found.items())[:5]]
    if len(found) > 5:
        parts.append(f"and {len(found) - 5} more")
    return "; ".join(parts)


_TYPE_TAG = re.compile(r"(str|int|float|bool|none|bytes|[a-z_]+\[.*\]|function-[a-z]+\[.*\])")


async def _api_error(request: Request, exc: ApiError) -> Response:
    return json_response(exc.body(), exc.status)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    """Starlette's own 404/405 (no route, wrong method), reworded to name what was asked."""
    message = exc.detail
    if exc.status_code == 404 and message == "Not Found":
        message = f"no such endpoint: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    return error_response(exc.status_code, message, headers=exc.headers)


async def _validation_error(request: Request, exc: ValidationError) -> Response:
    """A safety net: bodies.validate() turns pydantic's errors into ApiError already."""
    return error_response(422, describe_validation(list(exc.errors())))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("request.failed", path=request.url.path)
    return error_response(500, "internal error; see the gateway log")


# Starlette's exception_handlers: the Exception entry becomes ServerErrorMiddleware's (500) handler.
HANDLERS: dict[type[Exception], Callable[[Request, Any], Awaitable[Response]]] = {
    ApiError: _api_error,
    HTTPException: _http_error,
    ValidationError: _validation_error,
    Exception: _unexpected,
}
