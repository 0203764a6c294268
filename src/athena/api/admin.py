"""Operator endpoints under /athena: what the gateway is (the HA integration's config flow checks URL and
token with /athena/info) and the live sessions (list, show, end one device's)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from athena.api.bodies import device_id
from athena.api.errors import ApiError
from athena.api.responses import json_response
from athena.api.state import engine, gateway
from athena.stores.base import StoreError

T = TypeVar("T")


async def _stored(call: Awaitable[T]) -> T:
    """A store failure is the operator's 503, not a 500."""
    try:
        return await call
    except StoreError as exc:
        raise ApiError(503, f"the session store failed: {exc}", "store_unavailable") from None


def _device(request: Request) -> str:
    key = device_id(request.path_params["device"], "device")
    assert key is not None
    return key


def _no_session(key: str) -> ApiError:
    return ApiError(404, f"no live session for device {key!r}", "no_session")


async def info(request: Request) -> Response:
    engine(request)  # 503 while starting
    return json_response(gateway(request).info())


async def list_sessions(request: Request) -> Response:
    return json_response({"sessions": await _stored(engine(request).sessions_live())})


async def session(request: Request) -> Response:
    """GET: the device's live session with its history; DELETE: end it ("start over" from outside)."""
    key = _device(request)
    if request.method == "DELETE":
        if not await _stored(engine(request).end_session(key)):
            raise _no_session(key)
        return json_response({"cleared": True, "device": key})
    found = await _stored(engine(request).transcript(key))
    if found is None:
        raise _no_session(key)
    described, messages = found
    described["messages"] = [
        {"role": m.role, "content": m.content, "ts": m.ts, "meta": m.meta.to_dict()} for m in messages
    ]
    return json_response(described)


routes = [
    Route("/athena/info", info, methods=["GET"]),
    Route("/athena/sessions", list_sessions, methods=["GET"]),
    Route("/athena/sessions/{device:path}", session, methods=["GET", "DELETE"]),
]
