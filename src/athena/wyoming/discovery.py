"""Zeroconf: advertise `_wyoming._tcp.local.` so Home Assistant offers to add Athena by itself.

HA's Wyoming integration lists that service type in its manifest: a discovered Athena shows up under
Settings → Devices & services as "Discovered", and one click adds it. Advertising runs in the background and
a failure (no multicast on this network) is logged, never fatal: the server works without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket

import structlog
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from athena.tasks import cancel_and_wait

log = structlog.get_logger("athena.wyoming")

SERVICE_TYPE = "_wyoming._tcp.local."
_MDNS_GROUP = "224.0.0.251"
_WILDCARDS = ("", "0.0.0.0", "::")


def default_name() -> str:
    """athena-<hostname>: stable across restarts, so HA knows it again (its unique id is built on it)."""
    host = re.sub(r"[^A-Za-z0-9-]+", "-", socket.gethostname().split(".")[0]).strip("-") or "host"
    return f"athena-{host}"[:63]


def lan_address() -> str:
    """The address this host reaches the mDNS group from (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((_MDNS_GROUP, 1))
        return str(probe.getsockname()[0])


class Advertisement:
    """`await Advertisement(name, host, port).start()` … `await close()`. A wildcard `host` advertises the
    LAN address on every interface; a given host, that address on its own interface only."""

    def __init__(self, name: str, host: str, port: int) -> None:
        self.name = name
        self.host = host
        self.port = port
        self._zc: AsyncZeroconf | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._register(), name="athena-zeroconf")

    async def wait_registered(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _register(self) -> None:
        try:
            if self.host in _WILDCARDS:
                address, self._zc = lan_address(), AsyncZeroconf(ip_version=IPVersion.V4Only)
            else:
                address = self.host
                self._zc = AsyncZeroconf(interfaces=[address], ip_version=IPVersion.V4Only)
            info = AsyncServiceInfo(
                SERVICE_TYPE,
                f"{self.name}.{SERVICE_TYPE}",
                addresses=[socket.inet_aton(address)],
                port=self.port,
                server=f"{self.name}.local.",
            )
            await self._zc.async_register_service(info, allow_name_change=True)
        except Exception as exc:  # no multicast, an IPv6-only host: Athena still serves, without discovery
            log.warning("wyoming.zeroconf_failed", error=str(exc) or type(exc).__name__)
            return
        log.info("wyoming.zeroconf", service=info.name, address=f"{address}:{self.port}")

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        if self._zc is not None:
            with contextlib.suppress(Exception):
                await self._zc.async_unregister_all_services()
            await self._zc.async_close()
            self._zc = None
