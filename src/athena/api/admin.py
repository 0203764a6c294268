"""Operator endpoints under /athena: what the gateway is (the HA integration's config flow checks URL and
token with /athena/info), the live sessions (list, show, end one device's, export), the devices with their
run-time settings, and the usage figures. The console (/admin) and `athena devices | sessions` call these."""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable
from datetime import datetime
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from athena.api.bodies import device_id, read_model
from athena.api.errors import ApiError
from athena.api.responses import json_response
from athena.api.state import engine, gateway
from athena.engine.operator import AmbiguousDevice, UnknownDevice
from athena.stores.base import StoreError

T = TypeVar("T")


async def _stored(call: Awaitable[T]) -> T:
    """A store failure is the operator's 503, not a 500; a device nobody knows a 404, an HA name several
    devices share a 409."""
    try:
        return await call
    except StoreError as exc:
        raise ApiError(503, f"the session store failed: {exc}", "store_unavailable") from None
    except UnknownDevice as exc:
        raise ApiError(404, str(exc), "unknown_device") from None
    except AmbiguousDevice as exc:
        raise ApiError(409, str(exc), "ambiguous_device") from None


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


# -- devices, export, usage (the operator's console) ---------------------------------------------------
DAY = 86_400.0
YEAR = 365 * DAY
MAX_WINDOW = 3660 * DAY  # a stats window: ten years of days at most
_LANGUAGE = r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$"


class DeviceSettingsIn(BaseModel):
    """PUT /athena/devices/{device}: the settings sent are set (null clears one), the others are kept."""

    model_config = ConfigDict(extra="forbid", strict=True)
    timeout: PositiveFloat | None = Field(default=None, le=YEAR)
    max_age: PositiveFloat | None = Field(default=None, le=YEAR)
    history: int | None = Field(default=None, ge=0, le=1000)
    system_prompt: str | None = Field(default=None, max_length=4000)
    language: str | None = Field(default=None, max_length=35, pattern=_LANGUAGE)
    status: Literal["allowed", "blocked"] | None = None


def _ref(request: Request) -> str:
    """A device as an operator names it: its id or its HA name (names may have spaces)."""
    ref = str(request.path_params["device"]).strip()
    if not 0 < len(ref) <= 256:
        raise ApiError(422, "device: give a device id or name of 1-256 characters", "invalid_device_id")
    return ref


async def list_devices(request: Request) -> Response:
    op = engine(request).operator
    return json_response({"policy": op.policy, "devices": await _stored(op.devices())})


async def device(request: Request) -> Response:
    """GET: one device with its live and past sessions; PUT: change its settings; DELETE: forget it."""
    op, ref = engine(request).operator, _ref(request)
    if request.method == "PUT":
        body = await read_model(request, DeviceSettingsIn)
        changes = {name: getattr(body, name) for name in body.model_fields_set}
        if not changes:
            names = ", ".join(DeviceSettingsIn.model_fields)
            raise ApiError(422, f"body: send at least one of {names}", "invalid_value")
        return json_response(await _stored(op.configure(ref, changes)))
    if request.method == "DELETE":
        found = await _stored(op.resolve(ref))
        await _stored(op.forget(found))
        return json_response({"deleted": True, "device": found})
    return json_response(await _stored(op.device(ref)))


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


async def export(request: Request) -> Response:
    """A session with every message as JSON, for debugging: the live one, or a past one (`?session=ID`)."""
    key = _device(request)
    session_id = request.query_params.get("session") or None
    found = await _stored(engine(request).operator.export(key, session_id))
    if found is None:
        what = f"no session {session_id!r}" if session_id else "no live session"
        raise ApiError(404, f"{what} for device {key!r} (past sessions are kept for the retention period)",
                       "no_session")
    name = f"athena-{_UNSAFE.sub('_', key)}-{found['session']['id']}.json"
    return json_response(found, headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _when(request: Request, name: str, default: float) -> float:
    """A query time: Unix seconds, or an ISO 8601 date or date-time (the gateway's local time if no zone)."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    what = f"{name}: {raw[:40]!r} is neither Unix seconds nor an ISO 8601 date or date-time"
    bad = ApiError(422, what, "invalid_value")
    try:
        value = float(raw)
    except ValueError:
        try:
            when = datetime.fromisoformat(raw)
            if when.tzinfo is None:
                zone = engine(request).operator.zone or datetime.now().astimezone().tzinfo
                when = when.replace(tzinfo=zone)
            value = when.timestamp()
        except (ValueError, OverflowError, OSError):
            raise bad from None
    if not math.isfinite(value) or abs(value) > 1e11:
        raise bad
    return value


async def stats(request: Request) -> Response:
    """Usage figures between `since` and `until` (default: the last 7 days), optionally of one `device`."""
    now = engine(request).clock()
    until = _when(request, "until", now)
    since = _when(request, "since", until - 7 * DAY)
    if since >= until:
        raise ApiError(422, "since: must be before until", "invalid_value")
    if until - since > MAX_WINDOW:
        raise ApiError(422, "since: the window is at most 3660 days", "invalid_value")
    dev = device_id(request.query_params.get("device") or None, "device")
    return json_response(await _stored(engine(request).operator.stats(since, until, dev)))


routes = [
    Route("/athena/info", info, methods=["GET"]),
    Route("/athena/sessions", list_sessions, methods=["GET"]),
    Route("/athena/sessions/{device:path}/export", export, methods=["GET"]),
    Route("/athena/sessions/{device:path}", session, methods=["GET", "DELETE"]),
    Route("/athena/devices", list_devices, methods=["GET"]),
    Route("/athena/devices/{device:path}", device, methods=["GET", "PUT", "DELETE"]),
    Route("/athena/stats", stats, methods=["GET"]),
]
