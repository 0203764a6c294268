"""The per-turn pipeline (engine.py), the session key rule (keys.py) and the prompt (prompt.py)."""

from athena.engine.engine import Engine, LocalHandler, RelayFailed, TurnRun, failure_of, wants_follow_up
from athena.engine.prompt import PromptSettings

__all__ = [
    "Engine",
    "LocalHandler",
    "PromptSettings",
    "RelayFailed",
    "TurnRun",
    "failure_of",
    "wants_follow_up",
]
