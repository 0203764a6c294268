"""Reading request bodies: JSON (orjson) into pydantic models, with every failure a precise 4xx.

Parsing here rather than through a framework's body injection keeps the messages exact (400 for bad JSON,
415 for another media type, 422 naming the field) and skips a second validation pass on the hot path.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from athena.api.errors import ApiError, describe_validation
from athena.records import InvalidDeviceId, validate_device_id
from athena.turns import clean_spoken

M = TypeVar("M", bound=BaseModel)


async def read_json(request: Request) -> Any:
    ctype = request.headers.get("content-type", "")
    if ctype and "json" not in ctype.lower():
        raise ApiError(415, f"send the body as JSON (Content-Type: application/json), not {ctype}")
    body = await request.body()
    if not body.strip():
        raise ApiError(400, "request body is empty; send a JSON object", "bad_json")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}", "bad_json") from None


async def read_model(request: Request, model: type[M]) -> M:
    return validate(model, await read_json(request))


def validate(model: type[M], data: Any, *, status: int = 422) -> M:
    """`status`: 422 on Athena's own endpoints, 400 where the wire format's owner answers so (OpenAI)."""
    if not isinstance(data, dict):
        raise ApiError(status, f"request body must be a JSON object, not {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(status, describe_validation(list(exc.errors())), "invalid_value") from None


def clean_text(value: str, field: str, limit: int, *, collapse: bool = True) -> str:
    """turns.clean_spoken; empty or over `limit` is a 422."""
    text = clean_spoken(value, collapse=collapse)
    if not text:
        raise ApiError(422, f"{field}: must not be empty")
    if len(text) > limit:
        raise ApiError(422, f"{field}: is {len(text)} characters; the limit is {limit}", "text_too_long")
    return text


def device_id(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    try:
        return validate_device_id(value)
    except InvalidDeviceId as exc:
        raise ApiError(422, f"{field}: {exc}", "invalid_device_id") from None
