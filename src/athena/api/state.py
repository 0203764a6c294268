"""What the routers share, set up once by the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import Request

from athena.api.auth import ApiToken
from athena.api.errors import ApiError
from athena.config import Settings
from athena.engine.conversation import Engine
from athena.intents import LocalPath
from athena.stores import store_kind

if TYPE_CHECKING:
    from athena.api.health import Probe


@dataclass
class Runtime:
    """What the routers need; the lifespan fills in `engine`, `local` and `probe` (None before that)."""

    settings: Settings
    token: ApiToken
    engine: Engine | None = None
    local: LocalPath | None = None
    probe: Probe | None = None
    start_error: str | None = None
    store: str = field(init=False)  # "sqlite" | "redis" | "memory", for /athena/info and /health

    def __post_init__(self) -> None:
        self.store = store_kind(self.settings.store_url)


def runtime(request: Request) -> Runtime:
    return request.app.state.athena


def engine(request: Request) -> Engine:
    eng = runtime(request).engine
    if eng is None:  # only between bind and the end of start-up
        raise ApiError(503, "the gateway is still starting", "starting")
    return eng
