"""The test run's own Redis: `redis-server` from PATH on a free loopback port, in a temp dir, saving nothing.

Why always our own rather than "the one on 127.0.0.1:6379 if it answers": that Redis belongs to the machine
and everyone on it (other engineers' runs, benchmarks, a developer's gateway). Our keys carry their own
prefix, but a shared server still leaks state between runs (a FLUSHALL, a full memory, a `CONFIG SET`
elsewhere) and ties the result to a service someone must set up by hand. Our own costs ~20 ms, is empty, and
goes away with the run, so `make test` needs nothing set up beforehand. `ATHENA_TEST_REDIS_URL` still points
the suite at any Redis you pick (a cluster, a managed one, another version).

Stdlib only. `redis_url()` starts the server on first use (one per test process) and stops it at exit; it
returns None with `unavailable_reason()` explaining why when there is no `redis-server`.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time

from tests.support.gateway import free_port
from tests.support.processes import stop_process

_server: subprocess.Popen[bytes] | None = None
_url: str | None = None
_reason = ""


def _answers(port: int) -> bool:
    """A PING on the wire: the server is up once it answers +PONG."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis_server(binary: str) -> tuple[str, subprocess.Popen[bytes], str]:
    """Start one; returns (url, process, its dir). Raises RuntimeError when it does not come up in 10 s."""
    workdir = tempfile.mkdtemp(prefix="athena-test-redis-")
    for _attempt in range(3):  # a free port can be taken between finding it and binding it
        port = free_port()
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", workdir, "--logfile", os.path.join(workdir, "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            if _answers(port):
                return f"redis://127.0.0.1:{port}/0", proc, workdir
            time.sleep(0.02)
        stop_process(proc, timeout=5)
    shutil.rmtree(workdir, ignore_errors=True)
    raise RuntimeError(f"{binary} did not start on a free port (three tries)")


def redis_url() -> str | None:
    """$ATHENA_TEST_REDIS_URL, else the URL of this run's own redis-server (started at first use), or None."""
    global _server, _url, _reason
    if os.environ.get("ATHENA_TEST_REDIS_URL"):
        return os.environ["ATHENA_TEST_REDIS_URL"]
    if _url is not None or _reason:
        return _url
    binary = shutil.which("redis-server")
    if binary is None:
        _reason = "no redis-server on PATH (apt-get install redis-server) and no ATHENA_TEST_REDIS_URL"
        return None
    try:
        _url, _server, workdir = start_redis_server(binary)
    except RuntimeError as err:
        _reason = str(err)
        return None

    def stop() -> None:
        if _server is not None:
            stop_process(_server, timeout=5)
        shutil.rmtree(workdir, ignore_errors=True)

    atexit.register(stop)
    return _url


def unavailable_reason() -> str:
    return _reason
