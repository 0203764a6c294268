"""The local path tried before the LLM: Home Assistant's own sentences (hassil), executed by HA, with
follow-ups from the session's memory; and the "start over" phrases the engine acts on.

planner (what to run) → execute (HA runs it; speech renders the answer) → handler (a turn); path (life cycle).
"""

from athena.local.path import LocalPath

__all__ = ["LocalPath"]
