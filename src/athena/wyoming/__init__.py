"""Athena as a Wyoming `handle` service: Home Assistant adds it with its built-in Wyoming integration.

protocol.py (bounded event reading, transcript → turn parts, `info`) → server.py (TCP, one connection per
peer, the engine's answers as events) and discovery.py (zeroconf). `start_wyoming(gateway)` runs both for as
long as the gateway lives (the HTTP app's lifespan calls it); it never touches a store.
"""

from __future__ import annotations

from dataclasses import dataclass

from athena.config import Settings, wyoming_networks
from athena.gateway import Gateway, GatewayStartError
from athena.local.catalog import shipped_languages
from athena.wyoming.discovery import Advertisement, default_name
from athena.wyoming.server import WyomingOptions, WyomingServer

__all__ = ["WyomingOptions", "WyomingServer", "WyomingService", "start_wyoming", "wyoming_options"]


def wyoming_options(settings: Settings, *, home_control: bool) -> WyomingOptions | None:
    """The server's slice of the settings; None when ATHENA_WYOMING_PORT is unset."""
    address = settings.wyoming_address
    if address is None:
        return None
    return WyomingOptions(
        host=address[0],
        port=address[1],
        allow=wyoming_networks(settings.wyoming_allow or ""),
        language=settings.wyoming_language,
        languages=tuple(shipped_languages()),
        home_control=home_control,
        max_event_bytes=settings.max_body_bytes,
        max_text_chars=settings.max_text_chars,
    )


@dataclass
class WyomingService:
    server: WyomingServer
    advertisement: Advertisement | None

    async def close(self) -> None:
        if self.advertisement is not None:
            await self.advertisement.close()
        await self.server.close()


async def start_wyoming(gateway: Gateway) -> WyomingService | None:
    """Listen (and advertise) when configured; a port that cannot be had is a GatewayStartError."""
    settings = gateway.settings
    home_control = gateway.local is not None and gateway.local.client is not None
    options = wyoming_options(settings, home_control=home_control)
    if options is None:
        return None
    server = WyomingServer(gateway.engine, options)
    try:
        await server.start()
    except OSError as exc:
        raise GatewayStartError(f"Wyoming cannot listen on {options.host}:{options.port}: {exc}") from exc
    advertisement = None
    if settings.wyoming_zeroconf:
        host, port = server.address
        advertisement = Advertisement(settings.wyoming_zeroconf_name or default_name(), host, port)
        advertisement.start()
    return WyomingService(server, advertisement)
