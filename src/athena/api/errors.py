"""One JSON error shape for every failure a client can cause or see, OpenAI-style so OpenAI clients parse it:
`{"error": {"code": ..., "message": ..., "type": ...}}`. Client input never produces a 500."""

from __future__ import annotations

from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

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
    def __init__(
        self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _STATUS_CODES.get(status, ("error", "api_error"))[0]
        self.headers = headers


def error_body(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    default_code, kind = _STATUS_CODES.get(
        status, ("error", "api_error" if status >= 500 else "invalid_request_error")
    )
    return {"error": {"code": code or default_code, "message": message, "type": kind}}


def error_response(
    status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(error_body(status, message, code)),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def describe_validation(errors: list[Any]) -> str:
    """pydantic's errors as one sentence naming each field: "text: Field required; language: ..."."""
    parts = []
    for err in errors[:5]:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        where = ".".join(loc) or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid value')}")
    if len(errors) > 5:
        parts.append(f"and {len(errors) - 5} more")
    return "; ".join(parts)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.message, exc.code, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, "request body is not valid JSON", "bad_json")
        return error_response(422, describe_validation(errors))

    @app.exception_handler(ValidationError)
    async def _pydantic_error(request: Request, exc: ValidationError) -> Response:
        return error_response(422, describe_validation(list(exc.errors())))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("request.failed", path=request.url.path)
        return error_response(500, "internal error; see the gateway log")
