"""Settings, read once at start from ATHENA_* environment variables or a TOML file.

Invalid values fail at start with pydantic's message, naming the variable, rather than on the first turn.
"""

from __future__ import annotations

import os
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

STORE_SCHEMES = ("sqlite", "redis", "rediss", "memory")


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
    """Per-device overrides; unset fields fall back to the global values."""

    timeout: PositiveFloat | None = None
    max_age: PositiveFloat | None = None


RESERVED_TOOL_SERVERS = ("home_assistant",)  # HA's own tools go by this name


def glob_list(value: Any) -> Any:
    """ "HassTurnOn, HassTurnOff" or '["HassTurnOn", "HassTurnOff"]' → a list of globs."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return orjson.loads(text)
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
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{v!r} is not an http(s) URL, e.g. http://127.0.0.1:8000/mcp")
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

    # Logs.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["console", "json"] = "console"

    @field_validator("store_url")
    @classmethod
    def _known_scheme(cls, v: str) -> str:
        if v and v.split(":", 1)[0] not in STORE_SCHEMES:
            raise ValueError(f"unknown store scheme in {v!r}; use sqlite:///path, redis://host:port/db or memory://")
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
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)
