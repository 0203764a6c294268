"""`GET /openapi.json`: an OpenAPI 3.1 document of Athena's own endpoints, generated, never hand-written.

Request bodies are the very pydantic models the routes validate with (`ConversationIn`, `ChatIn`); responses
are the models below, which describe the dicts the routes build (the test suite checks every answer against
them, and that every route is here). pydantic's JSON Schema is draft 2020-12, which OpenAPI 3.1 uses as is.

Behind the token like every endpoint but /health*: the document is no secret (the code is open), but the
rule "only /health* is open" stays one rule without exceptions, and every OpenAPI tool sends a Bearer token.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from athena import __version__
from athena.api.errors import FAILURES
from athena.api.ha import ConversationIn
from athena.api.openai import DEVICE_HEADER, SESSION_HEADER, ChatIn
from athena.api.responses import json_response
from athena.records import DEVICE_ID_MAX

DEVICE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$"
# One server-sent event: `data` is a `chat.completion.chunk` (or an error object) as JSON, or "[DONE]".
SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "properties": {"data": {"type": "string"}, "event": {"type": "string"}, "id": {"type": "string"}},
    "required": ["data"],
}


# -- what the routes answer ------------------------------------------------------------------------------
class ErrorDetail(BaseModel):
    code: str
    message: str
    type: str


class ErrorBody(BaseModel):
    """Every error, OpenAI's shape."""

    error: ErrorDetail


class Plain(BaseModel):
    speech: str
    extra_data: None = None


class Speech(BaseModel):
    plain: Plain


class Target(BaseModel):
    name: str
    type: str
    id: str


class ResultData(BaseModel):
    """`code` on an error; `success` / `failed` (and the legacy `targets`) otherwise."""

    code: str | None = None
    targets: list[Target] | None = None
    success: list[Target] | None = None
    failed: list[Target] | None = None


class IntentResponse(BaseModel):
    speech: Speech
    card: dict[str, Any]
    language: str
    response_type: Literal["action_done", "query_answer", "error"]
    data: ResultData


class ConversationResult(BaseModel):
    """Home Assistant's ConversationResult: a voice user always hears `response.speech.plain.speech`."""

    response: IntentResponse
    conversation_id: str | None
    continue_conversation: bool


class ChatCompletion(BaseModel):
    """OpenAI's `chat.completion` (a relay passes the upstream's own, so more fields may come)."""

    model_config = ConfigDict(extra="allow")
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[dict[str, Any]]
    usage: dict[str, Any] | None = None


class ModelEntry(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelEntry]


class LLMInfo(BaseModel):
    api: str
    model: str


class Info(BaseModel):
    service: Literal["athena"]
    version: str
    local_intents: bool
    store: str
    llm: LLMInfo


class SessionView(BaseModel):
    id: str
    device: str
    created_at: float
    last_activity: float
    turns: int
    expires_at: float
    expires_in: float
    expires_reason: str
    timeout: float
    max_age: float


class SessionList(BaseModel):
    sessions: list[SessionView]


class StoredMessage(BaseModel):
    role: str
    content: str
    ts: float
    meta: dict[str, Any]


class SessionDetail(SessionView):
    messages: list[StoredMessage]


class Cleared(BaseModel):
    cleared: Literal[True]
    device: str


class Live(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    """ "ready"; "degraded" (still serving: `reason` says what failed); "unavailable" / "starting" (503)."""

    status: Literal["ready", "degraded", "unavailable", "starting"]
    reason: str | None = None


class Check(BaseModel):
    model_config = ConfigDict(extra="allow")
    ok: bool
    ms: float | None = None
    error: str | None = None
    problem: str | None = None
    degraded: str | None = None


class Summary(BaseModel):
    """`llm` is the primary's own check, `llm_fallback` the fallback's (when one is set)."""

    model_config = ConfigDict(extra="allow")
    status: Literal["ok", "degraded", "unavailable", "starting"]
    version: str
    store: Check | None = None
    llm: Check | None = None
    llm_fallback: Check | None = None
    local_path: dict[str, Any] | None = None


# -- the operations ------------------------------------------------------------------------------------
JSON = "application/json"
Responses = dict[int, tuple[str, type[BaseModel] | None]]  # status: (description, model; None = text)
_AUTH: Responses = {401: ("missing or wrong API token", ErrorBody)}
_BODY: Responses = {
    400: ("the body is not JSON, or (OpenAI) a field is invalid", ErrorBody),
    413: ("the body is over the endpoint's limit", ErrorBody),
    415: ("the body is not JSON", ErrorBody),
}
_STARTING: Responses = {503: ("the gateway is still starting, or the session store failed", ErrorBody)}
_FAILED: Responses = {
    status: (
        f"the turn failed: {', '.join(sorted(c for s, c in FAILURES.values() if s == status))}",
        ErrorBody,
    )
    for status in sorted({s for s, _ in FAILURES.values()} - {500})
}


def _device_param() -> dict[str, Any]:
    return {
        "name": "device",
        "in": "path",
        "required": True,
        "description": f"a device id: 1-{DEVICE_ID_MAX} characters of letters, digits and . _ : @ / -",
        "schema": {"type": "string", "minLength": 1, "maxLength": DEVICE_ID_MAX, "pattern": DEVICE_PATTERN},
    }


# path -> method -> operation. The test suite checks that this covers every route of the app.
OPERATIONS: dict[str, dict[str, dict[str, Any]]] = {
    "/ha/conversation": {
        "post": {
            "summary": "One turn from Home Assistant (its ConversationInput, plus the integration's fields)",
            "request": ConversationIn,
            "responses": {
                200: (
                    "the answer; a failed turn is a spoken error (`response_type: error`)",
                    ConversationResult,
                ),
                **_BODY,
                **_AUTH,
                422: ("a field is invalid (named in the message)", ErrorBody),
                **_STARTING,
            },
        }
    },
    "/v1/chat/completions": {
        "post": {
            "summary": "OpenAI chat completions: a stateless relay, or with X-Athena-Device a kept session",
            "request": ChatIn,
            "parameters": [
                {
                    "name": DEVICE_HEADER,
                    "in": "header",
                    "required": False,
                    "description": "keep this device's session (its history) in Athena",
                    "schema": {"type": "string", "maxLength": DEVICE_ID_MAX, "pattern": DEVICE_PATTERN},
                }
            ],
            "stream": True,
            "responses": {
                200: ("the answer, JSON or (stream: true) server-sent events", ChatCompletion),
                **_BODY,
                **_AUTH,
                404: ("the upstream does not serve the model the request names (its own error)", ErrorBody),
                422: ("device mode: no user message, or a bad device id", ErrorBody),
                **_FAILED,
                **_STARTING,
            },
        }
    },
    "/v1/models": {
        "get": {
            "summary": "The models the backend serves",
            "responses": {
                200: ("the model list", ModelList),
                **_AUTH,
                502: ("the backend did not list its models", ErrorBody),
                **_STARTING,
            },
        }
    },
    "/athena/info": {
        "get": {
            "summary": "What this gateway is (the integration's connection check)",
            "responses": {200: ("service, version, store, LLM", Info), **_AUTH, **_STARTING},
        }
    },
    "/athena/sessions": {
        "get": {
            "summary": "The live sessions, most recently active first",
            "responses": {200: ("the live sessions", SessionList), **_AUTH, **_STARTING},
        }
    },
    "/athena/sessions/{device}": {
        "get": {
            "summary": "One device's live session with every stored message",
            "parameters": [_device_param()],
            "responses": {
                200: ("the session", SessionDetail),
                **_AUTH,
                404: ("no live session for the device", ErrorBody),
                422: ("not a device id", ErrorBody),
                **_STARTING,
            },
        },
        "delete": {
            "summary": "End one device's session (start over from outside)",
            "parameters": [_device_param()],
            "responses": {
                200: ("ended", Cleared),
                **_AUTH,
                404: ("no live session for the device", ErrorBody),
                422: ("not a device id", ErrorBody),
                **_STARTING,
            },
        },
    },
    "/health/live": {
        "get": {"summary": "The process answers", "open": True, "responses": {200: ("alive", Live)}},
    },
    "/health/ready": {
        "get": {
            "summary": "The store and an LLM backend answer (cached for a few seconds)",
            "open": True,
            "responses": {200: ("ready, or degraded but serving", Ready), 503: ("not ready, and why", Ready)},
        }
    },
    "/health": {
        "get": {
            "summary": "A summary for people: each check apart",
            "open": True,
            "responses": {200: ("serving", Summary), 503: ("not serving", Summary)},
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics",
            "text": "text/plain; version=0.0.4; charset=utf-8",
            "responses": {200: ("Prometheus text format", None), **_AUTH},
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This document",
            "responses": {200: ("OpenAPI 3.1", None), **_AUTH},
            "json_any": True,
        }
    },
}
_MODELS: list[type[BaseModel]] = [ConversationIn, ChatIn]


def _models() -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = list(_MODELS)
    for methods in OPERATIONS.values():
        for op in methods.values():
            for _, model in op["responses"].values():
                if model is not None and model not in found:
                    found.append(model)
    return found


def _operation_id(method: str, path: str) -> str:
    """`post_ha_conversation`, `get_athena_sessions_device`, ..."""
    return f"{method}_" + "_".join(p.strip("{}") for p in path.strip("/").split("/")).replace(".", "_")


@cache
def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document, built once from the models and OPERATIONS."""
    models = _models()
    refs, defs = models_json_schema(
        [(m, "validation") for m in models[: len(_MODELS)]]
        + [(m, "serialization") for m in models[len(_MODELS) :]],
        ref_template="#/components/schemas/{model}",
    )
    schemas = defs.get("$defs", {})

    def ref(model: type[BaseModel], mode: str) -> dict[str, Any]:
        return dict(refs[(model, mode)])  # type: ignore[index]

    paths: dict[str, Any] = {}
    for path, methods in OPERATIONS.items():
        item: dict[str, Any] = {}
        for method, op in methods.items():
            operation: dict[str, Any] = {
                "operationId": _operation_id(method, path),
                "summary": op["summary"],
                "responses": {},
            }
            if op.get("open"):
                operation["security"] = []
            if "parameters" in op:
                operation["parameters"] = op["parameters"]
            if "request" in op:
                operation["requestBody"] = {
                    "required": True,
                    "content": {JSON: {"schema": ref(op["request"], "validation")}},
                }
            for status, (description, model) in op["responses"].items():
                response: dict[str, Any] = {"description": description}
                if model is not None:
                    content = {JSON: {"schema": ref(model, "serialization")}}
                    if op.get("stream") and status == 200:
                        content["text/event-stream"] = {"schema": SSE_EVENT}
                    response["content"] = content
                elif "text" in op:
                    response["content"] = {op["text"]: {"schema": {"type": "string"}}}
                elif op.get("json_any"):
                    response["content"] = {JSON: {"schema": {"type": "object"}}}
                if op.get("request") is ChatIn and status == 200:
                    response["headers"] = {
                        SESSION_HEADER: {
                            "description": "device mode: the session the turn landed in",
                            "schema": {"type": "string"},
                        }
                    }
                operation["responses"][str(status)] = response
            item[method] = operation
        paths[path] = item
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Athena",
            "version": __version__,
            "description": "A conversation gateway for Home Assistant voice: device sessions, local intents, "
            "LLM backends. Every endpoint but /health* needs `Authorization: Bearer <token>`.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearerAuth": []}],
    }


async def openapi(request: Request) -> Response:
    return json_response(document())


routes = [Route("/openapi.json", openapi, methods=["GET"])]
