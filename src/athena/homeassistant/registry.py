"""Keeps the `Home` snapshot fresh: rebuilt when HA reports a registry change (debounced), after every
reconnect, and every `ha_registry_refresh` seconds (entity names live in states, which send no event).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog

from athena.homeassistant.errors import HAError, HAResponseError
from athena.homeassistant.home import Home, build_home, exposed_to_assist
from athena.homeassistant.rest import HARest, json_object, json_objects
from athena.homeassistant.websocket import HAWebSocket
from athena.tasks import cancel_and_wait

log = structlog.get_logger("athena.homeassistant")

REGISTRY_EVENTS = (
    "area_registry_updated",
    "floor_registry_updated",
    "device_registry_updated",
    "entity_registry_updated",
)


class HomeRegistry:
    def __init__(
        self, rest: HARest, ws: HAWebSocket, *, refresh_interval: float, debounce: float = 0.5
    ) -> None:
        self.rest = rest
        self.ws = ws
        self.home = Home()
        self.last_error: str | None = None
        self._interval = refresh_interval
        self._debounce = debounce
        self._lock = asyncio.Lock()
        self._pending: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._periodic: asyncio.Task[None] | None = None
        self._loaded = asyncio.Event()
        self._warned_exposure = False
        for event_type in REGISTRY_EVENTS:
            ws.on_event(event_type, self._on_registry_event)
        ws.on_connect(self._refresh_quietly)

    async def start(self) -> None:
        self._periodic = asyncio.create_task(self._every_interval(), name="ha-registry-refresh")

    async def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
        for task in [self._periodic, *self._tasks]:
            await cancel_and_wait(task)

    async def wait_loaded(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._loaded.wait()
        return self.home.loaded

    def _on_registry_event(self, event: dict[str, Any]) -> None:
        # A rename fires several events in a row: refresh once, shortly after the last.
        if self._pending is not None:
            self._pending.cancel()
        loop = asyncio.get_running_loop()
        self._pending = loop.call_later(self._debounce, self._spawn_refresh)

    def _spawn_refresh(self) -> None:
        self._pending = None
        task = asyncio.create_task(self._refresh_quietly())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _every_interval(self) -> None:
        while True:
            healthy = self.home.loaded and self.last_error is None
            # After a failed refresh, retry soon rather than serve a stale (or no) home for minutes.
            await asyncio.sleep(self._interval if healthy else min(self._interval, 10.0))
            if self.ws.connected:
                await self._refresh_quietly()

    async def _refresh_quietly(self) -> None:
        try:
            await self.refresh()
        except HAError as exc:
            log.warning("ha.registry.refresh_failed", error=str(exc))
        except Exception:
            log.exception("ha.registry.refresh_failed")

    async def refresh(self) -> Home:
        """Fetch everything and swap the snapshot atomically; raises HAError (keeping the old snapshot)."""
        async with self._lock:
            try:
                states, areas, floors, devices, entities, exposed_map = await asyncio.gather(
                    self.rest.states(),
                    self.ws.call("config/area_registry/list"),
                    self._floors(),
                    self.ws.call("config/device_registry/list"),
                    self.ws.call("config/entity_registry/list"),
                    self._exposure(),
                )
                registry_ids = {e["entity_id"] for e in entities}
                wanted = sorted(registry_ids & exposed_to_assist(states, entities, exposed_map))
                aliases = await self._aliases(wanted)
            except HAError as exc:
                self.last_error = str(exc)
                raise
            self.home = build_home(
                states=states,
                areas=areas,
                floors=floors,
                devices=devices,
                entities=entities,
                exposed=exposed_map,
                aliases=aliases,
                version=self.home.version + 1,
            )
            self.last_error = None
            self._loaded.set()
            log.info(
                "ha.registry.refreshed",
                entities=len(self.home.entities),
                areas=len(self.home.areas),
                floors=len(self.home.floors),
                version=self.home.version,
            )
            return self.home

    async def _exposure(self) -> dict[str, Any]:
        try:
            result = await self.ws.call("homeassistant/expose_entity/list")
        except HAResponseError as exc:
            if "unauthorized" not in str(exc).lower():
                raise
            if not self._warned_exposure:  # a non-admin token: registry options decide (exposed_to_assist)
                log.warning(
                    "ha.registry.exposure_list_denied",
                    hint="a non-admin token: entities outside the entity registry count as unexposed",
                )
                self._warned_exposure = True
            return {}
        exposed = json_object(result or {}, "expose_entity/list").get("exposed_entities")
        return exposed if isinstance(exposed, dict) else {}

    async def _floors(self) -> list[dict[str, Any]]:
        try:
            return json_objects(await self.ws.call("config/floor_registry/list"), "floor_registry/list")
        except HAError as exc:
            if "unknown_command" in str(exc):  # an HA older than floors (2024.4)
                return []
            raise

    async def _aliases(self, entity_ids: list[str]) -> dict[str, list[str]]:
        if not entity_ids:
            return {}
        entries = await self.ws.call("config/entity_registry/get_entries", entity_ids=entity_ids)
        return {eid: list(e.get("aliases") or ()) for eid, e in (entries or {}).items() if e}
