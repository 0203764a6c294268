"""A real llama.cpp server (llama-cpp-python + SmolLM2-135M) for tests and benchmarks.

Built once by scripts/llama-server, in a venv outside the repo.

    with LlamaServer() as llm:          # free loopback port, waits until /v1/models answers
        post(llm.url + "/chat/completions", {"model": llm.model, ...})

Stdlib only, like tests/support/gateway.py. `llama_available()` says why the server can't run (None when
it can); `skip_unless_llama()` turns that into one pytest skip line.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.support.gateway import REPO, free_port
from tests.support.processes import stop_process

SCRIPT = REPO / "scripts" / "llama-server"


def llama_venv() -> Path:
    return Path(os.environ.get("ATHENA_LLAMA_VENV") or Path.home() / ".cache" / "athena" / "llama-venv")


def llama_available() -> str | None:
    """None when scripts/llama-server has built the venv, else the reason it can't run."""
    stamp = llama_venv() / ".athena-stamp"
    if not stamp.is_file():
        return f"no build stamp at {stamp}"
    if not (llama_venv() / "bin" / "python").exists():
        return f"no python in {llama_venv()}"
    return None


def skip_unless_llama() -> None:
    """pytest.skip with one line when the server is not built (pytest imported here: the module is stdlib)."""
    reason = llama_available()
    if reason is not None:
        import pytest

        ci = "CI is set" if os.environ.get("CI") else "CI not set"
        pytest.skip(f"real llama.cpp server not built: run scripts/llama-server ({reason}; {ci})")


class LlamaServer:
    """`python -m llama_cpp.server` on 127.0.0.1:<free port>; `.url` ends in /v1, `.model` is its model id.

    Output goes to a temp log; `log()` reads it (shown in the error when start-up fails).
    """

    def __init__(
        self, *, ctx: int = 2048, extra: list[str] | None = None, startup_timeout: float = 60.0
    ) -> None:
        self.ctx = ctx
        self.extra = list(extra or [])
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.model = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self._tmp: str | None = None
        self._last_log = ""

    def start(self) -> LlamaServer:
        reason = llama_available()
        if reason is not None:
            raise RuntimeError(f"real llama.cpp server not built: run scripts/llama-server ({reason})")
        self._tmp = tempfile.mkdtemp(prefix="athena-llama-")
        self.log_path = Path(self._tmp) / "llama.log"
        cmd = [str(SCRIPT), "run", "--port", str(self.port), "--ctx", str(self.ctx), *self.extra]
        with open(self.log_path, "wb") as log:
            # The script execs python, so this pid is the server's own.
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.log()
                self._cleanup()
                raise RuntimeError(f"llama server exited with {self.proc.returncode}:\n{log[-4000:]}")
            with (
                contextlib.suppress(OSError, ValueError),
                urllib.request.urlopen(self.url + "/models", timeout=1) as r,
            ):
                self.model = json.load(r)["data"][0]["id"]
                return
            time.sleep(0.1)
        log = self.log()
        self.stop()
        raise RuntimeError(
            f"llama server did not answer /v1/models within {self.startup_timeout}s:\n{log[-4000:]}"
        )

    def stop(self) -> None:
        stop_process(self.proc)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._tmp is not None:
            if self.log_path.exists():
                self._last_log = self.log_path.read_text(errors="replace")
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def log(self) -> str:
        if self._tmp is not None and self.log_path.exists():
            return self.log_path.read_text(errors="replace")
        return self._last_log

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
