"""The FastAPI app factory: one SessionManager, one LLM backend and the local path per process, opened and
closed by the lifespan; routers only translate wire formats to engine calls."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable

import structlog
from fastapi import FastAPI

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


def create_app(settings: Settings, *, clock: Callable[[], float] = time.time) -> FastAPI:
    """`clock` drives session expiry (tests pass a controllable one)."""
    rt = Runtime(settings=settings, token=load_token(settings), clock=clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            try:
                await _start(rt, stack)
            except (StoreError, LLMError, OSError) as exc:
                rt.start_error = str(exc) or type(exc).__name__  # said in one line by the middleware
                raise
            yield
            log.info("athena.stopping")

    app = FastAPI(
        title="Athena",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.athena = rt
    errors.install(app)
    for module in (ha, openai, health, admin):
        app.router.routes.extend(module.routes)
    app.add_middleware(
        GatewayMiddleware,
        token=rt.token,
        max_body=settings.max_body_bytes,
        endpoints=lambda: {getattr(r, "path", "") for r in app.routes},
        start_error=lambda: rt.start_error,
    )
    return app


async def _start(rt: Runtime, stack: contextlib.AsyncExitStack) -> None:
    """Open the store, the LLM backend and the local path; the stack closes them in reverse."""
    settings, clock = rt.settings, rt.clock
    manager = SessionManager(create_store(settings.store_url), settings, clock)
    await manager.start()
    stack.push_async_callback(manager.stop)
    llm = create_backend(settings)
    await llm.open()
    stack.push_async_callback(llm.close)
    local = await LocalPath.start(settings, sessions=manager)
    stack.push_async_callback(local.close)
    rt.manager, rt.llm, rt.local = manager, llm, local
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
