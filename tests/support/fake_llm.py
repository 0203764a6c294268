"""A fake LLM server speaking both OpenAI's and Ollama's chat wire formats, over real HTTP on loopback.

Only aiohttp and the standard library, so it imports in the gateway venv and in Home Assistant's venv alike.

In-process::

    async with FakeLLM() as llm:            # or: llm = FakeLLM(); await llm.start(); ...; await llm.stop()
        llm.configure(reply="Which room?", chunk_delay=0.01)
        ...  # point the client at llm.url + "/v1" (OpenAI) or llm.url (Ollama)
        llm.requests[-1]["body"]["messages"]

Standalone (another process, e.g. a gateway under test or a benchmark)::

    python -m tests.support.fake_llm --port 8765   # port 0: a free one; prints "fake-llm listening on URL"
    curl -X POST :8765/_control -d '{"reply": "Hi?", "delay": 0.5}'    # same knobs as configure()
    curl :8765/_requests                                   # the recorded requests (JSON list)
    curl -X POST :8765/_reset                              # knobs back to defaults, requests cleared

Endpoints: ``POST /v1/chat/completions`` (``stream`` true or false), ``GET /v1/models``, ``POST /api/chat``
(NDJSON stream unless ``"stream": false``, as Ollama does), ``GET /api/tags``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from aiohttp import web

DEFAULT_MODELS = ("fake-model", "fake-model-large")
# Where a request's record is kept on it (a typed key where this aiohttp has them: HA 2025.4's has not).
_RECORD: Any = web.RequestKey("record", dict) if hasattr(web, "RequestKey") else "record"


@dataclass
class Knobs:
    """How the fake answers; every field is settable through ``configure()`` or ``POST /_control``."""

    reply: str | None = None  # fixed reply; None: "Reply to: <last line of the last user message>"
    # Consumed one per chat request, before ``reply``: a text, or a dict {"content": ..., "tool_calls":
    # [{"name": ..., "arguments": {...}}], "finish_reason": ...} for answers that call tools or are cut off.
    replies: list[str | dict[str, Any]] = field(default_factory=list)
    delay: float = 0.0  # seconds before the response starts (headers included)
    chunk_delay: float = 0.0  # seconds between streamed chunks
    chunk_words: int = 1  # words per streamed chunk
    status: int | None = None  # answer every non-control request with this HTTP status and a JSON error
    garbage: bool = False  # 200 with a body that is not the protocol (non-JSON; in streams, non-JSON lines)
    body: str | None = None  # answer chat requests with exactly this text (200, the format's content type)
    # Stream: cut the connection after this many chunks (OpenAI's first chunk carries only the role);
    # non-stream: cut it mid-body.
    drop_after: int | None = None
    models: list[str] = field(default_factory=lambda: list(DEFAULT_MODELS))
    record: bool = True  # keep received requests in ``requests``
    # Like llama.cpp's server with --ctx-size: served at /props; a prompt of more tokens (here: characters
    # of its messages / 4) is refused with llama.cpp's HTTP 400, and max_tokens cuts an answer ("length").
    context: int | None = None
    # A chat for a model not in ``models`` is a 404 in the format's own shape, as Ollama and vLLM answer.
    known_models_only: bool = False
    # "openai" or "ollama": the other format's paths are 404 {"detail": "Not Found"}, as a server that
    # speaks one API answers (llama.cpp has no /api/tags; Ollama's root has no /models).
    speaks: str | None = None


def _words(text: str, per_chunk: int) -> list[str]:
    words = re.findall(r"\S+\s*|\s+", text) or [""]
    per_chunk = max(1, per_chunk)
    return ["".join(words[i : i + per_chunk]) for i in range(0, len(words), per_chunk)]


def _prompt_chars(body: Any) -> int:
    messages = body.get("messages") if isinstance(body, dict) else None
    return len(json.dumps(messages)) if isinstance(messages, list) else 0


def _prompt_tokens(body: Any) -> int:
    """A stand-in for a tokenizer: words in the request's messages."""
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list):
        return 0
    return sum(len(str(m.get("content") or "").split()) for m in messages if isinstance(m, dict))


def said(message: dict[str, Any]) -> str:
    """A message as its author wrote it: a user message without the context note Athena puts first."""
    content = str(message.get("content") or "")
    if message.get("role") == "user" and content.startswith("[") and "\n" in content:
        return content.split("\n", 1)[1]
    return content


def _last_user_text(messages: Any) -> str:
    """The last line of the last user message (Athena puts a context note on the line before it)."""
    if isinstance(messages, list):
        for msg in reversed(messages):
            if isinstance(msg, dict) and msg.get("role") == "user":
                content = msg.get("content")
                if isinstance(content, list):  # OpenAI content parts
                    content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
                return str(content).rsplit("\n", 1)[-1]
    return ""


@dataclass
class Answer:
    text: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # {"id", "name", "arguments"}
    finish_reason: str = "stop"

    def openai_calls(self, indexed: bool = False) -> list[dict[str, Any]]:
        return [
            {
                **({"index": i} if indexed else {}),
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": json.dumps(c["arguments"] or {})},
            }
            for i, c in enumerate(self.tool_calls)
        ]


class FakeLLM:
    """A real aiohttp server; knobs change how it answers, ``requests`` shows what it received."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.knobs = Knobs()
        # Each entry: {"method", "path", "body" (parsed JSON or None), "headers" (lower-cased names)}.
        self.requests: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self._counter = 0
        self.abandoned = 0  # streamed answers whose client closed the connection before the end

    # -- lifecycle -------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> FakeLLM:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._openai_chat)
        app.router.add_get("/v1/models", self._openai_models)
        app.router.add_get("/props", self._props)
        app.router.add_post("/api/chat", self._ollama_chat)
        app.router.add_get("/api/tags", self._ollama_tags)
        app.router.add_post("/_control", self._control)
        app.router.add_get("/_requests", self._requests)
        app.router.add_post("/_reset", self._reset)
        # Slow answers (the delay knobs) must not hold up stop(): in-flight handlers get 0.1 s.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        server = site._server
        if self.port == 0 and server is not None:
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeLLM:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- knobs -----------------------------------------------------------------------------------------
    def configure(self, **knobs: Any) -> None:
        """Change knobs (see ``Knobs``); unknown names raise TypeError so a typo fails the test."""
        names = {f.name for f in fields(Knobs)}
        unknown = set(knobs) - names
        if unknown:
            raise TypeError(f"unknown fake LLM knob(s): {', '.join(sorted(unknown))}")
        for name, value in knobs.items():
            setattr(self.knobs, name, list(value) if name in ("replies", "models") else value)

    def reset(self) -> None:
        self.knobs = Knobs()
        self.requests.clear()

    # -- helpers ---------------------------------------------------------------------------------------
    async def _receive(self, request: web.Request) -> Any:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if self.knobs.record:
            record = {
                "method": request.method,
                "path": request.path,
                "body": body,
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "received_at": time.time(),
                "sent_at": [],  # streams: when each line went out (wall clock, to compare across processes)
            }
            self.requests.append(record)
            request[_RECORD] = record
        if self.knobs.delay > 0:
            await asyncio.sleep(self.knobs.delay)
        return body

    def _error(self, api: str | None = None, body: Any = None) -> web.Response | None:
        k = self.knobs
        if api is not None and k.speaks is not None and k.speaks != api:
            return web.json_response({"detail": "Not Found"}, status=404)
        model = body.get("model") if isinstance(body, dict) else None
        if k.known_models_only and api is not None and body is not None and model not in k.models:
            if api == "ollama":
                return web.json_response({"error": f"model '{model}' not found"}, status=404)
            error = {"message": f'model "{model}" not found, try pulling it first', "type": "api_error"}
            return web.json_response({"error": error}, status=404)
        if k.context is not None and (asked := _prompt_chars(body) // 4) > k.context:
            error = {
                "code": 400,
                "type": "exceed_context_size_error",
                "n_prompt_tokens": asked,
                "n_ctx": k.context,
                "message": "the request exceeds the available context size, try increasing it",
            }
            return web.json_response({"error": error}, status=400)
        if k.status is not None:
            body = {"error": {"message": f"fake LLM failure {k.status}", "type": "server_error"}}
            return web.json_response(body, status=k.status)
        return None

    def _answer(self, body: Any) -> Answer:
        answer = self._scripted(body)
        cap = body.get("max_tokens") if isinstance(body, dict) else None
        cap = cap or ((body.get("options") or {}).get("num_predict") if isinstance(body, dict) else None)
        if self.knobs.context is not None and isinstance(cap, int) and len(answer.text.split()) > cap:
            return Answer(" ".join(answer.text.split()[:cap]), answer.tool_calls, "length")
        return answer

    def _scripted(self, body: Any) -> Answer:
        if self.knobs.replies:
            scripted = self.knobs.replies.pop(0)
            if isinstance(scripted, dict):
                calls = [
                    {"id": f"call_{i}_{self._counter}", "name": c["name"], "arguments": c.get("arguments")}
                    for i, c in enumerate(scripted.get("tool_calls") or [])
                ]
                finish = scripted.get("finish_reason") or ("tool_calls" if calls else "stop")
                return Answer(str(scripted.get("content") or ""), calls, finish)
            return Answer(scripted)
        if self.knobs.reply is not None:
            return Answer(self.knobs.reply)
        messages = body.get("messages") if isinstance(body, dict) else None
        return Answer(f"Reply to: {_last_user_text(messages)}")

    def _next_id(self) -> str:
        self._counter += 1
        return f"chatcmpl-fake-{self._counter}"

    async def _drop_body(self, request: web.Request, payload: bytes, content_type: str) -> web.StreamResponse:
        """Announce the whole body, send half of it, then cut the connection."""
        resp = web.StreamResponse(headers={"Content-Type": content_type, "Content-Length": str(len(payload))})
        await resp.prepare(request)
        await resp.write(payload[: len(payload) // 2])
        self._cut(request)
        return resp

    @staticmethod
    def _cut(request: web.Request) -> None:
        transport = request.transport
        if transport is not None:
            transport.close()

    async def _stream(
        self, request: web.Request, content_type: str, lines: Iterator[bytes], trailer: bytes = b""
    ) -> web.StreamResponse:
        k = self.knobs
        resp = web.StreamResponse(headers={"Content-Type": content_type, "Cache-Control": "no-cache"})
        await resp.prepare(request)
        for sent, line in enumerate(lines):
            if k.drop_after is not None and sent >= k.drop_after:
                self._cut(request)
                return resp
            if sent and k.chunk_delay > 0:
                await asyncio.sleep(k.chunk_delay)
            try:
                await resp.write(line)
            except (ConnectionError, RuntimeError):  # the client went away mid-answer: stop generating
                self.abandoned += 1
                return resp
            if (record := request.get(_RECORD)) is not None:
                record["sent_at"].append(time.time())
        if trailer:
            await resp.write(trailer)
        await resp.write_eof()
        return resp

    # -- OpenAI ----------------------------------------------------------------------------------------
    async def _openai_chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._receive(request)
        if (err := self._error("openai", body if isinstance(body, dict) else {})) is not None:
            return err
        stream = bool(body.get("stream")) if isinstance(body, dict) else False
        model = body.get("model", "fake-model") if isinstance(body, dict) else "fake-model"
        if self.knobs.body is not None:
            ctype = "text/event-stream" if stream else "application/json"
            return web.Response(text=self.knobs.body, content_type=ctype)
        if self.knobs.garbage and not stream:
            return web.Response(text="<html>this is not JSON", content_type="application/json")
        answer = self._answer(body)
        text = answer.text
        cid, created = self._next_id(), int(time.time())
        usage = {
            "prompt_tokens": _prompt_tokens(body),
            "completion_tokens": len(text.split()),
            "total_tokens": _prompt_tokens(body) + len(text.split()),
        }
        if not stream:
            content = (text or None) if answer.tool_calls else text
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if answer.tool_calls:
                message["tool_calls"] = answer.openai_calls()
            payload = {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": answer.finish_reason}],
                "usage": usage,
            }
            raw = json.dumps(payload).encode()
            if self.knobs.drop_after is not None:
                return await self._drop_body(request, raw, "application/json")
            return web.Response(body=raw, content_type="application/json")

        def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> bytes:
            choices = [{"index": 0, "delta": delta, "finish_reason": finish}] if delta is not None else []
            c = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": choices,
                **extra,
            }
            return b"data: " + json.dumps(c).encode() + b"\n\n"

        def lines() -> Iterator[bytes]:
            if self.knobs.garbage:
                yield b"data: {not json at all\n\n"
                yield b"data: [DONE]\n\n"
                return
            yield chunk({"role": "assistant", "content": ""})
            if text:
                for piece in _words(text, self.knobs.chunk_words):
                    yield chunk({"content": piece})
            for call in answer.openai_calls(indexed=True):  # name first, then the arguments in two pieces
                args = call["function"]["arguments"]
                head = {**call, "function": {"name": call["function"]["name"], "arguments": args[:5]}}
                yield chunk({"tool_calls": [head]})
                yield chunk({"tool_calls": [{"index": call["index"], "function": {"arguments": args[5:]}}]})
            yield chunk({}, answer.finish_reason)
            if ((body.get("stream_options") or {}) if isinstance(body, dict) else {}).get("include_usage"):
                yield chunk(None, usage=usage)

        trailer = b"" if self.knobs.garbage else b"data: [DONE]\n\n"
        return await self._stream(request, "text/event-stream", lines(), trailer)

    async def _props(self, request: web.Request) -> web.Response:
        """llama.cpp's server properties: only when a context window is set, as other servers have none."""
        if self.knobs.context is None:
            raise web.HTTPNotFound()
        return web.json_response({"default_generation_settings": {"n_ctx": self.knobs.context}})

    async def _openai_models(self, request: web.Request) -> web.Response:
        await self._receive(request)
        if (err := self._error("openai")) is not None:
            return err
        if self.knobs.garbage:
            return web.Response(text="not json", content_type="application/json")
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.knobs.models]
        return web.json_response({"object": "list", "data": data})

    # -- Ollama ----------------------------------------------------------------------------------------
    async def _ollama_chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._receive(request)
        if (err := self._error("ollama", body if isinstance(body, dict) else {})) is not None:
            return err
        stream = body.get("stream", True) is not False if isinstance(body, dict) else True
        model = body.get("model", "fake-model") if isinstance(body, dict) else "fake-model"
        if self.knobs.body is not None:
            ctype = "application/x-ndjson" if stream else "application/json"
            return web.Response(text=self.knobs.body, content_type=ctype)
        if self.knobs.garbage and not stream:
            return web.Response(text="<html>this is not JSON", content_type="application/json")
        answer = self._answer(body)
        text = answer.text
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        calls = [
            {"function": {"name": c["name"], "arguments": c["arguments"] or {}}} for c in answer.tool_calls
        ]

        def msg(content: str, done: bool, with_calls: bool = False) -> dict[str, Any]:
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if with_calls and calls:
                message["tool_calls"] = calls
            m: dict[str, Any] = {"model": model, "created_at": now, "message": message, "done": done}
            if done:
                reason = "length" if answer.finish_reason == "length" else "stop"
                m.update(
                    done_reason=reason, total_duration=1, prompt_eval_count=_prompt_tokens(body),
                    eval_count=len(text.split()),
                )
            return m

        if not stream:
            raw = json.dumps(msg(text, True, with_calls=True)).encode()
            if self.knobs.drop_after is not None:
                return await self._drop_body(request, raw, "application/json")
            return web.Response(body=raw, content_type="application/json")

        def lines() -> Iterator[bytes]:
            if self.knobs.garbage:
                yield b"{not json at all\n"
                return
            if text:
                for piece in _words(text, self.knobs.chunk_words):
                    yield json.dumps(msg(piece, False)).encode() + b"\n"
            if calls:
                yield json.dumps(msg("", False, with_calls=True)).encode() + b"\n"
            yield json.dumps(msg("", True)).encode() + b"\n"

        return await self._stream(request, "application/x-ndjson", lines())

    async def _ollama_tags(self, request: web.Request) -> web.Response:
        await self._receive(request)
        if (err := self._error("ollama")) is not None:
            return err
        if self.knobs.garbage:
            return web.Response(text="not json", content_type="application/json")
        models = [{"name": m, "model": m, "size": 1, "digest": "0" * 12} for m in self.knobs.models]
        return web.json_response({"models": models})

    # -- control (out-of-process use) ------------------------------------------------------------------
    async def _control(self, request: web.Request) -> web.Response:
        try:
            knobs = await request.json()
            if not isinstance(knobs, dict):
                raise ValueError("body must be a JSON object")
            self.configure(**knobs)
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(asdict(self.knobs))

    async def _requests(self, request: web.Request) -> web.Response:
        return web.json_response(self.requests)

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response(asdict(self.knobs))


async def _serve(host: str, port: int) -> None:
    fake = await FakeLLM(host, port).start()
    print(f"fake-llm listening on {fake.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await fake.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.fake_llm", description="Fake LLM server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.host, args.port))


if __name__ == "__main__":
    main()
