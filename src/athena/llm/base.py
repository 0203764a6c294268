"""The LLM backend interface: OpenAI-style messages in, text (whole or streamed) out."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, Protocol

from athena.records import ToolCall
from athena.turns import Usage

ChatMessage = Mapping[str, Any]  # {"role": ..., "content": ...} in OpenAI's format


class LLMError(Exception):
    """The backend failed: unreachable, HTTP error, timeout, or an answer not following the protocol.

    `kind` names the failure for metrics (athena_llm_errors_total) and for what a voice user hears."""

    kind: ClassVar[str] = "protocol"  # garbage, a cut-off stream, an answer that is not the wire format


class LLMTimeout(LLMError):
    kind = "timeout"


class LLMUnreachable(LLMError):
    """No connection to the backend (refused, no route, name not resolved)."""

    kind = "unreachable"


class LLMHTTPError(LLMError):
    """The backend answered with an HTTP error; a relay may pass ``status`` and ``body`` on to its client."""

    kind = "http"

    def __init__(self, message: str, status: int, body: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class LLMContextOverflow(LLMHTTPError):
    """The prompt did not fit the model's context window; `context_tokens` is the window when the server
    said it. A shorter history may well fit."""

    def __init__(
        self, message: str, status: int, body: bytes = b"", context_tokens: int | None = None
    ) -> None:
        super().__init__(message, status, body)
        self.context_tokens = context_tokens
class LLMModelMissing(LLMHTTPError):
    """The server answers but does not serve the model asked for (not pulled, misspelt, not loaded)."""

    kind = "model_missing"


class LLMWrongEndpoint(LLMHTTPError):
    """The server answers, but not the API asked for: the URL's path or the API kind (openai/ollama) is
    wrong. A 404 page from a wrong path, or a 200 that is not the protocol at the model list."""

    kind = "wrong_endpoint"


@dataclass(frozen=True, slots=True)
class Completion:
    """How an answer ended: its whole text, the model's finish reason, token usage and tool calls."""

    text: str
    finish_reason: str = "stop"
    usage: Usage | None = None
    tool_calls: tuple[ToolCall, ...] = ()


class ChatStream:
    """An answer's text deltas (never empty strings); `completion` is set once the answer ended cleanly.

    Wraps a backend's generator, which yields the deltas and then one Completion. Close it (`aclose`, or
    `contextlib.aclosing`) when stopping early: that closes the upstream request.
    """

    __slots__ = ("_source", "completion")

    def __init__(self, source: AsyncGenerator[str | Completion, None]) -> None:
        self._source = source
        self.completion: Completion | None = None

    def __aiter__(self) -> ChatStream:
        return self

    async def __anext__(self) -> str:
        while True:
            item = await self._source.__anext__()
            if isinstance(item, Completion):
                self.completion = item
                continue
            return item

    async def aclose(self) -> None:
        await self._source.aclose()


class Relayed(NamedTuple):
    """A whole OpenAI ``chat.completion`` answer: the JSON bytes to send on, and its text."""

    body: bytes
    text: str


class RelayChunk(NamedTuple):
    """Complete OpenAI server-sent events, ready to write (``b"data: {...}\\n\\n"``), and their text.

    One or more events: all that arrived from upstream in one read, so a relay writes them in one go."""

    event: bytes
    text: str


RelayStream = AsyncGenerator[RelayChunk, None]


class LLMBackend(Protocol):
    name: str  # for metrics and logs, e.g. "openai" or "ollama"
    model: str

    @property
    def context_tokens(self) -> int | None:
        """The model's context window in tokens, when configured or learnt from the server; else None."""

    def learn_context(self, tokens: int) -> None:
        """Keep a window the server told (or showed, by refusing a prompt of about that size)."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def chat(self, messages: Sequence[ChatMessage], **options: Any) -> str:
        """The whole text of a non-streamed answer (one that only calls tools is an LLMError)."""

    def stream(self, messages: Sequence[ChatMessage], **options: Any) -> ChatStream: ...
    async def models(self) -> list[str]: ...
    async def ping(self) -> None:
        """Raise LLMError when the backend cannot be reached."""

    # The stateless OpenAI relay (see athena.llm's docstring): an OpenAI request in, OpenAI wire format out.
    async def relay(self, body: Mapping[str, Any]) -> Relayed: ...
    def relay_stream(self, body: Mapping[str, Any]) -> RelayStream: ...

