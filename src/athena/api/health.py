"""Probes and metrics. `/health/live`: the process answers. `/health/ready`: the store and an LLM backend
answer too (the gateway probes at most every few seconds, each check with a short timeout and all at once, so
polling it costs nothing and a hung backend does not hide one that answers). `/health`: a summary for people.
`/metrics`: Prometheus text (behind the token like all but /health*)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from athena import __version__
from athena.api.responses import json_response
from athena.api.state import gateway


async def live(request: Request) -> Response:
    return json_response({"status": "ok"})


async def ready(request: Request) -> Response:
    """200 "ready"; 200 "degraded" naming what failed while a backend still answers; else 503 with why."""
    gw = gateway(request)
    if not gw.started:
        return json_response({"status": "starting", "reason": "start-up not finished"}, 503)
    result = await gw.readiness()
    if not result.ready:
        return json_response({"status": "unavailable", "reason": result.reason()}, 503)
    if result.failed:
        return json_response({"status": "degraded", "reason": result.reason()})
    return json_response({"status": "ready"})


async def summary(request: Request) -> Response:
    gw = gateway(request)
    if not gw.started or gw.local is None:
        return json_response({"status": "starting", "version": __version__}, 503)
    result = await gw.readiness()
    body: dict[str, Any] = {
        "status": "unavailable" if not result.ready else "degraded" if result.failed else "ok",
        "version": __version__,
        "store": {"kind": gw.store_kind, **result.checks["store"]},
    }
    for name, backend in gw.llm_parts.items():  # "llm" is the primary's own result, "llm_fallback" apart
        body[name] = {"api": backend.name, "model": backend.model, **result.checks[name]}
    body["local_path"] = gw.local.status()
    body["tools"] = gw.toolbox.status() if gw.toolbox is not None else {"enabled": False}
    return json_response(body, 200 if result.ready else 503)


async def metrics(request: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


routes = [
    Route("/health/live", live, methods=["GET"]),
    Route("/health/ready", ready, methods=["GET"]),
    Route("/health", summary, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
