"""What a route reaches: the gateway the app's lifespan started, and its engine."""

from __future__ import annotations

from starlette.requests import Request

from athena.api.errors import ApiError
from athena.engine import Engine
from athena.gateway import Gateway


def gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


def engine(request: Request) -> Engine:
    gw = gateway(request)
    if not gw.started:  # only between bind and the end of start-up
        raise ApiError(503, "the gateway is still starting", "starting")
    return gw.engine
