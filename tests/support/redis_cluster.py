"""A real Redis Cluster for the tests: three `redis-server --cluster-enabled yes` on free loopback ports in a
temp dir, joined by `redis-cli --cluster create ... --cluster-replicas 0`.

The nodes run with `cluster-require-full-coverage no`, as an operator who prefers partial service runs them:
with one node down the others keep serving their slots. Nothing is kept on disk but each node's nodes.conf.
Without redis-server or redis-cli the tests that need a cluster skip locally and FAIL when CI=true.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from redis import Redis
from redis.crc import key_slot

from tests.support.processes import stop_process


def cluster_port() -> int:
    """A free port P with P + 10000 free too (the node's cluster bus), P <= 55535 as Redis requires."""
    for _ in range(200):
        port = random.randint(20_000, 55_535)
        try:
            for p in (port, port + 10_000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


def require_binaries() -> tuple[str, str]:
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("redis-server and redis-cli are required in CI for the Redis Cluster tests")
        pytest.skip("redis-server / redis-cli are not installed")
    return server, cli


@dataclass
class ClusterNode:
    port: int
    dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> Redis:
        return Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=2, socket_timeout=5)


@dataclass
class LocalCluster:
    """`with LocalCluster() as c:`, then `ATHENA_STORE_URL=c.url`; `c.kill(node)` mid-test."""

    size: int = 3
    node_timeout_ms: int = 1000
    nodes: list[ClusterNode] = field(default_factory=list)
    _tmp: str | None = None

    @property
    def url(self) -> str:
        """One seed node is enough: the client learns the rest from it."""
        return f"redis+cluster://{self.nodes[0].name}"

    def start(self) -> LocalCluster:
        server, cli = require_binaries()
        self._tmp = tempfile.mkdtemp(prefix="athena-cluster-")
        for _ in range(self.size):
            port = cluster_port()
            node = ClusterNode(port, Path(self._tmp) / str(port))
            node.dir.mkdir()
            self.nodes.append(node)
            self._launch(server, node)
        for node in self.nodes:
            self._wait_ping(node)
        create = subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(n.name for n in self.nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        if create.returncode != 0:
            self.stop()
            raise RuntimeError(f"redis-cli --cluster create failed: {create.stdout!r} {create.stderr!r}")
        self.wait_state_ok()
        return self

    def _launch(self, server: str, node: ClusterNode) -> None:
        node.proc = subprocess.Popen(
            [
                server,
                "--port",
                str(node.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(node.dir),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(self.node_timeout_ms),
                "--cluster-require-full-coverage",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ],
            stdout=open(node.dir / "redis.log", "wb"),  # noqa: SIM115  (the process owns it)
            stderr=subprocess.STDOUT,
        )

    @staticmethod
    def _wait_ping(node: ClusterNode, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception), node.client() as c:
                if c.ping():
                    return
            if node.proc is not None and node.proc.poll() is not None:
                break
            time.sleep(0.05)
        log = (node.dir / "redis.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"redis-server on {node.name} did not start:\n{log}")

    def live(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def wait_state_ok(self, timeout: float = 20.0) -> None:
        """Every live node agrees that the cluster is up and knows who holds every slot."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = []
            for node in self.live():
                with contextlib.suppress(Exception), node.client() as c:
                    info = c.execute_command("CLUSTER", "INFO")
                    text = info.decode() if isinstance(info, bytes) else str(info)
                    states.append("cluster_state:ok" in text and "cluster_slots_assigned:16384" in text)
            if states and all(states) and len(states) == len(self.live()):
                return
            time.sleep(0.1)
        raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")

    def owner(self, key: str) -> ClusterNode:
        """The node that serves `key`'s slot (read from the cluster itself, not computed)."""
        slot = key_slot(key.encode())
        for node in self.live():
            with contextlib.suppress(Exception), node.client() as c:
                for start, end, primary, *_ in c.execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end:
                        port = int(primary[1])
                        return next(n for n in self.nodes if n.port == port)
        raise RuntimeError(f"no node serves slot {slot}")

    def kill(self, node: ClusterNode) -> None:
        """SIGKILL, as a crash: no goodbye to the other nodes."""
        assert node.proc is not None
        node.proc.kill()
        node.proc.wait(timeout=5)

    def delete_prefix(self, prefix: str) -> None:
        """Each live node's keys under `prefix`, deleted one key at a time (a DEL may not span slots)."""
        for node in self.live():
            with contextlib.suppress(Exception), node.client() as c:
                keys = list(c.scan_iter(match=f"{prefix}:*", count=1000))
                for key in keys:
                    c.delete(key)

    def stop(self) -> None:
        for node in self.nodes:
            stop_process(node.proc, timeout=5)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
