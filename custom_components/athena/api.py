"""A small client for the two gateway endpoints the integration needs.

Kept free of Home Assistant entities so the config flow and the agent share one way of talking to the
gateway, and every failure maps onto one of a few exception classes the callers turn into UI errors or speech.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from .const import CONVERSATION_PATH, INFO_PATH, INFO_TIMEOUT


class AthenaError(Exception):
    """Base class: the gateway could not give a usable answer."""


class CannotConnect(AthenaError):
    """Refused, unreachable, DNS failure or timeout."""


class GatewayTimeout(CannotConnect):
    """No complete answer within the configured time."""


class InvalidAuth(AthenaError):
    """The gateway answered 401/403: wrong token."""


class NotAthena(AthenaError):
    """Something answered, but it is not an Athena gateway (404, or a body that is not Athena's)."""


class GatewayError(AthenaError):
    """The gateway answered with an error status or a body that cannot be read."""


def normalize_url(url: str) -> str:
    """One spelling per gateway: lower-case scheme and host, no trailing slash, no query.

    Used both as the base of every request and as the config entry's unique id.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {url!r}")
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), "", ""))


class AthenaClient:
    """Talks to one gateway through Home Assistant's shared aiohttp session."""

    def __init__(self, session: aiohttp.ClientSession, url: str, token: str) -> None:
        self._session = session
        self.url = normalize_url(url)
        self._headers = {"Authorization": f"Bearer {token}"}

    async def info(self) -> dict[str, Any]:
        """`GET /athena/info`; raises unless the answer really is Athena's."""
        body = await self._request("GET", INFO_PATH, None, INFO_TIMEOUT)
        if not isinstance(body, dict) or body.get("service") != "athena":
            raise NotAthena("not an Athena info body")
        return body

    async def converse(self, payload: dict[str, Any], limit: float) -> dict[str, Any]:
        """`POST /ha/conversation`; returns the ConversationResult-shaped dict, with its speech checked."""
        return _checked(await self._request("POST", CONVERSATION_PATH, payload, limit))

    async def converse_stream(self, payload: dict[str, Any], limit: float) -> AsyncIterator[dict[str, Any]]:
        """The streamed `POST /ha/conversation`: its events (`start`, `delta`, `result`) as they arrive.

        `limit` bounds the whole answer. A gateway that does not stream answers with the whole result, which
        comes as the one `result` event.
        """
        try:
            async with self._session.post(
                self.url + CONVERSATION_PATH,
                json={**payload, "stream": True},
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=limit),
            ) as resp:
                if resp.status != 200 or resp.content_type != "application/x-ndjson":
                    body = await _json(resp)
                    _raise_for(resp.status, body)
                    yield {"event": "result", "result": _checked(body)}
                    return
                async for line in resp.content:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if not isinstance(event, dict):
                        raise GatewayError("a streamed line that is not a JSON object")
                    if event.get("event") == "result":
                        event["result"] = _checked(event.get("result"))
                    yield event
        except TimeoutError as err:
            raise GatewayTimeout(f"no answer within {limit:g} s") from err
        except aiohttp.ClientError as err:
            raise CannotConnect(str(err) or type(err).__name__) from err
        except ValueError as err:  # a line that is not JSON, or too long
            raise GatewayError(f"unreadable stream: {err}") from err

    async def _request(self, method: str, path: str, payload: dict[str, Any] | None, limit: float) -> Any:
        """The decoded JSON body (None if not JSON) of a 200 answer; any other status raises."""
        try:
            async with self._session.request(
                method,
                self.url + path,
                json=payload,
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=limit),
            ) as resp:
                body = await _json(resp)
                status = resp.status
        except TimeoutError as err:
            raise GatewayTimeout(f"no answer within {limit:g} s") from err
        except aiohttp.ClientError as err:
            raise CannotConnect(str(err) or type(err).__name__) from err
        _raise_for(status, body)
        return body


async def _json(resp: aiohttp.ClientResponse) -> Any:
    try:
        return await resp.json(content_type=None)
    except ValueError:  # JSONDecodeError and aiohttp's ContentTypeError both derive from it
        return None


def _raise_for(status: int, body: Any) -> None:
    if status in (401, 403):
        raise InvalidAuth(f"HTTP {status}")
    if status == 404:
        raise NotAthena("HTTP 404")
    if status != 200:
        detail = _error_message(body)
        raise GatewayError(f"HTTP {status}: {detail}" if detail else f"HTTP {status}")


def _checked(body: Any) -> dict[str, Any]:
    """A ConversationResult-shaped dict with its speech, or GatewayError."""
    try:
        speech = body["response"]["speech"]["plain"]["speech"]
    except (KeyError, TypeError):
        speech = None
    if not isinstance(speech, str):
        raise GatewayError("answer without speech")
    return body


def _error_message(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message") or body["error"].get("code") or "")
    return ""
