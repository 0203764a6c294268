"""Probes and metrics. `/health/live`: the process answers. `/health/ready`: the store and the LLM answer too
(probed at most every few seconds, each with a short timeout, so a load balancer polling it costs nothing).
`/health`: a summary for people. `/metrics`: Prometheus text (behind the token like all but /health*)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from athena import __version__
from athena.api.responses import json_response
from athena.api.state import runtime
from athena.llm.base import LLMBackend
from athena.sessions.manager import SessionManager

PROBE_TTL = 3.0
PROBE_TIMEOUT = 2.0


class Probe:
    """Cached readiness of the store and the LLM; concurrent callers share one probe."""

    def __init__(self, manager: SessionManager, llm: LLMBackend, ttl: float = PROBE_TTL) -> None:
        self.manager = manager
        self.llm = llm
        self.ttl = ttl
        self._at = -ttl
        self._result: dict[str, dict[str, Any]] = {}
        self._lock = asyncio.Lock()

    async def check(self) -> dict[str, dict[str, Any]]:
        async with self._lock:
            if time.monotonic() - self._at >= self.ttl:
                store, llm = await asyncio.gather(self._one(self.manager.ping), self._one(self.llm.ping))
                self._result = {"store": store, "llm": llm}
                self._at = time.monotonic()
            return self._result

    @staticmethod
    async def _one(ping: Callable[[], Awaitable[None]]) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                await ping()
        except TimeoutError:
            return {"ok": False, "error": f"no answer within {PROBE_TIMEOUT:g}s"}
        except Exception as exc:  # any failure means "not ready"; the reason goes to the caller
            return {"ok": False, "error": str(exc) or type(exc).__name__}
        return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}


async def live(request: Request) -> Response:
    return json_response({"status": "ok"})


async def ready(request: Request) -> Response:
    probe = runtime(request).probe
    if probe is None:
        return json_response({"status": "starting", "reason": "start-up not finished"}, 503)
    result = await probe.check()
    failed = [f"{name}: {r['error']}" for name, r in result.items() if not r["ok"]]
    if failed:
        return json_response({"status": "unavailable", "reason": "; ".join(failed)}, 503)
    return json_response({"status": "ready"})


async def summary(request: Request) -> Response:
    rt = runtime(request)
    if rt.probe is None or rt.local is None:
        return json_response({"status": "starting", "version": __version__}, 503)
    result = await rt.probe.check()
    ok = all(r["ok"] for r in result.values())
    llm = rt.probe.llm
    return json_response(
        {
            "status": "ok" if ok else "degraded",
            "version": __version__,
            "store": {"kind": rt.store, **result["store"]},
            "llm": {"api": llm.name, "model": llm.model, **result["llm"]},
            "local_path": rt.local.status(),
        },
        200 if ok else 503,
    )


async def metrics(request: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


routes = [
    Route("/health/live", live, methods=["GET"]),
    Route("/health/ready", ready, methods=["GET"]),
    Route("/health", summary, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
