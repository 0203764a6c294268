"""The composition root: builds the running gateway from the settings, and opens and closes its parts.

Each part receives only its slice of the settings (a SessionPolicy, the LLM's URLs and timeouts, HA's URL and
token, the prompt's settings); nothing below this module reads `Settings`. Used by the HTTP app, the CLI, the
tests' gateway fixtures and the benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from pydantic import SecretStr
from ulid import ULID

from athena import __version__
from athena.config import Settings
from athena.engine import Engine, PromptSettings
from athena.homeassistant import HAClient
from athena.llm import (
    FallbackBackend,
    LLMBackend,
    LLMError,
    LLMHTTPError,
    LLMModelMissing,
    LLMTimeout,
    LLMWrongEndpoint,
    Timeouts,
    make_backend,
)
from athena.local import LocalPath
from athena.sessions.manager import DeviceRule, SessionManager, SessionPolicy
from athena.stores import Retention, StoreDegraded, StoreError, create_store, store_kind
from athena.tools import HA_POLICY, HOME_ASSISTANT, HomeAssistantTools, MCPToolbox, ToolPolicy, ToolServer
from athena.turns import Turn

log = structlog.get_logger("athena")

PROBE_TTL = 3.0
PROBE_TIMEOUT = 2.0


INSTANCE_FILE = "instance_id"


def instance_id(settings: Settings) -> str:
    """ATHENA_INSTANCE_ID, else the id generated into the data dir on first start (kept across restarts)."""
    if settings.instance_id:
        return settings.instance_id
    path = settings.data_dir / INSTANCE_FILE
    with contextlib.suppress(OSError):
        if existing := path.read_text().strip():
            return existing
    value = str(ULID())
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("x") as f:  # another process may have won the race: then its id counts
            f.write(value + "\n")
    except FileExistsError:
        return path.read_text().strip() or value
    return value


class GatewayStartError(Exception):
    """A part could not start (store or LLM unreachable, a bad URL): one line for the operator."""


# -- the settings' slices ------------------------------------------------------------------------------
def session_policy(settings: Settings) -> SessionPolicy:
    return SessionPolicy(
        timeout=settings.session_timeout,
        max_age=settings.session_max_age,
        cleanup_interval=settings.cleanup_interval,
        devices={
            k: DeviceRule(v.timeout, v.max_age, v.history, v.system_prompt, v.language, v.status)
            for k, v in settings.devices.items()
        },
        history_max_messages=settings.history_max_messages,
        history_context_messages=settings.history_context_messages,
        history_token_budget=settings.history_token_budget,
        device_policy=settings.device_policy,
    )


def retention(settings: Settings) -> Retention:
    """ATHENA_RETENTION_DAYS (transcripts) and ATHENA_USAGE_RETENTION_DAYS, for the store."""
    days = 86_400.0
    return Retention(transcripts=settings.retention_days * days, usage=settings.usage_retention_days * days)


def prompt_settings(settings: Settings) -> PromptSettings:
    return PromptSettings(system_prompt=settings.system_prompt, time_zone=settings.time_zone)


def llm_backend(settings: Settings) -> LLMBackend:
    """The configured backend, wrapped with the fallback when ``llm_fallback_url`` is set. Not yet opened."""
    timeouts = Timeouts(
        connect=settings.llm_connect_timeout,
        first_token=settings.llm_first_token_timeout,
        total=settings.llm_timeout,
    )

    def backend(api: str, url: str, model: str, key: SecretStr | None, name: str | None = None) -> LLMBackend:
        secret = key.get_secret_value() if key else None
        return make_backend(
            api, url, model, api_key=secret, timeouts=timeouts, keep_alive=settings.llm_keep_alive, name=name,
            context_tokens=settings.llm_context_tokens,
        )

    primary = backend(settings.llm_api, settings.llm_url, settings.llm_model, settings.llm_api_key)
    # Settings fills the fallback's API and model in from the primary's whenever its URL is set.
    api, url, model = settings.llm_fallback_api, settings.llm_fallback_url, settings.llm_fallback_model
    if not (api and url and model):
        return primary
    fallback = backend(api, url, model, settings.llm_fallback_api_key, name=f"{api}-fallback")
    return FallbackBackend(primary, fallback)


def ha_client(settings: Settings) -> HAClient | None:
    if settings.ha_url is None or settings.ha_token is None:
        return None
    return HAClient(
        settings.ha_url, settings.ha_token.get_secret_value(), registry_refresh=settings.ha_registry_refresh
    )


def _area_of(ha: HAClient | None) -> Callable[[Turn], str | None] | None:
    """The name of the room a turn came from, from HA's registry (its device, else its satellite entity)."""
    if ha is None:
        return None

    def area_of(turn: Turn) -> str | None:
        area = ha.home.area_of(turn.area_id, None, turn.device_id, turn.satellite_id)
        return area.name if area is not None else None

    return area_of


def toolbox(settings: Settings, ha: HAClient | None) -> MCPToolbox | None:
    """HA's own MCP server (when HA is configured and ATHENA_MCP_HA is on) and ATHENA_MCP_SERVERS; None when
    there is neither. Not yet opened."""
    servers: list[ToolServer] = []
    if ha is not None and settings.mcp_ha and settings.ha_url and settings.ha_token:
        servers.append(
            HomeAssistantTools(
                settings.ha_url,
                settings.ha_token.get_secret_value(),
                policy=ToolPolicy.of(settings.mcp_ha_allow, settings.mcp_ha_deny, default=HA_POLICY),
                refresh=settings.mcp_refresh,
                scripts=_exposed_scripts(ha),
            )
        )
    for spec in settings.mcp_servers:
        servers.append(
            ToolServer(
                spec.name,
                spec.url,
                spec.transport,
                headers=spec.request_headers(),
                policy=ToolPolicy(tuple(spec.allow), tuple(spec.deny)),
                timeout=spec.timeout,
                refresh=settings.mcp_refresh,
            )
        )
    if not servers:
        return None
    return MCPToolbox(servers, timeout=settings.tool_timeout, result_chars=settings.tool_result_chars)


def _exposed_scripts(ha: HAClient) -> Callable[[], frozenset[str]]:
    """The object ids of the scripts exposed to Assist (HA before 2026.7 names their tools by them)."""
    cache: dict[int, frozenset[str]] = {}

    def scripts() -> frozenset[str]:
        home = ha.home
        if home.version not in cache:
            cache.clear()
            cache[home.version] = frozenset(
                e.entity_id.split(".", 1)[1] for e in home.entities.values() if e.domain == "script"
            )
        return cache[home.version]

    return scripts


def _follow_home(ha: HAClient, box: MCPToolbox) -> None:
    """HA lists other tools when exposure or its integrations change (and after it restarts): list again.
    Registered before HA's WebSocket starts (its subscriptions are made on every connect)."""

    def changed(_event: dict[str, Any]) -> None:
        box.refresh_soon(HOME_ASSISTANT)

    async def reconnected() -> None:
        box.refresh_soon(HOME_ASSISTANT)

    for event_type in ("entity_registry_updated", "component_loaded"):  # both allowed for non-admin users
        ha.ws.on_event(event_type, changed)
    ha.ws.on_connect(reconnected)


# -- the running gateway -------------------------------------------------------------------------------
class Gateway:
    """One per process. `start()` opens the store, the LLM backend, Home Assistant and the local path (in
    that order; `close()` closes them in reverse); `engine` is ready once `start()` returned."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.store_kind = store_kind(settings.store_url)
        self.instance_id = instance_id(settings)
        self._engine: Engine | None = None
        self.local: LocalPath | None = None
        self.toolbox: MCPToolbox | None = None  # the LLM's tools (MCP servers), when any are configured
        self._stack = contextlib.AsyncExitStack()
        self.probe: Probe | None = None  # readiness, set by start()
        self.llm_parts: dict[str, LLMBackend] = {}  # "llm" (the primary) and "llm_fallback", probed apart

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("the gateway is not started")
        return self._engine

    @property
    def started(self) -> bool:
        return self._engine is not None

    async def start(self) -> None:
        settings, stack = self.settings, self._stack
        try:
            store = create_store(settings.store_url, retention(settings))
            sessions = SessionManager(store, session_policy(settings), self.clock)
            await sessions.start()
            stack.push_async_callback(sessions.stop)
            llm = llm_backend(settings)
            await llm.open()
            stack.push_async_callback(llm.close)
            ha = ha_client(settings)
            box = self.toolbox = toolbox(settings, ha)
            if box is not None:
                stack.push_async_callback(box.close)
                if ha is not None:
                    _follow_home(ha, box)
            if ha is not None:
                stack.push_async_callback(ha.close)
                # Parse the intent templates while HA connects: the first recognition would cost ~300 ms.
                catalog, _ = await asyncio.gather(LocalPath.warm_catalog(), ha.open())
                # The tool servers connect while the local path starts (HA's scripts need its registry).
                local, _ = await asyncio.gather(LocalPath.start(ha, catalog), _open(box))
                self.local = local
            else:
                local = self.local = LocalPath.off("ATHENA_HA_URL and ATHENA_HA_TOKEN are not set")
                await _open(box)
        except (StoreError, LLMError, OSError, ValueError) as exc:
            await stack.aclose()
            raise GatewayStartError(str(exc) or type(exc).__name__) from exc
        except BaseException:
            await stack.aclose()
            raise
        self._engine = Engine(
            sessions, llm, handlers=local.handlers, prompt=prompt_settings(settings),
            max_tokens=settings.llm_max_tokens or None, tool_rounds=settings.tool_rounds,
            answer_deadline=settings.answer_deadline, area_of=_area_of(ha), toolbox=self.toolbox,
        )
        self.llm_parts = llm_parts(llm)
        self.probe = Probe({"store": sessions.ping, **{name: b.ping for name, b in self.llm_parts.items()}})
        log.info(
            "athena.started",
            version=__version__,
            store=self.store_kind,
            llm=f"{llm.name} {llm.model}",
            local_path=local.status(),
            tools=self.tools_summary(),
        )

    def tools_summary(self) -> dict[str, Any] | str:
        """{server: state} for the start-up line; "off" without tool servers."""
        if self.toolbox is None:
            return "off"
        return {name: s["state"] for name, s in self.toolbox.status()["servers"].items()}

    async def close(self) -> None:
        self._engine = None
        await self._stack.aclose()

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- what the operator endpoints report -----------------------------------------------------------
    def info(self) -> dict[str, Any]:
        llm = self.engine.llm
        return {
            "service": "athena",
            "version": __version__,
            "instance_id": self.instance_id,
            "local_intents": self.local is not None and self.local.client is not None,
            "store": self.store_kind,
            "llm": {"api": llm.name, "model": llm.model},
        }

    async def readiness(self) -> Readiness:
        """The store and each LLM backend, probed apart and at once, at most every PROBE_TTL seconds."""
        if self.probe is None:
            raise RuntimeError("the gateway is not started")
        return Readiness(await self.probe.check())


def llm_parts(llm: LLMBackend) -> dict[str, LLMBackend]:
    """The backends a turn may use, by the name readiness reports them under."""
    if isinstance(llm, FallbackBackend):
        return {"llm": llm.primary, "llm_fallback": llm.fallback}
    return {"llm": llm}


@dataclass(frozen=True, slots=True)
class Readiness:
    """Each check's result: {"ok": True, "ms"} (with "degraded" when it answers only in part) or
    {"ok": False, "error", "problem"}.

    Ready while the store answers and any LLM backend can answer (a fallback that answers every turn keeps
    the gateway ready); the checks that failed meanwhile are `degraded`.
    """

    checks: Mapping[str, dict[str, Any]]

    @property
    def ready(self) -> bool:
        llms = [r for name, r in self.checks.items() if name.startswith("llm")]
        return self.checks["store"]["ok"] and any(r["ok"] for r in llms)

    @property
    def failed(self) -> dict[str, str]:
        """What failed, and what answers only in part (a Redis Cluster with a node down)."""
        return {
            name: r.get("error") or r["degraded"]
            for name, r in self.checks.items()
            if not r["ok"] or r.get("degraded")
        }

    def reason(self) -> str:
        return "; ".join(f"{name}: {error}" for name, error in self.failed.items())


async def _open(box: MCPToolbox | None) -> None:
    if box is not None:
        await box.open()


class Probe:
    """Cached readiness of the store and the LLM backends; concurrent callers share one probe."""

    def __init__(self, pings: Mapping[str, Callable[[], Awaitable[None]]], ttl: float = PROBE_TTL) -> None:
        self._pings = dict(pings)
        self.ttl = ttl
        self._at = -ttl
        self._result: dict[str, dict[str, Any]] = {}
        self._lock = asyncio.Lock()

    async def check(self) -> dict[str, dict[str, Any]]:
        async with self._lock:
            if time.monotonic() - self._at >= self.ttl:
                names = list(self._pings)
                results = await asyncio.gather(*(_one(self._pings[n]) for n in names))
                self._result = dict(zip(names, results, strict=True))
                self._at = time.monotonic()
            return self._result


async def _one(ping: Callable[[], Awaitable[None]]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            await ping()
    except TimeoutError:
        return {"ok": False, "error": f"no answer within {PROBE_TIMEOUT:g}s", "problem": "timeout"}
    except StoreDegraded as exc:  # serves some devices: ready, and says which part is missing
        return {"ok": True, "degraded": str(exc), "ms": round((time.perf_counter() - started) * 1000, 1)}
    except Exception as exc:  # any failure means "not ready"; the reason goes to the caller
        return {"ok": False, "error": str(exc) or type(exc).__name__, "problem": problem(exc)}
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}


def problem(exc: BaseException) -> str:
    """What an operator must look at, as a stable word: model_missing, wrong_endpoint, auth, timeout,
    unavailable (unreachable or failing)."""
    if isinstance(exc, LLMModelMissing):
        return "model_missing"
    if isinstance(exc, LLMWrongEndpoint):
        return "wrong_endpoint"
    if isinstance(exc, LLMHTTPError) and exc.status in (401, 403):
        return "auth"
    if isinstance(exc, LLMTimeout):
        return "timeout"
    return "unavailable"
