"""The app factory: one SessionManager, one LLM backend and the local path per process, opened and closed by
the lifespan; routers only translate wire formats to engine calls.

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

from athena import __version__
from athena.api import admin, errors, ha, health, openai
from athena.api.auth import load_token
from athena.api.middleware import GatewayMiddleware
from athena.api.state import Runtime
from athena.config import Settings
from athena.engine.conversation import Engine
from athena.intents import LocalPath
from athena.llm import create_backend
from athena.llm.base import LLMError
from athena.sessions.manager import SessionManager
from athena.stores import create_store
from athena.stores.base import StoreError

log = structlog.get_logger("athena.api")


def create_app(settings: Settings, *, clock: Callable[[], float] = time.time) -> Starlette:
    """`clock` drives session expiry (tests pass a controllable one)."""
    rt = Runtime(settings=settings, token=load_token(settings))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            try:
                await _start(rt, stack, clock)
            except (StoreError, LLMError, OSError) as exc:
                rt.start_error = str(exc) or type(exc).__name__  # said in one line by the middleware
                raise
            yield
            log.info("athena.stopping")

    routes = [*ha.routes, *openai.routes, *health.routes, *admin.routes]
    gateway = Middleware(
        GatewayMiddleware,
        token=rt.token,
        max_body=settings.max_body_bytes,
        endpoints={r.path for r in routes},
        start_error=lambda: rt.start_error,
    )
    app = Starlette(
        routes=routes, middleware=[gateway], exception_handlers=errors.HANDLERS, lifespan=lifespan
    )
    app.state.athena = rt
    return app


async def _start(rt: Runtime, stack: contextlib.AsyncExitStack, clock: Callable[[], float]) -> None:
    """Open the store, the LLM backend and the local path; the stack closes them in reverse."""
    settings = rt.settings
    manager = SessionManager(create_store(settings.store_url), settings, clock)
    await manager.start()
    stack.push_async_callback(manager.stop)
    llm = create_backend(settings)
    await llm.open()
    stack.push_async_callback(llm.close)
    local = await LocalPath.start(settings, sessions=manager)
    stack.push_async_callback(local.close)
    rt.local = local
    rt.engine = Engine(manager, llm, settings, local.handlers)
    rt.probe = health.Probe(manager, llm)
    log.info(
        "athena.started",
        version=__version__,
        store=rt.store,
        llm=f"{llm.name} {llm.model}",
        local_path=local.status(),
        token=rt.token.source,
    )
