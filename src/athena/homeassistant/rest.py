"""HA's REST API over one shared aiohttp session: states, config and `/api/intent/handle`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson
import structlog

from athena.homeassistant.errors import HAAuthError, HAResponseError, HAUnavailable
from athena.turns import Target, target_type

log = structlog.get_logger("athena.homeassistant")


class HARest:
    def __init__(self, url: str, token: str, *, timeout: float = 10.0, connect_timeout: float = 3.0) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout)
        self._session: aiohttp.ClientSession | None = None
        # Older HA (2025.x) rejects `language` / `device_id` / `assistant` in /api/intent/handle ("extra keys
        # not allowed"); learned on the first such 400 and remembered for the process.
        self.intent_extras = True

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {self._token}"},
                timeout=self._timeout,
                json_serialize=lambda obj: orjson.dumps(obj).decode(),
                connector=aiohttp.TCPConnector(limit=32, keepalive_timeout=60),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        try:
            async with self.session.request(method, self.url + path, json=body) as resp:
                raw = await resp.read()
                if resp.status in (401, 403):
                    raise HAAuthError(f"Home Assistant refused the token ({resp.status})")
                if resp.status >= 400:
                    raise HAResponseError(
                        f"{method} {path}: HTTP {resp.status}: {raw[:200].decode(errors='replace')}",
                        resp.status,
                    )
        except (TimeoutError, aiohttp.ClientConnectionError, OSError) as exc:
            raise HAUnavailable(
                f"Home Assistant at {self.url} is unreachable: {exc or type(exc).__name__}"
            ) from exc
        if not raw:
            return None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise HAResponseError(f"{method} {path}: not JSON", resp.status) from exc

    async def config(self) -> dict[str, Any]:
        return json_object(await self.request("GET", "/api/config"), "/api/config")

    async def states(self) -> list[dict[str, Any]]:
        return json_objects(await self.request("GET", "/api/states"), "/api/states")

    async def state(self, entity_id: str) -> dict[str, Any] | None:
        try:
            return json_object(await self.request("GET", f"/api/states/{entity_id}"), "/api/states/<id>")
        except HAResponseError as exc:
            if exc.status == 404:
                return None
            raise

    async def handle_intent(
        self, name: str, data: dict[str, Any], *, language: str | None = None, device_id: str | None = None
    ) -> dict[str, Any]:
        """Let HA resolve names, areas and exposure and run the intent; returns its IntentResponse dict.

        `assistant: "conversation"` makes HA apply the Assist exposure rules where it accepts the field.
        """
        body: dict[str, Any] = {"name": name, "data": data}
        if self.intent_extras:
            extras: dict[str, Any] = {"assistant": "conversation"}
            if language:
                extras["language"] = language
            if device_id:
                extras["device_id"] = device_id
            try:
                return _intent_dict(await self.request("POST", "/api/intent/handle", {**body, **extras}))
            except HAResponseError as exc:
                if exc.status != 400 or "extra keys" not in str(exc):
                    raise
                log.info("ha.intent_handle.minimal", reason="this Home Assistant takes only name and data")
                self.intent_extras = False
        return _intent_dict(await self.request("POST", "/api/intent/handle", body))


def json_object(data: Any, what: str) -> dict[str, Any]:
    """HA's answer, checked to be the JSON object its API documents."""
    if not isinstance(data, dict):
        raise HAResponseError(f"{what}: not a JSON object")
    return data


def json_objects(data: Any, what: str) -> list[dict[str, Any]]:
    """HA's answer, checked to be a list of JSON objects."""
    if not isinstance(data, list):
        raise HAResponseError(f"{what}: not a JSON list")
    return [item for item in data if isinstance(item, dict)]


def response_targets(result: Mapping[str, Any]) -> tuple[tuple[Target, ...], tuple[Target, ...]]:
    """(success, failed) targets of an IntentResponse dict, as HA lists them in its `data`."""
    data = result.get("data")
    if not isinstance(data, Mapping):
        return (), ()
    return _targets(data.get("success")), _targets(data.get("failed"))


def _targets(raw: Any) -> tuple[Target, ...]:
    out = []
    for item in raw if isinstance(raw, list) else ():
        if isinstance(item, Mapping) and item.get("id") is not None:
            kind = target_type(item.get("type"))
            out.append(Target(name=str(item.get("name") or item["id"]), id=str(item["id"]), type=kind))
    return tuple(out)


def _intent_dict(result: Any) -> dict[str, Any]:
    if not isinstance(result, dict) or "response_type" not in result:
        raise HAResponseError("/api/intent/handle: not an intent response")
    return result
