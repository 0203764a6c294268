"""Run the real gateway (`python -m athena serve`) as a subprocess for tests that need a process boundary.

Stdlib only: the Home Assistant test venv (Python 3.13) imports this too and points `python` at the gateway's
3.11 interpreter (`ATHENA_PYTHON`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.processes import stop_process

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GatewayProcess:
    """`with GatewayProcess({"ATHENA_LLM_URL": fake.url + "/v1"}) as gw:` then call `gw.url` with `gw.token`.

    The data dir is a fresh temp dir (SQLite store and token file live there) unless ATHENA_DATA_DIR is given.
    Output goes to `gw.log_path`; `gw.log()` reads it (shown in the error when start-up fails).
    """

    def __init__(
        self,
        env: dict[str, str] | None = None,
        python: str = sys.executable,
        *,
        startup_timeout: float = 30.0,
        src: Path = REPO / "src",
    ) -> None:
        self._extra = dict(env or {})
        self.src = src  # whose gateway runs: another checkout's src/ for a before/after benchmark
        self.python = python
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Never starting with "-": a test passes it as `--token <value>`.
        self.token = self._extra.get("ATHENA_API_TOKEN") or "t" + secrets.token_urlsafe(24)
        self._tmp: str | None = None
        self._last_log = ""  # the log's text once the temp dir is gone
        self.data_dir: Path | None = None
        self.log_path: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> GatewayProcess:
        self._tmp = tempfile.mkdtemp(prefix="athena-gw-")
        self.data_dir = Path(self._extra.get("ATHENA_DATA_DIR") or Path(self._tmp) / "data")
        self.log_path = Path(self._tmp) / "gateway.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ATHENA_")}
        env.update(
            {
                "ATHENA_DATA_DIR": str(self.data_dir),
                "ATHENA_HOST": "127.0.0.1",
                "ATHENA_PORT": str(self.port),
                "PYTHONUNBUFFERED": "1",
                **self._extra,
                "ATHENA_API_TOKEN": self.token,
            }
        )
        # The gateway package may not be installed in the caller's interpreter; src/ on the path covers both.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(self.src), env.get("PYTHONPATH", "")) if p)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [self.python, "-m", "athena", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=str(REPO),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_live()
        return self

    def _wait_live(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.log()
                self._cleanup()
                raise RuntimeError(
                    f"gateway exited with {self.proc.returncode} during start-up:\n{log[-4000:]}"
                )
            live = self.url + "/health/live"
            with contextlib.suppress(OSError), urllib.request.urlopen(live, timeout=1) as r:
                if r.status == 200:
                    return
            time.sleep(0.05)
        log = self.log()
        self.stop()
        raise RuntimeError(
            f"gateway did not answer /health/live within {self.startup_timeout}s:\n{log[-4000:]}"
        )

    def stop(self) -> None:
        stop_process(self.proc)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._tmp is not None:
            # Keep the log readable after stop(): copy it out of the temp dir first.
            if self.log_path is not None and self.log_path.exists():
                self._last_log = self.log_path.read_text(errors="replace")
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers ----------------------------------------------------------------------------------
    def log(self) -> str:
        if self.log_path is not None and self.log_path.exists():
            return self.log_path.read_text(errors="replace")
        return self._last_log

    def request(
        self, method: str, path: str, body: Any = None, *, token: str | None = None, timeout: float = 30.0
    ) -> tuple[int, Any]:
        """One JSON call with the gateway's token; returns (status, parsed JSON or text)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token or self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def converse(self, text: str, **fields: Any) -> dict[str, Any]:
        """POST /ha/conversation; raises on a non-200 answer."""
        status, body = self.request("POST", "/ha/conversation", {"text": text, **fields})
        if status != 200:
            raise RuntimeError(f"/ha/conversation answered {status}: {body}")
        return body
