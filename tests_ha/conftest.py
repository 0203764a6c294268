"""Fixtures: a real Athena gateway process and the fake LLM it talks to, shared by the whole run.

Both are separate processes on loopback, started once (about a second each); every test resets the fake LLM
and uses its own HA device ids, so tests do not see each other's sessions.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import pytest_socket
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component

import custom_components.athena  # noqa: F401 - imported at module level so HA's loader finds our integration
from tests.support.gateway import GatewayProcess
from tests_ha.support import REPO, FakeLLMProcess

# The gateway runs on its own Python 3.11 venv; the Makefile passes its interpreter.
GATEWAY_PYTHON = os.environ.get("ATHENA_PYTHON") or str(REPO / ".venv" / "bin" / "python")


@pytest.fixture(autouse=True)
def _loopback(socket_enabled: None) -> None:
    """Allow sockets again: pytest-homeassistant-custom-component blocks them for every test.

    These tests talk to real processes (gateway, fake LLM, hass) over loopback. The plugin's
    `socket_allow_hosts(["127.0.0.1"])` guard on connect() stays in place, so nothing can leave the machine.
    Session fixtures set up before this one, so they call `pytest_socket.enable_socket()` themselves.
    """


@pytest.fixture(autouse=True)
async def _ha_core(hass: HomeAssistant, enable_custom_integrations: None) -> None:
    """HA ignores custom_components/ in tests unless asked; `conversation` needs the core integration."""
    assert await async_setup_component(hass, "homeassistant", {})


@pytest.fixture(scope="session")
def llm_process() -> Iterator[FakeLLMProcess]:
    pytest_socket.enable_socket()
    proc = FakeLLMProcess(GATEWAY_PYTHON)
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def gateway(llm_process: FakeLLMProcess) -> Iterator[GatewayProcess]:
    """The real gateway (`python -m athena serve`, Python 3.11 venv) with the fake LLM as its model."""
    pytest_socket.enable_socket()
    env = {
        "ATHENA_LLM_API": "openai",
        "ATHENA_LLM_URL": llm_process.url + "/v1",
        "ATHENA_LLM_MODEL": "fake-model",
        "ATHENA_LOG_LEVEL": "WARNING",
    }
    with GatewayProcess(env, python=GATEWAY_PYTHON) as gw:
        yield gw


@pytest.fixture
def llm(llm_process: FakeLLMProcess) -> FakeLLMProcess:
    """The fake LLM, reset: default replies ("Reply to: <text>"), no recorded requests."""
    llm_process.post_sync("/_reset")
    return llm_process
