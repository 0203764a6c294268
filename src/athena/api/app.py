"""The HTTP app: the routes of each wire format over one Gateway, which the lifespan starts and closes.

Plain Starlette: the routes parse their own bodies (bodies.py), so FastAPI would add only per-request
middleware layers (telemetry, body limit, exit stack) to a hot path whose budget is about a millisecond.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable

import structlog
from starlette.applications import Starlette
from starlette.middleware import Middleware

from athena.api import admin, errors, ha, health, openai, openapi
from athena.api.auth import ApiToken, load_token
from athena.api.middleware import GatewayMiddleware
from athena.config import Settings
from athena.gateway import Gateway, GatewayStartError
from athena.wyoming import start_wyoming

log = structlog.get_logger("athena.api")


def create_app(
    settings: Settings, *, clock: Callable[[], float] = time.time, token: ApiToken | None = None
) -> Starlette:
    """`clock` drives session expiry (tests pass a controllable one)."""
    gateway = Gateway(settings, clock=clock)
    token = token or load_token(settings)
    start_error: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await gateway.start()
            wyoming = await start_wyoming(gateway)  # None unless ATHENA_WYOMING_PORT is set
        except GatewayStartError as exc:
            start_error.append(str(exc))  # said in one line by the middleware
            await gateway.close()
            raise
        log.info("athena.listening", token=token.source)
        try:
            yield
        finally:
            log.info("athena.stopping")
            if wyoming is not None:
                await wyoming.close()
            await gateway.close()

    routes = [*ha.routes, *openai.routes, *health.routes, *admin.routes, *openapi.routes]
    middleware = Middleware(
        GatewayMiddleware,
        token=token,
        max_body=settings.max_body_bytes,
        body_limits={"/v1/chat/completions": settings.max_body_bytes_openai},
        endpoints={r.path for r in routes},
        start_error=lambda: start_error[0] if start_error else None,
    )
    app = Starlette(
        routes=routes, middleware=[middleware], exception_handlers=errors.HANDLERS, lifespan=lifespan
    )
    app.state.gateway = gateway
    app.state.token = token
    return app
