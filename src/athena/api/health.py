"""Probes and metrics. `/health/live`: the process answers. `/health/ready`: the store and the LLM answer too
(the gateway probes at most every few seconds, each with a short timeout, so polling it costs nothing).
`/health`: a summary for people. `/metrics`: Prometheus text (behind the token like all but /health*)."""

from __future__ import annotations

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
    gw = gateway(request)
    if not gw.started:
        return json_response({"status": "starting", "reason": "start-up not finished"}, 503)
    result = await gw.readiness()
    failed = [f"{name}: {r['error']}" for name, r in result.items() if not r["ok"]]
    if failed:
        return json_response({"status": "unavailable", "reason": "; ".join(failed)}, 503)
    return json_response({"status": "ready"})


async def summary(request: Request) -> Response:
    gw = gateway(request)
    if not gw.started or gw.local is None:
        return json_response({"status": "starting", "version": __version__}, 503)
    result = await gw.readiness()
    ok = all(r["ok"] for r in result.values())
    llm = gw.engine.llm
    return json_response(
        {
            "status": "ok" if ok else "degraded",
            "version": __version__,
            "store": {"kind": gw.store_kind, **result["store"]},
            "llm": {"api": llm.name, "model": llm.model, **result["llm"]},
            "local_path": gw.local.status(),
            "tools": gw.toolbox.status() if gw.toolbox is not None else {"enabled": False},
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
