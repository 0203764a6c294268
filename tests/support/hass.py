"""A real Home Assistant process for tests: `hass -c DIR` with a token made offline, oldest or current HA.

Stdlib + aiohttp only, so both the gateway's 3.11 venv and the 3.13 HA venv can import it.

    with HassProcess() as hass:            # ~5 s: config dir, token, `hass` started, REST API answering
        hass.url, hass.token, hass.config_dir, hass.version   # .version: what HA reports, e.g. "2025.4.4"
        async with HassWS(hass.url, hass.token) as ws:
            areas = await ws.call("config/area_registry/list")

Versions (`HassProcess(version=...)`):
- "2025.4" (default): HA 2025.4.4 in `.venv-ha` (Python 3.13, `scripts/ha-env`), the oldest HA we support.
- "current": HA 2026.11.0 (Python 3.14, `scripts/ha-current`): `.venv-ha-current` where a contributor has a
  Python 3.14, else `chroot ROOT /opt/ha/bin/hass` in the Debian sid root at $ATHENA_HA_CHROOT
  (/var/cache/athena/ha-sid). The config dir then lives inside ROOT; loopback is shared: `.url` works as is.

pytest: `from tests.support.hass import hass_process, hass_home` in a conftest gives session-scoped fixtures,
parametrized over `hass_versions()` (ids `ha-2025.4`, `ha-current`; `ATHENA_HASS_VERSIONS=2025.4` or
`=current` narrows them); a version that is not built skips, or fails under CI=true. One process per version
per test run, even when several conftests import them. `hass_version_params()` parametrizes fixtures of your
own the same way.
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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.gateway import free_port
from tests.support.processes import stop_process

ROOT = Path(__file__).resolve().parents[2]
HA_VENV = Path(os.environ.get("ATHENA_HA_VENV", ROOT / ".venv-ha"))
HA_STAMP = HA_VENV / ".athena-stamp"
HA_CURRENT_VENV = ROOT / ".venv-ha-current"
HA_CHROOT = Path(os.environ.get("ATHENA_HA_CHROOT", "/var/cache/athena/ha-sid"))
VERSIONS = ("2025.4", "current")
# Inside the chroot: a clean environment (nothing of the caller's venv or pip settings leaks in).
_CHROOT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
               "LANG": "C.UTF-8"}

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

# Runs with HA's own interpreter: HA's auth manager makes an owner and a plain user (not an administrator, as
# an operator would make for Athena), each with a long-lived access token.
# 2026.x: the auth store reads the device registry, which must be set up and loaded first.
_TOKEN_SCRIPT = r"""
import asyncio, json, sys
from datetime import timedelta
from homeassistant.core import HomeAssistant
from homeassistant.auth import auth_manager_from_config
from homeassistant.auth.models import TOKEN_TYPE_LONG_LIVED_ACCESS_TOKEN
from homeassistant.helpers import device_registry

async def main(config_dir):
    hass = HomeAssistant(config_dir)
    if hasattr(device_registry, "async_setup"):
        device_registry.async_setup(hass)
        await device_registry.async_load(hass)
    auth = await auth_manager_from_config(hass, [{"type": "homeassistant"}], [])

    async def token(name, owner, group):
        user = await auth._store.async_create_user(
            name, is_owner=owner, is_active=True, system_generated=False, group_ids=[group]
        )
        refresh = await auth.async_create_refresh_token(
            user, client_name="athena-tests", token_type=TOKEN_TYPE_LONG_LIVED_ACCESS_TOKEN,
            access_token_expiration=timedelta(days=3650),
        )
        return auth.async_create_access_token(refresh)

    tokens = {"token": await token("Athena Test", True, "system-admin"),
              "user_token": await token("Athena Voice", False, "system-users")}
    store = auth._store
    await store._store.async_save(store._data_to_save())
    print(json.dumps(tokens))

asyncio.run(main(sys.argv[1]))
"""


async def wait_for(predicate: Callable[[], bool], seconds: float = 15.0) -> bool:
    """Poll until `predicate()` holds: a bounded wait for HA's events, not a timing assertion."""
    for _ in range(int(seconds / 0.05)):
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


class HassUnavailable(RuntimeError):
    """This HA version is not built on this machine; the message says how to build it."""


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class HassRuntime:
    """How to run one HA version: argv prefixes for its Python and `hass`, and the chroot root if any."""

    name: str
    python: tuple[str, ...]
    hass: tuple[str, ...]
    root: Path | None = None  # config dirs must live inside it; commands see them without this prefix
    env: dict[str, str] | None = None  # None: the caller's environment

    def inside(self, path: Path) -> str:
        """`path` as HA's processes see it."""
        if self.root is None:
            return str(path)
        return "/" + str(path.resolve().relative_to(self.root.resolve()))

    def tmp_dir(self) -> Path:
        """Where a config dir for this runtime can go (a host path)."""
        return (self.root / "tmp") if self.root is not None else Path(tempfile.gettempdir())


def runtime(version: str = "2025.4") -> HassRuntime:
    """The runtime for "2025.4" or "current"; raises HassUnavailable with the command that builds it."""
    if version == "2025.4":
        if not HA_STAMP.exists():
            raise HassUnavailable(f"{HA_VENV} is not built (no {HA_STAMP}); run `make ha-env`")
        return HassRuntime(version, (str(HA_VENV / "bin" / "python"),), (str(HA_VENV / "bin" / "hass"),))
    if version != "current":
        raise ValueError(f"unknown HA version {version!r}; known: {', '.join(VERSIONS)}")
    if (HA_CURRENT_VENV / ".athena-stamp").exists():
        venv = HA_CURRENT_VENV
        return HassRuntime(version, (str(venv / "bin" / "python"),), (str(venv / "bin" / "hass"),))
    if (HA_CHROOT / "opt" / "ha" / ".athena-stamp").exists():
        if os.geteuid() != 0:
            raise HassUnavailable(f"the current HA is in the chroot {HA_CHROOT}, and chroot needs root")
        chroot = (shutil.which("chroot") or "/usr/sbin/chroot", str(HA_CHROOT))
        return HassRuntime(
            version, (*chroot, "/opt/ha/bin/python"), (*chroot, "/opt/ha/bin/hass"), HA_CHROOT, _CHROOT_ENV
        )
    raise HassUnavailable(
        "the current HA (2026.11) is not built: run `make ha-current` (a Python 3.14 venv, or as root a "
        f"Debian sid chroot at {HA_CHROOT})"
    )


def require_ha_venv() -> Path:
    """The venv `scripts/ha-env` builds (`make ha-env`); fail at once with the fix when it is missing."""
    runtime("2025.4")
    return HA_VENV


def hass_versions() -> list[str]:
    """The HA versions a test run covers: $ATHENA_HASS_VERSIONS (comma-separated), default both."""
    wanted = [v.strip() for v in os.environ.get("ATHENA_HASS_VERSIONS", ",".join(VERSIONS)).split(",")]
    unknown = [v for v in wanted if v not in VERSIONS]
    if unknown:
        raise ValueError(f"ATHENA_HASS_VERSIONS: unknown {unknown}; known: {', '.join(VERSIONS)}")
    return [v for v in wanted if v]


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


def make_tokens(config_dir: Path, rt: HassRuntime | None = None) -> dict[str, str]:
    """{"token": the owner's, "user_token": a non-administrator's}."""
    rt = rt or runtime("2025.4")
    out = subprocess.run(
        [*rt.python, "-c", _TOKEN_SCRIPT, rt.inside(config_dir)],
        env=rt.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"making the HA tokens failed:\n{out.stderr[-3000:]}")
    tokens: dict[str, str] = json.loads(out.stdout.strip().splitlines()[-1])
    return tokens


class HassProcess:
    """`hass -c DIR --skip-pip` on a free loopback port: `.url`, `.token`, `.user_token`, `.config_dir`,
    `.version`, stop().

    `version`: "2025.4" (default) or "current" (see the module's docstring); `.version` is what HA reports.
    `extra_yaml` is appended to configuration.yaml (e.g. "assist_pipeline:\n" for satellite-style runs).
`custom_components`: integration folders copied into the config dir's custom_components/ before start, as
    a manual install does. A `config_dir` given for the chroot runtime must lie inside its root; by default a
    temp dir is made (inside the root for the chroot) and removed by stop().

    """

    def __init__(
        self,
        config_dir: str | Path | None = None,
        *,
        version: str = "2025.4",
        startup_timeout: float = 120.0,
        extra_yaml: str = "",
        custom_components: Iterable[str | Path] = (),
    ) -> None:
        self.runtime = runtime(version)
        self._own_dir = config_dir is None
        self._extra_yaml = extra_yaml
        self._custom_components = [Path(p) for p in custom_components]
        if config_dir is None:
            tmp = self.runtime.tmp_dir()
            config_dir = tempfile.mkdtemp(prefix="athena-hass-", dir=tmp)
        self.config_dir = Path(config_dir)
        self.runtime.inside(self.config_dir)  # a dir outside the chroot's root fails here, not in hass
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = ""  # the owner's (an administrator)
        self.user_token = ""  # a user's who is not an administrator
        self.version = ""  # HA's own, once started
        self._startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def log_path(self) -> Path:
        return self.config_dir / "hass-stdout.log"

    def start(self) -> HassProcess:
        rt = self.runtime
        write_config(self.config_dir, self.port, self._extra_yaml)
        for src in self._custom_components:
            dest = self.config_dir / "custom_components" / src.name
            shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
        tokens = make_tokens(self.config_dir, rt)
        self.token, self.user_token = tokens["token"], tokens["user_token"]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the process
        self._proc = subprocess.Popen(
            [*rt.hass, "-c", rt.inside(self.config_dir), "--skip-pip"],
            env=rt.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_ready()
            self.version = self._request("/api/config")["version"]
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"hass exited with {self._proc.returncode}:\n{self.tail()}")
            # The API answers with our token and the demo has set up its lights (2026.x: through a config
            # entry, a moment after /api/ first answers).
            try:
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
        return self.log_text()[-n:]

    def log_text(self) -> str:
        """HA's whole output so far (home-assistant.log is not written with --skip-pip's defaults)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_lines(self, word: str, levels: Iterable[str] = ("WARNING", "ERROR", "CRITICAL")) -> list[str]:
        """HA's log records at these levels that mention `word` (with their continuation lines)."""
        records: list[list[str]] = []
        for line in self.log_text().splitlines():
            if line[:4].isdigit() or not records:  # "2026-11-05 10:00:00.123 WARNING (…) [logger] message"
                records.append([line])
            else:
                records[-1].append(line)
        wanted = tuple(levels)
        return [
            "\n".join(r)
            for r in records
            if any(f" {lvl} " in r[0] for lvl in wanted) and word.lower() in "\n".join(r).lower()
        ]

    def stop(self) -> None:
        stop_process(self._proc, timeout=20)
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
    """Create the area if needed and put the entity's device, and the entity, in it; returns the area id.

    2026.x refuses an area of its own for an entity without a name of its own (the demo lights): there the
    entity keeps area_id None and has its device's area.
    """
    area_id = await ensure_area(ws, area_name)
    entry = await ws.call("config/entity_registry/get", entity_id=entity_id)
    if entry.get("device_id"):
        await ws.call("config/device_registry/update", device_id=entry["device_id"], area_id=area_id)
    try:
        await ws.call("config/entity_registry/update", entity_id=entity_id, area_id=area_id)
    except HAWSError as err:
        if "invalid_info" not in str(err) or not entry.get("device_id"):
            raise
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


_shared: dict[str, HassProcess] = {}
_shared_home: dict[str, dict[str, Any]] = {}


def shared_hass(version: str = "2025.4") -> HassProcess:
    """One process per version per interpreter, even when several conftests import the fixtures below."""
    if version not in _shared:
        _shared[version] = HassProcess(version=version).start()
    return _shared[version]


def shared_home(version: str = "2025.4") -> tuple[HassProcess, dict[str, Any]]:
    proc = shared_hass(version)
    if version not in _shared_home:
        _shared_home[version] = asyncio.run(furnish(proc.url, proc.token))
    return proc, _shared_home[version]


def stop_shared(version: str | None = None) -> None:
    for v in [version] if version else list(_shared):
        proc = _shared.pop(v, None)
        if proc is not None:
            proc.stop()
        _shared_home.pop(v, None)


try:  # the fixtures only where pytest is importable
    import pytest

    def hass_version_params() -> dict[str, Any]:
        """`@pytest.fixture(**hass_version_params())`: one fixture instance per HA version of this run."""
        return {"params": hass_versions(), "ids": lambda v: f"ha-{v}"}

    def require_version(version: str) -> HassRuntime:
        """The runtime, or fail with the line that says how to build it.

        "2025.4" always fails when missing (`make` builds it first, anywhere with a Python 3.13); "current"
        skips locally, since it needs a Python 3.14 or root, and fails under CI=true.
        """
        try:
            return runtime(version)
        except HassUnavailable as err:
            if in_ci() or version == "2025.4":
                pytest.fail(f"HA {version} is required in CI: {err}", pytrace=False)
            pytest.skip(f"HA {version}: {err}")

    @pytest.fixture(scope="session", **hass_version_params())
    def hass_process(request: pytest.FixtureRequest):
        """One `hass` per HA version for the whole test session (start costs ~5 s)."""
        require_version(request.param)
        yield shared_hass(request.param)
        stop_shared(request.param)

    @pytest.fixture(scope="session")
    def hass_home(hass_process):
        """`hass_process` with the demo lights in Kitchen, Living Room, Bedroom and Office.

        Yields (hass_process, {"areas": {name: area_id}, "devices": {entity_id: ha_device_id}}): a light's
        device stands in for a voice satellite in that room.
        """
        yield shared_home(hass_process.runtime.name)

except ImportError:  # pragma: no cover
    pass


if __name__ == "__main__":  # `python -m tests.support.hass [2025.4|current]`: start one, print its address
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop hass and remove its dir on TERM too
    with HassProcess(version=sys.argv[1] if len(sys.argv) > 1 else "2025.4") as proc:
        info = {"url": proc.url, "token": proc.token, "version": proc.version}
        print(json.dumps({**info, "config_dir": str(proc.config_dir)}))
        sys.stdout.flush()
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
