"""Helpers for the Home Assistant tests: the out-of-process fake LLM's remote control, entry set-up."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from typing import Any

import aiohttp
from homeassistant.const import CONF_TOKEN, CONF_URL
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.athena.const import DOMAIN
from tests.support.gateway import REPO, free_port


class FakeLLMProcess:
    """`python -m tests.support.fake_llm` in its own process, driven by /_control, /_requests, /_reset."""

    def __init__(self, python: str) -> None:
        self.proc = subprocess.Popen(
            [python, "-m", "tests.support.fake_llm", "--port", "0"],
            cwd=str(REPO),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.stop()
            raise RuntimeError(f"fake LLM did not start: {line}")
        self.url = line.rsplit(" ", 1)[1].strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def post_sync(self, path: str, body: dict[str, Any] | None = None) -> Any:
        req = urllib.request.Request(self.url + path, data=json.dumps(body or {}).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    # From async tests: aiohttp, since HA's test harness rejects blocking HTTP inside the event loop.
    async def configure(self, **knobs: Any) -> None:
        async with aiohttp.ClientSession() as s, s.post(self.url + "/_control", json=knobs) as resp:
            assert resp.status == 200, await resp.text()

    async def requests(self) -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as s, s.get(self.url + "/_requests") as resp:
            return await resp.json()

    async def chat_requests(self) -> list[list[dict[str, Any]]]:
        """The `messages` of every chat request the LLM received, oldest first."""
        chats = [r for r in await self.requests() if r["path"].endswith("/chat/completions")]
        return [r["body"]["messages"] for r in chats]


async def setup_athena(
    hass: HomeAssistant,
    url: str,
    token: str,
    options: dict[str, Any] | None = None,
    *,
    unique_id: str | None = None,
) -> MockConfigEntry:
    """A loaded Athena entry, made the way a finished config flow makes it (by default as before gateways had
    an instance id: the URL as unique id)."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Athena",
        unique_id=unique_id or url,
        data={CONF_URL: url, CONF_TOKEN: token},
        options=options or {},
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


def closed_port_url() -> str:
    """A loopback URL nothing listens on: connection refused."""
    return f"http://127.0.0.1:{free_port()}"
