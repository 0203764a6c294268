"""Fixtures: one real hass process per test session (tests/support/hass.py)."""

from tests.support.hass import hass_home, hass_process

__all__ = ["hass_home", "hass_process"]
