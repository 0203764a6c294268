"""Every LLM failure has a metric label made at start (athena_llm_errors_total) and a spoken failure."""

from __future__ import annotations

import athena.llm.base as base
from athena.engine.engine import failure_of
from athena.llm.http import ERROR_KINDS


def test_every_llm_error_has_a_prepared_label_and_a_failure() -> None:
    classes = [c for c in vars(base).values() if isinstance(c, type) and issubclass(c, base.LLMError)]
    assert len(classes) >= 7
    assert {c.kind for c in classes} == set(ERROR_KINDS)
    assert failure_of(base.LLMTimeout("slow")) == "llm_timeout"
    assert failure_of(base.LLMWrongEndpoint("404", 404)) == "llm_misconfigured"
    assert failure_of(base.LLMModelMissing("no model", 404)) == "llm_model_missing"
    assert failure_of(base.LLMUnreachable("refused")) == "llm_error"
    assert failure_of(base.LLMContextOverflow("too long", 400)) == "llm_error"
