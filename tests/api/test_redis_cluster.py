"""A real Redis Cluster behind a real gateway, and one node killed mid-test (issue 12).

The nodes run with `cluster-require-full-coverage no`: devices whose slots live on the other nodes keep
working, devices on the lost slots hear "can't reach my memory", readiness says the store is degraded, and
nothing the surviving nodes hold is corrupted. The node that holds the expiry index is the one killed: the
index is auxiliary, so losing it must not cost the other devices their turns.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from athena.engine.engine import SPOKEN_ERRORS
from tests.api.conftest import GatewayFactory, LiveGateway
from tests.support.redis_cluster import LocalCluster

DEVICES = [f"satellite-{i}" for i in range(24)]


@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    """A cluster of its own: this test kills one of its nodes."""
    with LocalCluster() as c:
        yield c


async def test_info_names_the_cluster(gateway_factory: GatewayFactory, cluster: LocalCluster) -> None:
    gw = await gateway_factory(store_url=f"{cluster.url}?prefix=athena-info")
    assert (await gw.client.get("/athena/info")).json()["store"] == "redis-cluster"
    assert (await gw.client.get("/health/ready")).json() == {"status": "ready"}
    await gw.converse("hello", device_id="kitchen")
    assert (await gw.session("kitchen")) is not None


async def converse_all(gw: LiveGateway, text: str) -> dict[str, dict[str, object]]:
    bodies = await asyncio.gather(*(gw.converse(f"{text} from {d}", device_id=d) for d in DEVICES))
    return dict(zip(DEVICES, bodies, strict=True))


async def test_a_node_killed_mid_test(gateway_factory: GatewayFactory, cluster: LocalCluster) -> None:
    prefix = f"athena-kill-{uuid.uuid4().hex[:8]}"
    gw = await gateway_factory(store_url=f"{cluster.url}?prefix={prefix}")
    assert gw.core.probe is not None
    gw.core.probe.ttl = 0
    victim = cluster.owner(f"{prefix}:expiry")
    lost = [d for d in DEVICES if cluster.owner(f"{prefix}:{{{d}}}:session") == victim]
    kept = [d for d in DEVICES if d not in lost]
    assert lost and kept, "the devices must span the victim and the other nodes"

    for round_ in ("first", "second"):
        for device, body in (await converse_all(gw, round_)).items():
            assert body["response"]["response_type"] == "query_answer", (device, body)  # type: ignore[index]
    ids = {d: (await gw.session(d))["id"] for d in DEVICES}  # type: ignore[index]
    failures = await gw.metric("athena_turn_failures_total", reason="store")

    cluster.kill(victim)

    after = await converse_all(gw, "third")
    for device in kept:
        assert after[device]["response"]["response_type"] == "query_answer", (device, after[device])  # type: ignore[index]
        assert after[device]["conversation_id"] == ids[device]  # the same session went on
    for device in lost:
        response = after[device]["response"]
        assert response["response_type"] == "error"  # type: ignore[index]
        assert response["speech"]["plain"]["speech"] == SPOKEN_ERRORS["en"]["store"]
    assert await gw.metric("athena_turn_failures_total", reason="store") == failures + len(lost)

    # Nothing the surviving nodes hold is corrupted: every turn of every kept device, in order.
    for device in kept:
        session = await gw.session(device)
        assert session is not None and session["id"] == ids[device] and session["turns"] == 3
        contents = [m["content"] for m in session["messages"]]
        assert contents == [
            text
            for round_ in ("first", "second", "third")
            for text in (f"{round_} from {device}", f"Reply to: {round_} from {device}")
        ]

    # Readiness: still ready (the kept devices are served), and it says which part is missing.
    ready = await gw.client.get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "degraded"
    assert f"1 of 3 nodes of the Redis Cluster do not answer ({victim.name})" in ready.json()["reason"]
    summary = (await gw.client.get("/health")).json()
    assert summary["store"]["ok"] is True and "degraded" in summary["store"]

    # An OpenAI client on a lost slot gets the store's 503; on a kept one, its answer.
    resp = await gw.client.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}]},
        headers={"X-Athena-Device": lost[0]},
    )
    assert resp.status_code == 503 and resp.json()["error"]["code"] == "store_unavailable"
    resp = await gw.client.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}]},
        headers={"X-Athena-Device": kept[0]},
    )
    assert resp.status_code == 200
