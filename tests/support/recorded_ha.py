"""A small Home Assistant stand-in on loopback, answering like HA 2025.4 did when recorded.

For what a real `hass` (tests/support/hass.py) cannot do cheaply: homes of 1000 entities (benchmarks), going
down and coming back on the same port (reconnect tests), and a steady, HA-free latency baseline. It serves the
slice of HA's API the gateway uses: REST `/api/`, `/api/config`, `/api/states[/<id>]`, `/api/intent/handle`,
and the WebSocket API (auth, registry lists, exposure list, `get_entries`,
`subscribe_events`, registry-updated events).

Stdlib + aiohttp only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable
from typing import Any

from aiohttp import WSMsgType, web

TOKEN = "recorded-ha-token"
ROOMS = ("Kitchen", "Living Room", "Bedroom", "Office", "Hallway", "Bathroom", "Garage", "Study")
KINDS = (
    ("light", "Lights", "on"),
    ("switch", "Fan Switch", "off"),
    ("cover", "Blinds", "closed"),
    ("sensor", "Temperature", "21.5"),
    ("lock", "Door Lock", "locked"),
)


def make_home(n_entities: int, rooms: Iterable[str] = ROOMS) -> dict[str, Any]:
    """A synthetic home shaped like HA's API answers: n entities spread over rooms, every one exposed.

    Its keys are `build_home`'s keyword arguments: `build_home(**make_home(50))` is the gateway's snapshot.
    """
    rooms = list(rooms)
    areas = [
        {"area_id": r.lower().replace(" ", "_"), "name": r, "aliases": [], "floor_id": None} for r in rooms
    ]
    states, entities, devices, exposed = [], [], [], {}
    for i in range(n_entities):
        domain, kind, state = KINDS[i % len(KINDS)]
        room = rooms[i % len(rooms)]
        area_id = room.lower().replace(" ", "_")
        nth = i // (len(KINDS) * len(rooms))
        name = f"{room} {kind}" + (f" {nth + 1}" if nth else "")
        entity_id = f"{domain}.{name.lower().replace(' ', '_')}"
        device_id = f"dev{i:05d}"
        attrs: dict[str, Any] = {"friendly_name": name}
        if domain == "light":
            attrs["brightness"] = 180
        if domain == "sensor":
            attrs.update(unit_of_measurement="°C", device_class="temperature")
        states.append({"entity_id": entity_id, "state": state, "attributes": attrs})
        entities.append(
            {
                "entity_id": entity_id,
                "device_id": device_id,
                "area_id": None,
                "name": None,
                "options": {"conversation": {"should_expose": True}},  # HA writes it once it decides
            }
        )
        devices.append({"id": device_id, "area_id": area_id, "name": name})
        exposed[entity_id] = {"conversation": True}
    # A voice satellite in every room, not an entity anyone controls.
    for area in areas:
        devices.append(
            {"id": f"satellite-{area['area_id']}", "area_id": area["area_id"], "name": "Satellite"}
        )
    return {
        "states": states,
        "areas": areas,
        "floors": [],
        "devices": devices,
        "entities": entities,
        "exposed": exposed,
    }


class RecordedHA:
    """`async with RecordedHA(make_home(50)) as ha:` then point the client at `ha.url` with `TOKEN`.

    `modern=False` rejects `language` / `device_id` / `assistant` in /api/intent/handle like HA 2025.4;
    `delay` adds HA-side time to every REST answer. `requests` records (method, path, body).
    """

    def __init__(
        self, home: dict[str, Any] | None = None, *, modern: bool = False, port: int = 0, delay: float = 0.0
    ) -> None:
        self.home = home or make_home(20)
        self.modern = modern
        self.port = port
        self.delay = delay
        self.requests: list[tuple[str, str, Any]] = []
        self._runner: web.AppRunner | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self._index()

    def _index(self) -> None:
        self.states = {s["entity_id"]: s for s in self.home["states"]}
        self.device_area = {d["id"]: d["area_id"] for d in self.home["devices"]}
        self.entity_area = {
            e["entity_id"]: e.get("area_id") or self.device_area.get(e.get("device_id"))
            for e in self.home["entities"]
        }
        self.area_by_name = {a["name"].casefold(): a for a in self.home["areas"]}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> RecordedHA:
        app = web.Application()
        app.router.add_get("/api/", self._api)
        app.router.add_get("/api/config", self._config)
        app.router.add_get("/api/states", self._all_states)
        app.router.add_get("/api/states/{entity_id}", self._state)
        app.router.add_post("/api/intent/handle", self._intent)
        app.router.add_get("/api/websocket", self._websocket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> RecordedHA:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- REST ---------------------------------------------------------------------------------------------
    async def _guard(self, request: web.Request, body: Any = None) -> web.Response | None:
        self.requests.append((request.method, request.path, body))
        if self.delay:
            await asyncio.sleep(self.delay)
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"message": "Unauthorized"}, status=401)
        return None

    async def _api(self, request: web.Request) -> web.Response:
        return await self._guard(request) or web.json_response({"message": "API running."})

    async def _config(self, request: web.Request) -> web.Response:
        return await self._guard(request) or web.json_response({"language": "en", "version": "2025.4.4"})

    async def _all_states(self, request: web.Request) -> web.Response:
        return await self._guard(request) or web.json_response(list(self.states.values()))

    async def _state(self, request: web.Request) -> web.Response:
        if denied := await self._guard(request):
            return denied
        state = self.states.get(request.match_info["entity_id"])
        if state is None:
            return web.json_response({"message": "Entity not found."}, status=404)
        return web.json_response(state)

    async def _intent(self, request: web.Request) -> web.Response:
        body = await request.json()
        if denied := await self._guard(request, body):
            return denied
        extra = set(body) - {"name", "data"}
        if extra and not self.modern:
            key = sorted(extra)[0]
            return web.json_response(
                {"message": f"Message format incorrect: extra keys not allowed @ data['{key}']"}, status=400
            )
        name, data = body.get("name"), body.get("data") or {}
        response: dict[str, Any] = {
            "speech": {},
            "card": {},
            "language": body.get("language", "en"),
            "response_type": "action_done",
            "data": {"targets": [], "success": [], "failed": []},
        }
        if name == "HassGetCurrentTime":
            response["speech_slots"] = {"time": dt.datetime.now().time().isoformat()}
            return web.json_response(response)
        areas, targets = self._match(data)
        if not targets:
            if self.modern:
                response.update(response_type="error", data={"code": "no_valid_targets"})
                return web.json_response(response)
            return web.Response(status=500, text="500 Internal Server Error\n\nServer got itself in trouble")
        for entity_id in targets:
            state = self.states[entity_id]
            if name == "HassTurnOn":
                state["state"] = "on"
            elif name == "HassTurnOff":
                state["state"] = "off"
            elif name == "HassLightSet" and "brightness" in data:
                state["state"] = "on" if data["brightness"] else "off"
                state["attributes"]["brightness"] = round(float(data["brightness"]) * 255 / 100)
        if name == "HassGetState":
            response["response_type"] = "query_answer"
        response["data"]["success"] = [
            *({"name": a["name"], "type": "area", "id": a["area_id"]} for a in areas),
            *(
                {"name": self.states[e]["attributes"]["friendly_name"], "type": "entity", "id": e}
                for e in targets
            ),
        ]
        return web.json_response(response)

    def _match(self, data: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
        domains = data.get("domain")
        domains = {domains} if isinstance(domains, str) else set(domains or ())
        areas: list[dict[str, Any]] = []
        candidates = list(self.states)
        if "area" in data:
            area = self.area_by_name.get(str(data["area"]).casefold())
            if area is None:
                return [], []
            areas = [area]
            candidates = [e for e in candidates if self.entity_area.get(e) == area["area_id"]]
        if "name" in data:
            wanted = str(data["name"]).casefold()
            candidates = [
                e
                for e in candidates
                if self.states[e]["attributes"].get("friendly_name", "").casefold() == wanted
            ]
        elif "area" not in data and not domains:
            return [], []
        if domains:
            candidates = [e for e in candidates if e.split(".", 1)[0] in domains]
        return areas, candidates

    # -- WebSocket ----------------------------------------------------------------------------------------
    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.add(ws)
        try:
            await ws.send_json({"type": "auth_required", "ha_version": "2025.4.4"})
            auth = await ws.receive_json()
            if auth.get("access_token") != TOKEN:
                await ws.send_json({"type": "auth_invalid", "message": "Invalid access token"})
                return ws
            await ws.send_json({"type": "auth_ok", "ha_version": "2025.4.4"})
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    break
                cmd = msg.json()
                self.requests.append(("WS", cmd.get("type"), cmd))
                await ws.send_json(
                    {"id": cmd.get("id"), "type": "result", "success": True, "result": self._ws_result(cmd)}
                )
        finally:
            self._sockets.discard(ws)
        return ws

    def _ws_result(self, cmd: dict[str, Any]) -> Any:
        kind = cmd.get("type")
        home = self.home
        if kind == "config/area_registry/list":
            return home["areas"]
        if kind == "config/floor_registry/list":
            return home["floors"]
        if kind == "config/device_registry/list":
            return home["devices"]
        if kind == "config/entity_registry/list":
            return home["entities"]
        if kind == "homeassistant/expose_entity/list":
            return {"exposed_entities": home["exposed"]}
        if kind == "config/entity_registry/get_entries":
            return {e: {"entity_id": e, "aliases": []} for e in cmd.get("entity_ids", ())}
        return None

    async def registry_updated(self, event_type: str = "area_registry_updated") -> None:
        """Tell every connected client the registries changed (after editing `self.home`)."""
        self._index()
        for ws in list(self._sockets):
            await ws.send_json(
                {"id": 0, "type": "event", "event": {"event_type": event_type, "data": {"action": "update"}}}
            )
