"""schemathesis against a real gateway process, with the document that gateway serves (issue 12).

Every operation of /openapi.json gets a bounded number of generated requests (valid and invalid): no answer
is a 500, every status code and content type is one the document lists, every JSON answer fits its schema,
and an endpoint that needs the token refuses a request without it. Behind the gateway: the fake LLM in a
process of its own, so the gateway's turns reach a real HTTP upstream.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import checks

from athena.api.openapi import document
from tests.support.gateway import REPO, GatewayProcess, free_port

EXAMPLES = int(os.environ.get("ATHENA_TEST_SCHEMATHESIS_EXAMPLES", "25"))
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.ignored_auth,
]


@pytest.fixture(scope="module")
def fake_llm_process() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_llm", "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # "fake-llm listening on ..."
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def gateway_process(fake_llm_process: str) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(
        {
            "ATHENA_LLM_URL": fake_llm_process + "/v1",
            "ATHENA_LLM_MODEL": "fake-model",
            "ATHENA_LOG_LEVEL": "WARNING",
        }
    )
    with gw:
        yield gw


# The document the gateway serves (test_openapi.py checks /openapi.json is exactly this one), loaded up front:
# schemathesis' lazy `from_fixture` does not run under pytest 9.2 (it sets `node._nodeid`).
schema = schemathesis.openapi.from_dict(document())


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_the_api_holds_to_its_document(case: schemathesis.Case, gateway_process: GatewayProcess) -> None:
    case.call_and_validate(
        base_url=gateway_process.url,
        headers={"Authorization": f"Bearer {gateway_process.token}"},
        checks=CHECKS,
    )


def test_the_run_sent_valid_and_invalid_requests(gateway_process: GatewayProcess) -> None:
    """Runs after the schemathesis test (same module, same gateway): its requests, by status, in /metrics."""
    status, text = gateway_process.request("GET", "/metrics")
    assert status == 200 and isinstance(text, str)
    by_status: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("athena_http_requests_total{"):
            labels, value = line.rsplit(" ", 1)
            code = labels.split('status="')[1].split('"')[0]
            by_status[code] = by_status.get(code, 0) + float(value)
    assert "500" not in by_status
    assert by_status.get("200", 0) > 50  # valid requests answered
    assert by_status.get("401", 0) > 0 and (by_status.get("422", 0) + by_status.get("400", 0)) > 20
