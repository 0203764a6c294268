"""Logging and metrics set-up shared by every concern. Metric names are part of the operator's contract."""

from __future__ import annotations

import logging
import sys
from typing import Any, get_args

import orjson
import structlog
from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

from athena.turns import Failure

# prometheus_client adds a `<name>_created` series (a start timestamp) to every counter and histogram:
# twice the series for nothing Prometheus uses (it detects resets itself), so off.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Sessions.
SESSIONS_ACTIVE = Gauge("athena_sessions_active", "Sessions alive at the last sweep or change")
SESSIONS_CREATED = Counter("athena_sessions_created_total", "Sessions started")
# reason: timeout | max_age | cleared
SESSIONS_ENDED = Counter("athena_sessions_ended_total", "Sessions ended", ["reason"])
SWEEP_SECONDS = Histogram("athena_sweep_duration_seconds", "Background sweep duration")

# HTTP and turns.
REQUESTS = Counter("athena_http_requests_total", "HTTP requests", ["endpoint", "status"])
REQUEST_SECONDS = Histogram(
    "athena_http_request_duration_seconds",
    "HTTP request duration",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
WYOMING_CONNECTIONS = Counter(
    "athena_wyoming_connections_total", "Wyoming connections, by how they ended", ["outcome"]
)  # closed|refused|busy|bad_input|timeout|peer_gone|error
REQUESTS_IN_FLIGHT = Gauge("athena_http_requests_in_flight", "HTTP requests being served (streams included)")
ANSWERS = Counter("athena_answers_total", "Turns answered, by path", ["path"])  # llm|local|reset|error
# Why answers failed (turns and relayed requests): llm_timeout | llm_error | llm_model_missing |
# llm_misconfigured | store | internal. Every reason is exported from the start, at 0.
FAILURES = Counter(
    "athena_turn_failures_total", "Turns and relayed requests that failed, by reason", ["reason"]
)
for _reason in get_args(Failure):
    FAILURES.labels(reason=_reason)
LLM_SECONDS = Histogram(
    "athena_llm_duration_seconds",
    "LLM answer time",
    ["backend"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60),
)
LLM_FIRST_TOKEN_SECONDS = Histogram(
    "athena_llm_first_token_seconds",
    "LLM time to first token",
    ["backend"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15),
)
# kind: timeout | unreachable | model_missing | wrong_endpoint | http | protocol (probes are not counted)
LLM_ERRORS = Counter(
    "athena_llm_errors_total", "Failed LLM answer requests, by backend and kind", ["backend", "kind"]
)
# backend: the primary whose failure (before any text) sent the request to the fallback.
LLM_FALLBACKS = Counter("athena_llm_fallbacks_total", "Requests the fallback backend took over", ["backend"])
LOCAL_SECONDS = Histogram(
    "athena_local_intent_duration_seconds",
    "Local intent turn time (recognition plus Home Assistant's execution)",
    buckets=(0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)

# Tools (MCP servers). tool: the name the model sees; server: "home_assistant" or an ATHENA_MCP_SERVERS name.
# outcome: ok | tool_error | invalid_arguments | timeout | server_down | unknown_tool
TOOL_CALLS = Counter("athena_tool_calls_total", "Tool calls, by tool and outcome", ["tool", "outcome"])
TOOL_SECONDS = Histogram(
    "athena_tool_call_seconds",
    "Tool call time (validation, the server's answer, bounding the result)",
    ["tool"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TOOL_SERVER_UP = Gauge("athena_tool_server_up", "1 while a tool server is connected and listed", ["server"])
TOOL_SERVER_DOWN = Counter(
    "athena_tool_server_down_total", "Times a tool server went down (HA: or is not set up)", ["server"]
)
TOOLS_OFFERED = Gauge("athena_tools_offered", "Tools offered to the model, by server", ["server"])


def configure_logging(level: str = "INFO", fmt: str = "console") -> None:
    """Athena's own lines are rendered by structlog and written straight to stderr (a line per turn through
    stdlib's handler chain cost a tenth of a turn's CPU); uvicorn's and libraries' stdlib records go through a
    handler that renders them the same way, so both share one format."""
    stamp: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if fmt == "json":
        own: list[structlog.types.Processor] = [
            structlog.processors.format_exc_info, structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ]
        factory: Any = structlog.BytesLoggerFactory(sys.stderr.buffer)
        foreign: structlog.types.Processor = structlog.processors.JSONRenderer(
            serializer=lambda obj, **_: orjson.dumps(obj).decode()
        )
    else:
        own = [structlog.dev.ConsoleRenderer(colors=False)]
        factory = structlog.WriteLoggerFactory(sys.stderr)
        foreign = own[0]
    structlog.configure(
        processors=[*stamp, *own],
        logger_factory=factory,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=stamp,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, foreign],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The MCP SDK's HTTP client logs every request at INFO, and the SDK a traceback for every connection a
    # tool server drops; Athena's own tools.* lines say what happened in one line each.
    quiet = logging.getLevelName(level) > logging.DEBUG
    logging.getLogger("httpx2").setLevel(logging.WARNING if quiet else logging.NOTSET)
    logging.getLogger("mcp").setLevel(logging.CRITICAL if quiet else logging.NOTSET)
