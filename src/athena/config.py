"""Settings, read once at start from ATHENA_* environment variables or a TOML file.

Nothing is wrong silently: a bad value, an unknown key in the file or in ATHENA_DEVICES, a missing or
malformed file all stop the start with one line naming the setting (`load_settings`); an ATHENA_* variable
that is no setting is a warning naming the nearest known one (`unknown_variables`).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

STORE_SCHEMES = ("sqlite", "redis", "rediss", "redis+cluster", "rediss+cluster", "memory")


def wyoming_address(value: str, default_host: str) -> tuple[str, int]:
    """ "10300" → (default_host, 10300); "tcp://host:10300" → (host, 10300)."""
    text = value.strip()
    host = default_host
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme != "tcp" or not parts.hostname or parts.path not in ("", "/"):
            raise ValueError(f"wyoming_port {value!r}: use a port (10300) or tcp://host:port")
        host, port = parts.hostname, parts.port
    else:
        port = int(text) if text.isdigit() else None
    if port is None or not 0 <= port <= 65535:
        raise ValueError(f"wyoming_port {value!r}: use a port (10300) or tcp://host:port")
    return host, port


def wyoming_networks(value: str) -> tuple[IPv4Network | IPv6Network, ...]:
    """ "192.168.1.0/24, 10.0.0.5" → the networks; a bad entry raises naming it."""
    networks = []
    for item in value.split(","):
        if item.strip():
            try:
                networks.append(ip_network(item.strip(), strict=False))
            except ValueError:
                raise ValueError(f"wyoming_allow: {item.strip()!r} is not an IP address or network") from None
    return tuple(networks)


class DevicePolicy(BaseModel):
    """Per-device overrides; unset fields fall back to the global values. A misspelt key is an error. A
    setting stored at run time (the console, `PUT /athena/devices/{device}`) wins over these."""

    model_config = ConfigDict(extra="forbid")

    timeout: PositiveFloat | None = None
    max_age: PositiveFloat | None = None
    # The operator's console (issue 11): the rest of a device's settings, as the console names them.
    history: int | None = Field(None, ge=0)
    system_prompt: str | None = None
    language: str | None = None
    status: Literal["allowed", "blocked"] | None = None


RESERVED_TOOL_SERVERS = ("home_assistant",)  # HA's own tools go by this name


def glob_list(value: Any) -> Any:
    """ "HassTurnOn, HassTurnOff" or '["HassTurnOn", "HassTurnOff"]' → a list of globs."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


Globs = Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], NoDecode]


class MCPServerSettings(BaseModel):
    """One tool server of ATHENA_MCP_SERVERS."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")  # its tools reach the model as <name>__<tool>
    url: str
    transport: Literal["streamable_http", "sse"] = "streamable_http"
    headers: dict[str, SecretStr] = Field(default_factory=dict)  # sent with every request
    token: SecretStr | None = None  # shorthand for headers {"Authorization": "Bearer <token>"}
    allow: list[str] = Field(default_factory=lambda: ["*"])  # globs over the server's own tool names
    deny: list[str] = Field(default_factory=list)  # wins over allow
    timeout: PositiveFloat | None = None  # per call; default ATHENA_TOOL_TIMEOUT

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        check_http_url(v)
        return v

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if v in RESERVED_TOOL_SERVERS:
            raise ValueError(f"the tool server name {v!r} is Home Assistant's own; choose another")
        return v

    @model_validator(mode="after")
    def _one_authorization(self) -> MCPServerSettings:
        if self.token is not None and any(k.lower() == "authorization" for k in self.headers):
            raise ValueError(f"tool server {self.name!r}: set token or an Authorization header, not both")
        return self

    def request_headers(self) -> dict[str, str]:
        out = {k: v.get_secret_value() for k, v in self.headers.items()}
        if self.token is not None:
            out["Authorization"] = f"Bearer {self.token.get_secret_value()}"
        return out


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ATHENA_", extra="ignore")

    # Where the SQLite file, a generated API token and the instance id live.
    data_dir: Path = Path("data")
    # What Home Assistant knows this gateway by (its config entry's unique id); replicas behind one URL share
    # one. Unset: generated once into <data_dir>/instance_id.
    instance_id: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")

    # Sessions.
    store_url: str = ""  # empty: sqlite:///<data_dir>/athena.db
    session_timeout: PositiveFloat = 300.0
    session_max_age: PositiveFloat = 86_400.0
    cleanup_interval: PositiveFloat = 60.0
    # Overrides keyed by device id or device name, e.g. {"kitchen": {"timeout": 600}}.
    devices: dict[str, DevicePolicy] = Field(default_factory=dict)
    history_max_messages: int = Field(200, ge=2)  # stored per session; oldest dropped beyond this
    history_context_messages: int = Field(20, ge=0)  # sent to the LLM
    history_token_budget: int = Field(3000, ge=0)  # rough tokens (chars/4) of history sent to the LLM

    # HTTP API.
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_token: SecretStr | None = None
    max_body_bytes: int = Field(65_536, ge=1024)
    # POST /v1/chat/completions: HA's llama_cpp/litellm send the whole chat log, the exposed-entity overview
    # and every tool schema each turn (measured with HA 2026.11's own code: 43 KB for 50 entities and 20
    # turns, 66 KB for 100, 171 KB for 200 entities and 40 turns; bench/ha_request_body.py).
    max_body_bytes_openai: int = Field(1_048_576, ge=1024)
    max_text_chars: int = Field(2_000, ge=1)

    # LLM backend.
    llm_api: Literal["openai", "ollama"] = "openai"
    llm_url: str = "http://127.0.0.1:11434/v1"
    llm_model: str = "llama3.2"
    llm_api_key: SecretStr | None = None
    llm_timeout: PositiveFloat = 30.0  # a whole answer
    llm_connect_timeout: PositiveFloat = 5.0
    llm_first_token_timeout: PositiveFloat = 15.0
    llm_keep_alive: str | None = None  # Ollama's keep_alive, e.g. "30m"
    # The longest answer a turn may get unless its caller sets max_tokens (a spoken answer; 0: no cap).
    llm_max_tokens: int = Field(150, ge=0)
    # The model's context window; unset: llama.cpp's /props tells it, else the first overflow error does.
    llm_context_tokens: int | None = Field(None, ge=256)
    # Athena's own tools (MCP): model calls with tools per turn at most; no new tool round after the deadline.
    tool_rounds: int = Field(5, ge=1, le=20)
    answer_deadline: PositiveFloat = 30.0
    llm_fallback_api: Literal["openai", "ollama"] | None = None
    llm_fallback_url: str | None = None
    llm_fallback_model: str | None = None
    llm_fallback_api_key: SecretStr | None = None
    system_prompt: str | None = None  # replaces the built-in prompt
    time_zone: str | None = None  # IANA name for "now" in the prompt, e.g. "Europe/Berlin"; default: host's

    # Home Assistant (local intents); both unset: the local path is off.
    ha_url: str | None = None
    ha_token: SecretStr | None = None
    ha_registry_refresh: PositiveFloat = 300.0

    # Tools (issue 9): what the LLM may call, over MCP. Home Assistant's own MCP server (its "Model Context
    # Protocol Server" integration) whenever ATHENA_HA_URL/TOKEN are set, offering only assistant-level tools
    # by default (never HA's admin tools); more servers from ATHENA_MCP_SERVERS, a JSON list of
    # {"name", "url", "transport", "headers" | "token", "allow", "deny", "timeout"}.
    mcp_ha: bool = True  # false: no HA tools even with ATHENA_HA_URL set
    # Globs over HA's tool names replacing the built-in allow / deny lists (tools/policy.py); deny wins.
    mcp_ha_allow: Globs | None = None
    mcp_ha_deny: Globs | None = None
    mcp_servers: list[MCPServerSettings] = Field(default_factory=list)
    mcp_refresh: PositiveFloat = 300.0  # seconds between tool-list refreshes (HA's registry events: sooner)
    tool_timeout: PositiveFloat = 10.0  # one tool call, unless its server sets its own
    tool_result_chars: int = Field(6_000, ge=200, le=200_000)  # of a result the model reads; cut beyond

    # Wyoming (issue 13): a `handle` service HA's Wyoming integration adds as a conversation agent. Off unless
    # a port is set: "10300" listens on ATHENA_HOST, "tcp://0.0.0.0:10300" anywhere (the form Wyoming services
    # take). No token applies (HA's Wyoming client has none): bind it to the LAN, or restrict peers.
    wyoming_port: int | str | None = None
    wyoming_allow: str | None = None  # comma-separated IPs / networks that may connect, e.g. "192.168.1.0/24"
    wyoming_zeroconf: bool = True  # advertise _wyoming._tcp.local. so HA discovers Athena
    wyoming_zeroconf_name: str | None = None  # the advertised instance name; default athena-<hostname>
    wyoming_language: str = Field("en", min_length=2, max_length=35)  # turns whose transcript names none

    # The operator's console (issue 11): which devices are served; how long what outlives a session is kept.
    device_policy: Literal["open", "known"] = "open"  # known: a device not yet allowed is refused (pending)
    retention_days: float = Field(7.0, ge=0)  # ended sessions' transcripts; 0 keeps none
    usage_retention_days: float = Field(90.0, gt=0)  # usage rows (no text); unconfigured devices' records

    # Logs.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["console", "json"] = "console"

    @field_validator("store_url")
    @classmethod
    def _known_scheme(cls, v: str) -> str:
        if v and v.split(":", 1)[0] not in STORE_SCHEMES:
            raise ValueError(
                f"unknown store scheme in {v!r}; use sqlite:///path, redis://host:port/db, "
                "redis+cluster://host:port or memory://"
            )
        return v

    @field_validator("llm_url", "llm_fallback_url", "ha_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None:
            check_http_url(v)
        return v

    @field_validator("wyoming_port")
    @classmethod
    def _wyoming_uri(cls, v: int | str | None) -> str | None:
        if v is None or v == "":
            return None
        wyoming_address(str(v), "127.0.0.1")  # raises with the accepted forms
        return str(v)

    @field_validator("wyoming_allow")
    @classmethod
    def _wyoming_networks(cls, v: str | None) -> str | None:
        if v:
            wyoming_networks(v)
        return v or None

    @field_validator("mcp_ha_allow", "mcp_ha_deny", mode="before")
    @classmethod
    def _globs(cls, v: Any) -> Any:
        return glob_list(v)

    @field_validator("mcp_servers")
    @classmethod
    def _unique_servers(cls, v: list[MCPServerSettings]) -> list[MCPServerSettings]:
        names = [s.name for s in v]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"tool server names must be unique: {', '.join(dupes)} given twice")
        return v

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                ZoneInfo(v)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {v!r}; use an IANA name such as Europe/Berlin") from None
        return v

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        if not self.store_url:
            self.store_url = f"sqlite:///{self.data_dir / 'athena.db'}"
        if (self.ha_url is None) != (self.ha_token is None):
            raise ValueError("set both ATHENA_HA_URL and ATHENA_HA_TOKEN, or neither")
        if self.llm_fallback_url:  # the fallback speaks the primary's API and model unless told otherwise
            self.llm_fallback_api = self.llm_fallback_api or self.llm_api
            self.llm_fallback_model = self.llm_fallback_model or self.llm_model
        return self

    @property
    def local_intents(self) -> bool:
        return self.ha_url is not None

    @property
    def wyoming_address(self) -> tuple[str, int] | None:
        """(host, port) the Wyoming server listens on, or None when it is off."""
        return None if self.wyoming_port is None else wyoming_address(str(self.wyoming_port), self.host)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment wins over the file named by ATHENA_CONFIG_FILE (TOML, same names without the prefix).
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path := os.environ.get("ATHENA_CONFIG_FILE"):
            sources.append(InitSettingsSource(settings_cls, read_config_file(path)))
        return tuple(sources)


# -- loading, strictly -------------------------------------------------------------------------------------
CONFIG_FILE_VARIABLE = "ATHENA_CONFIG_FILE"
# ATHENA_* variables that are not settings: the config file's name, the CLI client's gateway URL, and those
# the tests, benchmarks and scripts read. Anything else with the prefix that is no setting is a warning.
NOT_SETTINGS = frozenset(
    {
        CONFIG_FILE_VARIABLE,
        "ATHENA_URL",
        "ATHENA_PYTHON",
        "ATHENA_HA_VENV",
        "ATHENA_HA_CHROOT",
        "ATHENA_LLAMA_VENV",
    }
)
NOT_SETTINGS_PREFIXES = ("ATHENA_TEST_", "ATHENA_BENCH_")


class BadSetting(ValueError):
    """A setting that stops the start; the message is one line naming it."""


def check_http_url(value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value):
        raise ValueError(f"{value!r} is not an http:// or https:// URL with a host")


def setting_names() -> list[str]:
    return list(Settings.model_fields)


def _nearest(name: str, known: list[str]) -> str:
    match = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean {match[0]}?)" if match else ""


def read_config_file(path: str) -> dict[str, Any]:
    """The TOML file's settings; BadSetting names the file (and the line and column of a syntax error)."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise BadSetting(f"{CONFIG_FILE_VARIABLE}: {path} does not exist") from None
    except IsADirectoryError:
        raise BadSetting(f"{CONFIG_FILE_VARIABLE}: {path} is a directory, not a TOML file") from None
    except OSError as exc:
        raise BadSetting(f"{CONFIG_FILE_VARIABLE}: cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise BadSetting(f"{path}: not valid TOML: {exc}") from None
    known = setting_names()
    for key in data:
        if key.lower() not in known:
            bare = key.lower().removeprefix("athena_")
            if bare in known:
                hint = f" (write {bare}, without the ATHENA_ prefix)"
            else:
                hint = _nearest(key.lower(), known)
            raise BadSetting(f"{path}: unknown setting {key!r}{hint}")
    return data


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning for each ATHENA_* variable that is no setting, naming the nearest known name."""
    settings = [f"ATHENA_{n.upper()}" for n in setting_names()]
    known = set(settings) | NOT_SETTINGS
    warnings = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith("ATHENA_") or upper in known or upper.startswith(NOT_SETTINGS_PREFIXES):
            continue
        warnings.append(f"{name} is not an Athena setting and is ignored{_nearest(upper, settings)}")
    return warnings


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment (default os.environ) and the config file; BadSetting if any is wrong."""
    environ = os.environ if environ is None else environ
    try:
        return Settings()
    except ValidationError as exc:
        raise BadSetting(describe_errors(exc, environ)) from None
    except SettingsError as exc:  # a complex value (ATHENA_DEVICES) that is not JSON
        raise BadSetting(_describe_source_error(exc)) from None


def _where(field: str, environ: Mapping[str, str]) -> str:
    """The variable a field's value came from: the environment wins over the file."""
    variable = f"ATHENA_{field.upper()}"
    if any(k.upper() == variable for k in environ):
        return variable
    path = environ.get(CONFIG_FILE_VARIABLE)
    if path:
        try:
            in_file = any(k.lower() == field for k in read_config_file(path))
        except BadSetting:
            in_file = False
        if in_file:
            return f"{field} in {path}"
    return variable


def describe_errors(exc: ValidationError, environ: Mapping[str, str]) -> str:
    """pydantic's first error as one line naming the setting (and how many more there are)."""
    errors = exc.errors()
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ())]
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden" and len(loc) >= 3 and loc[0] == "devices":
        allowed = list(DevicePolicy.model_fields)
        message = f"device {loc[1]!r} has no setting {loc[-1]!r}{_nearest(loc[-1], allowed)}"
        message += f"; known: {', '.join(allowed)}"
        loc = loc[:1]
    elif len(loc) > 1:
        message = f"{'.'.join(loc[1:])}: {message}"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{_where(loc[0], environ)}: {message}{more}" if loc else message + more


_SOURCE_ERROR = re.compile(r'field "(?P<field>[^"]+)" from source "(?P<source>[^"]+)"')


def _describe_source_error(exc: SettingsError) -> str:
    found = _SOURCE_ERROR.search(str(exc))
    name = f"ATHENA_{found['field'].upper()}" if found else "a setting"
    cause = exc.__cause__
    if isinstance(cause, json.JSONDecodeError):
        return f"{name}: not valid JSON at line {cause.lineno}, column {cause.colno}: {cause.msg}"
    return f"{name}: {cause or exc}"
