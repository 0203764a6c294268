"""The `athena` command as a newcomer uses it: `serve` in a subprocess, then `chat` and `sessions`."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.api.conftest import llm_messages
from tests.support.fake_llm import FakeLLM, said
from tests.support.gateway import REPO, GatewayProcess, free_port


@pytest.fixture
async def process(fake_llm: FakeLLM) -> AsyncIterator[GatewayProcess]:
    gw = GatewayProcess({"ATHENA_LLM_URL": fake_llm.url + "/v1", "ATHENA_LLM_MODEL": "fake-model"})
    await asyncio.to_thread(gw.start)  # the fake LLM keeps serving on this loop meanwhile
    try:
        yield gw
    finally:
        await asyncio.to_thread(gw.stop)


async def athena(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> tuple[int, str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ATHENA_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "athena",
        *args,
        cwd=str(REPO),
        env={**base, **(env or {})},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_chat_keeps_a_multi_turn_conversation(process: GatewayProcess, fake_llm: FakeLLM) -> None:
    code, out, err = await athena(
        "chat",
        "--device",
        "office",
        "--url",
        process.url,
        "--token",
        process.token,
        stdin="what's the weather on Saturday?\n\nwhat about Sunday?\n",
    )
    assert code == 0, err
    assert out.splitlines() == [
        "athena> Reply to: what's the weather on Saturday?",
        "athena> Reply to: what about Sunday?",
    ]
    assert [said(m) for m in llm_messages(fake_llm)[1:]] == [
        "what's the weather on Saturday?",
        "Reply to: what's the weather on Saturday?",
        "what about Sunday?",
    ]


async def test_chat_reads_the_environment_and_new_starts_over(
    process: GatewayProcess, fake_llm: FakeLLM
) -> None:
    code, out, err = await athena(
        "chat",
        "--device",
        "office",
        stdin="hello\n/new\nwho am I?\n",
        env={"ATHENA_URL": process.url, "ATHENA_API_TOKEN": process.token},
    )
    assert code == 0, err
    assert out.splitlines() == [
        "athena> Reply to: hello",
        "(new conversation)",
        "athena> Reply to: who am I?",
    ]
    assert [m["role"] for m in llm_messages(fake_llm)] == ["system", "user"]


async def test_sessions_list_show_clear(process: GatewayProcess) -> None:
    env = {"ATHENA_URL": process.url, "ATHENA_API_TOKEN": process.token}
    await asyncio.to_thread(process.converse, "hello", device_id="office")
    code, out, _ = await athena("sessions", "list", env=env)
    assert code == 0 and "office" in out and "DEVICE" in out
    code, out, _ = await athena("sessions", "show", "office", env=env)
    assert code == 0
    assert "user: hello" in out and "assistant: Reply to: hello" in out
    code, out, _ = await athena("sessions", "clear", "office", env=env)
    assert code == 0 and "cleared" in out
    code, out, _ = await athena("sessions", "show", "office", env=env)
    assert code == 1 and "no live session" in out


async def test_a_wrong_token_or_no_gateway_is_one_clear_line(process: GatewayProcess) -> None:
    code, _, err = await athena("chat", "--url", process.url, "--token", "wrong", stdin="hi\n")
    assert code == 1
    assert err.strip() == "athena: the gateway refused the API token (set ATHENA_API_TOKEN or pass --token)"
    code, _, err = await athena(
        "sessions", "list", "--url", f"http://127.0.0.1:{free_port()}", "--token", "x"
    )
    assert code == 1
    assert err.startswith("athena: cannot reach the gateway at") and "Traceback" not in err


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"ATHENA_STORE_URL": "bogus://x"}, "ATHENA_STORE_URL"),
        ({"ATHENA_SESSION_TIMEOUT": "-5"}, "ATHENA_SESSION_TIMEOUT"),
        ({"ATHENA_LLM_API": "gpt"}, "ATHENA_LLM_API"),
        ({"ATHENA_HA_URL": "http://ha:8123"}, ""),
    ],
)
async def test_bad_settings_exit_2_with_one_line(tmp_path: Path, env: dict[str, str], variable: str) -> None:
    code, _, err = await athena("serve", "--port", "0", env={"ATHENA_DATA_DIR": str(tmp_path), **env})
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("athena: bad setting " + variable)


async def test_the_gateway_process_generates_and_reports_its_token(fake_llm: FakeLLM, tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "athena",
        "serve",
        "--port",
        str(port),
        cwd=str(REPO),
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("ATHENA_")},
            "ATHENA_DATA_DIR": str(data),
            "ATHENA_LLM_URL": fake_llm.url + "/v1",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        summary = []
        while len(summary) < 6:
            summary.append((await asyncio.wait_for(proc.stdout.readline(), 30)).decode())
        text = "".join(summary)
        assert f"generated into {data / 'api_token'}" in text
        assert "store       sqlite:///" in text
        assert "Home Assistant intents off" in text
        token = (data / "api_token").read_text().strip()
        code, out, err = await athena(
            "chat",
            "--device",
            "desk",
            stdin="hi\n",
            env={"ATHENA_DATA_DIR": str(data), "ATHENA_PORT": str(port)},  # token from the file
        )
        for _ in range(100):
            if code == 0:
                break
            await asyncio.sleep(0.1)  # the server may still be binding after printing the summary
            code, out, err = await athena(
                "chat",
                "--device",
                "desk",
                stdin="hi\n",
                env={"ATHENA_DATA_DIR": str(data), "ATHENA_PORT": str(port)},
            )
        assert code == 0, err
        assert out.strip() == "athena> Reply to: hi"
        assert token
    finally:
        proc.terminate()
        await proc.wait()


async def test_an_unreachable_store_at_start_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    code, out, err = await athena(
        "serve",
        "--port",
        str(free_port()),
        env={"ATHENA_DATA_DIR": str(tmp_path), "ATHENA_STORE_URL": f"redis://127.0.0.1:{free_port()}/0"},
    )
    assert code == 3
    assert "Athena cannot start: cannot reach the Redis store" in err
    assert "Traceback" not in err + out
