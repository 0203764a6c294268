"""`athena devices | sessions export | stats` against a real gateway process: the console's actions from a
terminal."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.api.test_cli import athena
from tests.support.fake_llm import FakeLLM
from tests.support.gateway import GatewayProcess


@pytest.fixture
async def process(fake_llm: FakeLLM) -> AsyncIterator[GatewayProcess]:
    gw = GatewayProcess(
        {
            "ATHENA_LLM_URL": fake_llm.url + "/v1",
            "ATHENA_LLM_MODEL": "fake-model",
            "ATHENA_DEVICE_POLICY": "known",
            "ATHENA_DEVICES": json.dumps({"kitchen": {"status": "allowed"}}),
        }
    )
    await asyncio.to_thread(gw.start)
    try:
        yield gw
    finally:
        await asyncio.to_thread(gw.stop)


async def test_devices_list_show_set_allow_block_delete(process: GatewayProcess, tmp_path: Path) -> None:
    env = {"ATHENA_URL": process.url, "ATHENA_API_TOKEN": process.token}
    await asyncio.to_thread(process.converse, "hello", device_id="kitchen", device_name="Kitchen Display")
    await asyncio.to_thread(process.converse, "let me in", device_id="porch")
    code, out, err = await athena("devices", "list", env=env)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["DEVICE", "NAME", "STATUS", "TURNS"]
    assert any(line.split()[:3] == ["porch", "-", "pending"] for line in lines)
    code, out, err = await athena(
        "devices", "set", "kitchen display", "--timeout", "90", "--history", "4", env=env
    )
    assert code == 0, err
    assert "timeout     90.0 (set here)" in out and "history     4 (set here)" in out
    code, out, _ = await athena("devices", "set", "kitchen", "--clear", "history", env=env)
    assert "history     20\n" in out + "\n" and "timeout     90.0 (set here)" in out
    code, out, err = await athena("devices", "allow", "porch", env=env)
    assert code == 0 and "status      allowed" in out, err
    served = await asyncio.to_thread(process.converse, "let me in", device_id="porch")
    assert served["response"]["response_type"] == "query_answer"
    code, out, _ = await athena("devices", "block", "porch", env=env)
    assert "status      blocked" in out
    code, out, err = await athena("devices", "show", "nobody", env=env)
    assert code == 1 and "no device has the id or name 'nobody'" in err
    code, out, err = await athena("devices", "set", "kitchen", env=env)
    assert code == 1 and "nothing to set" in err
    # Export the live session to a file, then delete the device's data.
    target = tmp_path / "kitchen.json"
    code, out, err = await athena("sessions", "export", "kitchen", "-o", str(target), env=env)
    assert code == 0, err
    exported = json.loads(target.read_text())
    assert [m["content"] for m in exported["messages"]] == ["hello", "Reply to: hello"]
    assert exported["device"]["name"] == "Kitchen Display" and exported["session"]["live"] is True
    code, out, _ = await athena("stats", env=env)
    assert code == 0 and out.splitlines()[-1].split()[:2] == ["total", "3"]
    code, out, err = await athena("devices", "delete", "kitchen", env=env)
    assert code == 0 and "deleted everything kept about kitchen" in out, err
    code, out, err = await athena("sessions", "export", "kitchen", env=env)
    assert code == 1 and "no live session" in err
