"""A real Home Assistant process for tests: `hass -c DIR` from `.venv-ha`, with a token made offline.

Stdlib + aiohttp only, so both the gateway's 3.11 venv and the 3.13 HA venv can import it.

    with HassProcess() as hass:            # ~5 s: config dir, token, `hass` started, REST API answering
        hass.url, hass.token, hass.config_dir
        async with HassWS(hass.url, hass.token) as ws:
            areas = await ws.call("config/area_registry/list")

pytest: `from tests.support.hass import hass_process, hass_home` in a conftest gives session-scoped fixtures
(one process per test run even when several conftests import them).
For homes of 1000 entities or HA going away and coming back, see tests/support/recorded_ha.py (a stand-in).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.gateway import free_port

ROOT = Path(__file__).resolve().parents[2]
HA_VENV = Path(os.environ.get("ATHENA_HA_VENV", ROOT / ".venv-ha"))
HA_STAMP = HA_VENV / ".athena-stamp"

CONFIG_YAML = """\
homeassistant:
  name: Athena Test Home
  unit_system: metric
  time_zone: UTC
  latitude: 52.37
  longitude: 4.89
  elevation: 0
  country: NL
  language: en
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
conversation:
demo:
logger:
  default: warning
"""

# Runs inside .venv-ha: HA's own auth manager makes an owner with a long-lived access token.
_TOKEN_SCRIPT = r"""
import asyncio, json, sys
from datetime import timedelta
from homeassistant.core import HomeAssistant
from homeassistant.auth import auth_manager_from_config
from homeassistant.auth.models import TOKEN_TYPE_LONG_LIVED_ACCESS_TOKEN

async def main(config_dir):
    hass = HomeAssistant(config_dir)
    auth = await auth_manager_from_config(hass, [{"type": "homeassistant"}], [])
    user = await auth._store.async_create_user(
        "Athena Test", is_owner=True, is_active=True, system_generated=False, group_ids=["system-admin"]
    )
    refresh = await auth.async_create_refresh_token(
        user, client_name="athena-tests", token_type=TOKEN_TYPE_LONG_LIVED_ACCESS_TOKEN,
        access_token_expiration=timedelta(days=3650),
    )
    token = auth.async_create_access_token(refresh)
    store = auth._store
    await store._store.async_save(store._data_to_save())
    print(json.dumps({"token": token, "user_id": user.id}))

asyncio.run(main(sys.argv[1]))
"""


async def wait_for(predicate: Callable[[], bool], seconds: float = 15.0) -> bool:
    """Poll until `predicate()` holds: a bounded wait for HA's events, not a timing assertion."""
    for _ in range(int(seconds / 0.05)):
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


def require_ha_venv() -> Path:
    """The venv `scripts/ha-env` builds (`make ha-env`); fail at once with the fix when it is missing."""
    if not HA_STAMP.exists():
        raise RuntimeError(f"{HA_VENV} is not built (no {HA_STAMP}); run `make ha-env`")
    return HA_VENV


def write_config(config_dir: Path, port: int, extra_yaml: str = "") -> None:
    config_dir.mkdir(parents=True, exist_ok=True)
    text = CONFIG_YAML.format(port=port)
    if extra_yaml:
        text += extra_yaml if extra_yaml.endswith("\n") else extra_yaml + "\n"
    (config_dir / "configuration.yaml").write_text(text)
    storage = config_dir / ".storage"
    storage.mkdir(exist_ok=True)
    # Onboarding done, so HA serves the API rather than waiting for a first user in the UI.
    onboarding = {
        "version": 4,
        "minor_version": 1,
        "key": "onboarding",
        "data": {"done": ["user", "core_config", "analytics", "integration"]},
    }
    (storage / "onboarding").write_text(json.dumps(onboarding))


def make_token(config_dir: Path) -> str:
    out = subprocess.run(
        [str(HA_VENV / "bin" / "python"), "-c", _TOKEN_SCRIPT, str(config_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"making the HA token failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["token"]


class HassProcess:
    """`hass -c DIR --skip-pip` on a free loopback port, with `.url`, `.token`, `.config_dir`, `stop()`.

    `extra_yaml` is appended to configuration.yaml (e.g. "assist_pipeline:\n" for satellite-style runs).
    """

    def __init__(
        self,
        config_dir: str | Path | None = None,
        *,
        startup_timeout: float = 120.0,
        extra_yaml: str = "",
    ) -> None:
        self._own_dir = config_dir is None
        self._extra_yaml = extra_yaml
        self.config_dir = Path(config_dir or tempfile.mkdtemp(prefix="athena-hass-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = ""
        self._startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def log_path(self) -> Path:
        return self.config_dir / "hass-stdout.log"

    def start(self) -> HassProcess:
        venv = require_ha_venv()
        write_config(self.config_dir, self.port, self._extra_yaml)
        self.token = make_token(self.config_dir)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the process
        self._proc = subprocess.Popen(
            [str(venv / "bin" / "hass"), "-c", str(self.config_dir), "--skip-pip"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"hass exited with {self._proc.returncode}:\n{self.tail()}")
            try:  # the API answers with our token and the demo platform has set up its lights
                self.state("light.kitchen_lights")
                return
            except (OSError, ValueError):  # URLError is an OSError
                time.sleep(0.25)
        raise RuntimeError(f"hass did not answer within {self._startup_timeout} s:\n{self.tail()}")

    def _request(self, path: str, body: dict[str, Any] | None = None) -> Any:
        req = urllib.request.Request(
            self.url + path,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def state(self, entity_id: str) -> dict[str, Any]:
        return self._request(f"/api/states/{entity_id}")

    def call_service(self, domain: str, service: str, entity_id: str) -> None:
        """Set a device's state behind the gateway's back, as a user at a wall switch would."""
        self._request(f"/api/services/{domain}/{service}", {"entity_id": entity_id})

    def tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._own_dir:
            shutil.rmtree(self.config_dir, ignore_errors=True)

    def __enter__(self) -> HassProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class HAWSError(RuntimeError):
    """A WebSocket command Home Assistant answered with success: false."""


class HassWS:
    """Minimal HA WebSocket client for tests: auth, then `call(type, **fields)` → the result."""

    def __init__(self, url: str, token: str) -> None:
        self._url = url.rstrip("/") + "/api/websocket"
        self._token = token
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._next_id = 1

    async def __aenter__(self) -> HassWS:
        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(self._url, max_msg_size=0)
        hello = await self._ws.receive_json()
        if hello.get("type") != "auth_required":
            raise HAWSError(f"unexpected greeting {hello}")
        await self._ws.send_json({"type": "auth", "access_token": self._token})
        auth = await self._ws.receive_json()
        if auth.get("type") != "auth_ok":
            raise HAWSError(f"auth failed: {auth}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()

    async def call(self, type_: str, **fields: Any) -> Any:
        assert self._ws is not None
        msg_id = self._next_id
        self._next_id += 1
        await self._ws.send_json({"id": msg_id, "type": type_, **fields})
        while True:
            msg = await self._ws.receive_json(timeout=30)
            if msg.get("id") == msg_id and msg.get("type") == "result":
                if not msg.get("success"):
                    raise HAWSError(f"{type_}: {msg.get('error')}")
                return msg.get("result")


async def ensure_area(ws: HassWS, area_name: str) -> str:
    """The id of the area with this name, created if missing."""
    areas = await ws.call("config/area_registry/list")
    area = next((a for a in areas if a["name"].lower() == area_name.lower()), None)
    if area is None:
        area = await ws.call("config/area_registry/create", name=area_name)
    return area["area_id"]


async def assign_area(ws: HassWS, entity_id: str, area_name: str) -> str:
    """Create the area if needed and put the entity *and its device* in it; returns the area id."""
    area_id = await ensure_area(ws, area_name)
    entry = await ws.call("config/entity_registry/update", entity_id=entity_id, area_id=area_id)
    device_id = entry["entity_entry"].get("device_id")
    if device_id:
        await ws.call("config/device_registry/update", device_id=device_id, area_id=area_id)
    return area_id


# The demo home the tests use: demo lights placed in rooms (HA's demo leaves every area empty).
DEMO_ROOMS = {
    "light.kitchen_lights": "Kitchen",
    "light.living_room_rgbww_lights": "Living Room",
    "light.bed_light": "Bedroom",
    "light.office_rgbw_lights": "Office",
}


async def furnish(url: str, token: str, rooms: dict[str, str] = DEMO_ROOMS) -> dict[str, Any]:
    """Put the demo lights in rooms; returns {"areas": {name: area_id}, "devices": {entity_id: device_id}}."""
    out: dict[str, Any] = {"areas": {}, "devices": {}}
    async with HassWS(url, token) as ws:
        for entity_id, room in rooms.items():
            out["areas"][room] = await assign_area(ws, entity_id, room)
        for entry in await ws.call("config/entity_registry/list"):
            if entry["entity_id"] in rooms:
                out["devices"][entry["entity_id"]] = entry["device_id"]
    return out


_shared: HassProcess | None = None
_shared_home: dict[str, Any] | None = None


def shared_hass() -> HassProcess:
    """One process per interpreter, even when several conftests import the fixtures below."""
    global _shared
    if _shared is None:
        _shared = HassProcess().start()
    return _shared


def shared_home() -> tuple[HassProcess, dict[str, Any]]:
    global _shared_home
    proc = shared_hass()
    if _shared_home is None:
        _shared_home = asyncio.run(furnish(proc.url, proc.token))
    return proc, _shared_home


def stop_shared() -> None:
    global _shared, _shared_home
    if _shared is not None:
        _shared.stop()
    _shared = _shared_home = None


try:  # the fixtures only where pytest is importable
    import pytest

    @pytest.fixture(scope="session")
    def hass_process():
        """One `hass` for the whole test session (start costs ~5 s)."""
        yield shared_hass()
        stop_shared()

    @pytest.fixture(scope="session")
    def hass_home(hass_process):
        """`hass_process` with the demo lights in Kitchen, Living Room, Bedroom and Office.

        Yields (hass_process, {"areas": {name: area_id}, "devices": {entity_id: ha_device_id}}): a light's
        device stands in for a voice satellite in that room.
        """
        yield shared_home()

except ImportError:  # pragma: no cover
    pass


if __name__ == "__main__":  # `python -m tests.support.hass`: start one and print how to reach it
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop hass and remove its dir on TERM too
    with HassProcess() as proc:
        print(json.dumps({"url": proc.url, "token": proc.token, "config_dir": str(proc.config_dir)}))
        sys.stdout.flush()
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
