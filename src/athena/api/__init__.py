"""The HTTP layer: wire formats (Home Assistant, OpenAI, health, admin) over the conversation engine."""

from athena.api.app import create_app

__all__ = ["create_app"]
