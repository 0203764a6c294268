"""Operator endpoints under /athena: what the gateway is (the HA integration's config flow checks URL
and token with /athena/info) and the live sessions (list, show, clear one device's)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from athena import __version__
from athena.api.bodies import device_id
from athena.api.errors import ApiError
from athena.api.responses import json_response
from athena.api.state import engine, runtime
from athena.sessions.manager import SessionManager
from athena.stores.base import StoreError


def _manager(request: Request) -> SessionManager:
    return engine(request).manager


async def info(request: Request) -> Response:
    rt = runtime(request)
    llm = engine(request).llm
    return json_response(
        {
            "service": "athena",
            "version": __version__,
            "local_intents": rt.settings.local_intents,
            "store": rt.store,
            "llm": {"api": llm.name, "model": llm.model},
        }
    )


async def list_sessions(request: Request) -> Response:
    try:
        sessions = await _manager(request).list_active()
    except StoreError as exc:
        raise ApiError(503, f"the session store failed: {exc}", "store_unavailable") from None
    return json_response({"sessions": sessions})


async def show_session(request: Request) -> Response:
    key = device_id(request.path_params["device"], "device")
    assert key is not None
    try:
        found = await engine(request).transcript(key)
    except StoreError as exc:
        raise ApiError(503, f"the session store failed: {exc}", "store_unavailable") from None
    if found is None:
        raise ApiError(404, f"no live session for device {key!r}", "no_session")
    described, messages = found
    described["messages"] = [
        {"role": m.role, "content": m.content, "ts": m.ts, "meta": dict(m.meta)} for m in messages
    ]
    return json_response(described)


async def clear_session(request: Request) -> Response:
    key = device_id(request.path_params["device"], "device")
    assert key is not None
    try:
        cleared = await _manager(request).clear(key)
    except StoreError as exc:
        raise ApiError(503, f"the session store failed: {exc}", "store_unavailable") from None
    if not cleared:
        raise ApiError(404, f"no live session for device {key!r}", "no_session")
    return json_response({"cleared": True, "device": key})


# Plain Starlette routes: no dependency injection on the hot path; bodies are parsed in bodies.py.
routes = [
    Route("/athena/info", info, methods=["GET"]),
    Route("/athena/sessions", list_sessions, methods=["GET"]),
    Route("/athena/sessions/{device:path}", show_session, methods=["GET"]),
    Route("/athena/sessions/{device:path}", clear_session, methods=["DELETE"]),
]
