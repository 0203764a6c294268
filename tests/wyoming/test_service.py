"""`athena serve` runs the Wyoming server with the HTTP app (settings, start-up failures, zeroconf).

Zeroconf is checked with a real mDNS browser (python-zeroconf, what HA's zeroconf integration runs) on the
loopback interface: Athena advertises on 127.0.0.1 only when bound there, so nothing leaves the machine.
HA's own zeroconf integration ignores loopback addresses, so HA's discovery step itself cannot run here.
"""

from __future__ import annotations

import asyncio
import random
import socket
from pathlib import Path

import pytest
from pydantic import ValidationError
from wyoming.info import Info
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncZeroconf

from athena.config import Settings
from athena.wyoming.discovery import SERVICE_TYPE, default_name
from tests.api.conftest import make_settings, serve
from tests.api.test_cli import athena
from tests.support.fake_llm import FakeLLM
from tests.support.gateway import GatewayProcess, free_port
from tests.wyoming.conftest import Peer


async def connect(port: int) -> Peer:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return Peer(reader, writer)


async def test_serve_listens_for_wyoming_when_a_port_is_set(tmp_path: Path, fake_llm: FakeLLM) -> None:
    port = free_port()
    settings = make_settings(
        tmp_path, llm_url=fake_llm.url + "/v1", wyoming_port=str(port), wyoming_zeroconf=False
    )
    async with serve(settings) as gw:
        peer = await connect(port)
        info = Info.from_event(await peer.ask("describe"))
        assert info.handle[0].name == "Athena"
        answer = await peer.ask("transcript", {"text": "hi", "context": {"device_id": "kitchen"}})
        assert answer.data["text"] == "Reply to: hi"
        await peer.close()
        assert (await gw.session("kitchen")) is not None  # the same engine as the HTTP API
        metrics = (await gw.client.get("/metrics")).text
        assert "athena_wyoming_connections_total" in metrics
    with pytest.raises(OSError):  # stopped with the app
        await connect(port)


async def test_off_by_default(tmp_path: Path, fake_llm: FakeLLM) -> None:
    settings = make_settings(tmp_path, llm_url=fake_llm.url + "/v1")
    assert settings.wyoming_address is None
    async with serve(settings) as gw:
        assert (await gw.client.get("/health/live")).status_code == 200


async def test_a_taken_port_stops_athena_serve_with_one_line(tmp_path: Path, fake_llm: FakeLLM) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = await athena(
            "serve",
            "--port",
            str(free_port()),
            env={
                "ATHENA_DATA_DIR": str(tmp_path),
                "ATHENA_LLM_URL": fake_llm.url + "/v1",
                "ATHENA_WYOMING_PORT": f"tcp://127.0.0.1:{port}",
                "ATHENA_WYOMING_ZEROCONF": "false",
            },
        )
    assert code == 3
    assert f"Athena cannot start: Wyoming cannot listen on 127.0.0.1:{port}" in err
    assert "Traceback" not in err + out


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("10300", ("127.0.0.1", 10300)),
        (10300, ("127.0.0.1", 10300)),
        ("tcp://0.0.0.0:10300", ("0.0.0.0", 10300)),
    ],
)
def test_the_port_setting(tmp_path: Path, value: object, address: tuple[str, int]) -> None:
    assert make_settings(tmp_path, wyoming_port=value).wyoming_address == address


@pytest.mark.parametrize("value", ["udp://0.0.0.0:1", "tcp://:10300", "tcp://host", "ten", "70000"])
def test_a_bad_port_setting_names_itself(tmp_path: Path, value: str) -> None:
    with pytest.raises(ValidationError, match="wyoming_port"):
        make_settings(tmp_path, wyoming_port=value)


def test_the_allow_setting(tmp_path: Path) -> None:
    assert make_settings(tmp_path, wyoming_allow="192.168.1.0/24, 10.0.0.5").wyoming_allow
    with pytest.raises(ValidationError, match="'nope' is not an IP"):
        make_settings(tmp_path, wyoming_allow="192.168.1.0/24,nope")
    assert Settings(wyoming_allow="").wyoming_allow is None


async def test_zeroconf_advertises_the_service(tmp_path: Path, fake_llm: FakeLLM) -> None:
    port = free_port()
    name = f"athena-test-{port}"
    settings = make_settings(
        tmp_path,
        llm_url=fake_llm.url + "/v1",
        wyoming_port=f"tcp://127.0.0.1:{port}",
        wyoming_zeroconf_name=name,
    )
    async with serve(settings):
        browser = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
        try:
            info = await browser.async_get_service_info(
                SERVICE_TYPE, f"{name}.{SERVICE_TYPE}", timeout=10_000
            )
        finally:
            await browser.async_close()
    assert info is not None, "not advertised"
    assert info.port == port and info.parsed_addresses() == ["127.0.0.1"]
    # What HA's zeroconf step does with it: connect to that host and port and describe.


def test_the_default_zeroconf_name_is_stable() -> None:
    assert default_name() == default_name()
    assert default_name().startswith("athena-") and len(default_name()) <= 63


async def test_fuzz_at_a_running_athena_serve(fake_llm: FakeLLM) -> None:
    """The real process (`athena serve`, uvloop): 200 connections of random bytes, then it still answers
    Wyoming and HTTP, and its log names the bad input without a traceback."""
    port = free_port()
    env = {
        "ATHENA_LLM_URL": fake_llm.url + "/v1",
        "ATHENA_STORE_URL": "memory://",
        "ATHENA_WYOMING_PORT": f"tcp://127.0.0.1:{port}",
        "ATHENA_WYOMING_ZEROCONF": "false",
    }
    rnd = random.Random(7)
    with GatewayProcess(env) as gw:

        async def one() -> None:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError as exc:
                raise AssertionError(f"the Wyoming port stopped answering: {exc}") from exc
            try:
                writer.write(rnd.randbytes(rnd.randrange(1, 2048)) + b"\n")
                await writer.drain()
                async with asyncio.timeout(10):
                    while await reader.read(65536):
                        pass
            except ConnectionError:
                pass
            finally:
                writer.close()

        for _ in range(20):
            await asyncio.gather(*(one() for _ in range(10)))
        peer = await connect(port)
        assert (await peer.ask("describe")).type == "info"
        answer = await peer.ask("transcript", {"text": "still there?"})
        assert answer.data["text"] == "Reply to: still there?"
        await peer.close()
        assert gw.request("GET", "/health/live")[0] == 200
        log = gw.log()
    assert "wyoming.bad_input" in log and "Traceback" not in log
