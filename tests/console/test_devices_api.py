"""The operator API behind the console, against a real gateway (in-process, real HTTP) over the fake LLM:
devices and their run-time settings, the device policy, failed turns, export, deletion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from athena.records import MessageMeta
from tests.api.conftest import GatewayFactory, LiveGateway, llm_messages, make_settings, serve
from tests.stores.support import delete_prefix, require_redis
from tests.support.fake_llm import FakeLLM


async def put(gw: LiveGateway, device: str, body: Any) -> tuple[int, Any]:
    resp = await gw.client.put(f"/athena/devices/{device}", json=body)
    return resp.status_code, resp.json()


async def devices(gw: LiveGateway) -> dict[str, Any]:
    resp = await gw.client.get("/athena/devices")
    assert resp.status_code == 200, resp.text
    return resp.json()


async def test_a_device_appears_after_its_first_turn(gateway: LiveGateway) -> None:
    assert (await devices(gateway)) == {"policy": "open", "devices": []}
    before = gateway.clock()
    await gateway.converse("hello", device_id="a1b2c3", device_name="Kitchen Display", area="Kitchen")
    await gateway.converse("again", device_id="a1b2c3")
    await gateway.converse("no device here", conversation_id="abc")  # not a device: not listed
    [d] = (await devices(gateway))["devices"]
    assert (d["id"], d["name"], d["area"], d["turns"], d["status"]) == (
        "a1b2c3",
        "Kitchen Display",
        "Kitchen",
        2,
        "allowed",
    )
    assert before <= d["first_seen"] <= d["last_seen"] <= gateway.clock()
    assert d["session"]["turns"] == 2 and d["settings"] == {} and d["effective"]["timeout"] == 300
    # By HA name, any case: the same device.
    resp = await gateway.client.get("/athena/devices/kitchen%20DISPLAY")
    assert resp.status_code == 200 and resp.json()["id"] == "a1b2c3" and resp.json()["past"] == []


async def test_a_changed_timeout_applies_from_the_next_turn(gateway: LiveGateway) -> None:
    first = await gateway.converse("hello", device_id="office")
    status, body = await put(gateway, "office", {"timeout": 60})
    assert status == 200 and body["settings"] == {"timeout": 60.0} and body["effective"]["timeout"] == 60.0
    assert body["session"]["timeout"] == 300  # the live session keeps its deadline until its next turn
    second = await gateway.converse("still there?", device_id="office")
    assert second["conversation_id"] == first["conversation_id"]
    assert (await gateway.session("office"))["timeout"] == 60  # type: ignore[index]
    gateway.clock.advance(61)
    third = await gateway.converse("and now?", device_id="office")
    assert third["conversation_id"] != first["conversation_id"]  # 61 s of silence ended it
    past = (await gateway.client.get("/athena/devices/office")).json()["past"]
    assert [(p["id"], p["ended_reason"], p["turns"]) for p in past] == [
        (first["conversation_id"], "timeout", 2)
    ]
    # null clears it: back to the global value.
    status, body = await put(gateway, "office", {"timeout": None})
    assert status == 200 and body["settings"] == {} and body["effective"]["timeout"] == 300


async def test_history_prompt_and_language_shape_the_next_turn(
    gateway: LiveGateway, fake_llm: FakeLLM
) -> None:
    for text in ("one", "two", "three"):
        await gateway.converse(text, device_id="office")
    status, _ = await put(
        gateway, "office", {"history": 2, "system_prompt": "Talk like a pirate.", "language": "de"}
    )
    assert status == 200
    await gateway.converse("vier", device_id="office")
    sent = llm_messages(fake_llm)
    # Two messages of history, then this turn (which carries where and when it was said in front).
    assert [m["content"] for m in sent[1:3]] == ["three", "Reply to: three"] and len(sent) == 4
    assert sent[3]["content"].endswith("\nvier")
    assert "Talk like a pirate." in sent[0]["content"] and "'de'" in sent[0]["content"]
    # German "start over" now works for this device, whatever language the turn says it is in.
    reset = await gateway.converse("neues Gespräch", device_id="office", language="en")
    assert reset["response"]["speech"]["plain"]["speech"] == "Okay, wir fangen von vorne an."


async def test_settings_are_validated_precisely(gateway: LiveGateway) -> None:
    await gateway.converse("hello", device_id="office", device_name="Desk")
    cases = [
        ({"timeout": -5}, "timeout"),
        ({"timeout": "600"}, "timeout"),
        ({"history": 5000}, "history"),
        ({"language": "not a language"}, "language"),
        ({"status": "maybe"}, "status"),
        ({"colour": "red"}, "colour"),
        ({}, "at least one"),
    ]
    for body, named in cases:
        status, answer = await put(gateway, "office", body)
        assert status == 422, body
        assert named in answer["error"]["message"]
    resp = await gateway.client.put(
        "/athena/devices/office", content=b"{", headers={"content-type": "application/json"}
    )
    assert resp.status_code == 400
    assert (await gateway.client.get("/athena/devices/Nobody%20Here")).status_code == 404
    assert (await put(gateway, "Nobody Here", {"timeout": 5}))[0] == 404  # a name nobody has, not an id
    status, body = await put(gateway, "new-satellite", {"timeout": 90})  # an id before its first turn
    assert status == 200 and body["first_seen"] is None and body["turns"] == 0
    await gateway.converse("hi", device_id="other", device_name="desk")
    resp = await gateway.client.get("/athena/devices/DESK")
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "ambiguous_device"
    assert (
        await gateway.client.get("/athena/devices", headers={"Authorization": "Bearer nope"})
    ).status_code == 401


async def test_known_policy_refuses_until_allowed(gateway_factory: GatewayFactory, fake_llm: FakeLLM) -> None:
    gw = await gateway_factory(device_policy="known", devices={"trusted": {"status": "allowed"}})
    refused = await gw.converse("turn on the lights", device_id="porch", device_name="Porch Speaker")
    assert refused["response"]["response_type"] == "error"
    assert (
        refused["response"]["speech"]["plain"]["speech"]
        == "Sorry, this device is not allowed to talk to me yet."
    )
    assert fake_llm.requests == [] and await gw.session("porch") is None
    ok = await gw.converse("hello", device_id="trusted")  # allowed by ATHENA_DEVICES
    assert ok["response"]["response_type"] == "query_answer"
    listed = {d["id"]: d for d in (await devices(gw))["devices"]}
    assert listed["porch"]["status"] == "pending" and listed["porch"]["refused"] == 1
    assert listed["porch"]["name"] == "Porch Speaker"
    resp = await gw.client.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}]},
        headers={"X-Athena-Device": "porch"},
    )
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "device_not_allowed"
    status, body = await put(gw, "porch", {"status": "allowed"})
    assert status == 200 and body["status"] == "allowed"
    served = await gw.converse("hello again", device_id="porch")
    assert served["response"]["speech"]["plain"]["speech"] == "Reply to: hello again"
    await put(gw, "porch", {"status": "blocked"})
    blocked = await gw.converse("hello?", device_id="porch")
    assert blocked["response"]["speech"]["plain"]["speech"] == "Sorry, this device is blocked."


async def test_a_failed_turn_is_kept_for_the_operator_but_not_sent_to_the_llm(
    gateway: LiveGateway, fake_llm: FakeLLM
) -> None:
    await gateway.converse("first question", device_id="office")
    fake_llm.configure(status=500)
    failed = await gateway.converse("second question", device_id="office")
    assert failed["response"]["response_type"] == "error"
    fake_llm.configure(status=None)
    await gateway.converse("third question", device_id="office")
    sent = [m["content"] for m in llm_messages(fake_llm)[1:]]
    assert sent[:2] == ["first question", "Reply to: first question"] and len(sent) == 3
    assert sent[2].endswith("\nthird question")
    messages = (await gateway.session("office"))["messages"]  # type: ignore[index]
    paths = [(m["role"], MessageMeta.from_dict(m["meta"]).path) for m in messages]
    assert paths == [
        ("user", None),
        ("assistant", "llm"),
        ("user", "error"),
        ("assistant", "error"),
        ("user", None),
        ("assistant", "llm"),
    ]
    assert messages[3]["meta"]["error"].startswith("llm_error: ")


async def test_export_the_live_or_a_past_session(gateway: LiveGateway) -> None:
    first = await gateway.converse("hello <b>there</b>", device_id="kitchen/display")
    resp = await gateway.client.get("/athena/sessions/kitchen/display/export")
    assert resp.status_code == 200
    assert resp.headers["content-disposition"] == (
        f'attachment; filename="athena-kitchen_display-{first["conversation_id"]}.json"'
    )
    body = resp.json()
    assert body["session"]["id"] == first["conversation_id"] and body["session"]["live"] is True
    assert [m["content"] for m in body["messages"]] == ["hello <b>there</b>", "Reply to: hello <b>there</b>"]
    assert body["device"]["id"] == "kitchen/display"
    await gateway.client.delete("/athena/sessions/kitchen/display")  # "end session" from the console
    assert (await gateway.client.get("/athena/sessions/kitchen/display/export")).status_code == 404
    past = await gateway.client.get(
        f"/athena/sessions/kitchen/display/export?session={first['conversation_id']}"
    )
    assert past.status_code == 200 and past.json()["session"]["ended_reason"] == "cleared"
    assert len(past.json()["messages"]) == 2
    assert (
        await gateway.client.get("/athena/sessions/kitchen/display/export?session=nope")
    ).status_code == 404


async def test_a_devices_data_can_be_deleted(gateway: LiveGateway) -> None:
    await gateway.converse("hello", device_id="office")
    await gateway.converse("start over", device_id="office")
    await put(gateway, "office", {"timeout": 30})
    resp = await gateway.client.delete("/athena/devices/office")
    assert resp.status_code == 200 and resp.json() == {"deleted": True, "device": "office"}
    assert (await devices(gateway))["devices"] == [] and await gateway.session("office") is None
    stats = (await gateway.client.get("/athena/stats")).json()
    assert stats["totals"]["turns"] == 0
    assert (await gateway.client.delete("/athena/devices/office")).status_code == 404


async def test_a_setting_written_through_one_gateway_is_used_by_another_on_the_same_redis(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    redis_url = await require_redis()
    prefix = "athena-test-replicas"
    await delete_prefix(prefix)
    url = f"{redis_url}?prefix={prefix}"
    settings = make_settings(tmp_path, store_url=url, llm_url=fake_llm.url + "/v1")
    try:
        async with serve(settings) as one, serve(settings) as two:
            first = await two.converse("hello", device_id="office")  # `two` has seen the device: cached
            assert (await put(one, "office", {"timeout": 45, "system_prompt": "Be brief."}))[0] == 200
            again = await two.converse("still?", device_id="office")  # the very next turn, on `two`
            assert again["conversation_id"] == first["conversation_id"]
            assert (await two.session("office"))["timeout"] == 45  # type: ignore[index]
            assert "Be brief." in llm_messages(fake_llm)[0]["content"]
            assert (await put(one, "office", {"status": "blocked"}))[0] == 200
            blocked = await two.converse("hello?", device_id="office")
            assert blocked["response"]["speech"]["plain"]["speech"] == "Sorry, this device is blocked."
    finally:
        await delete_prefix(prefix)


@pytest.mark.parametrize("kind", ["sqlite"])
async def test_settings_survive_a_restart(tmp_path: Path, fake_llm: FakeLLM, kind: str) -> None:
    settings = make_settings(
        tmp_path, store_url=f"sqlite:///{tmp_path / 'athena.db'}", llm_url=fake_llm.url + "/v1"
    )
    async with serve(settings) as gw:
        await gw.converse("hello", device_id="office", device_name="Office")
        assert (await put(gw, "Office", {"timeout": 42}))[0] == 200
    async with serve(settings) as gw:
        [d] = (await devices(gw))["devices"]
        assert d["settings"] == {"timeout": 42.0} and d["name"] == "Office"
        await gw.converse("back again", device_id="office")
        assert (await gw.session("office"))["timeout"] == 42  # type: ignore[index]


async def test_stats_parameters_are_checked(gateway: LiveGateway) -> None:
    await gateway.converse("hello", device_id="office")
    ok = await gateway.client.get("/athena/stats", params={"since": "2020-01-01", "device": "office"})
    assert ok.status_code == 200 and ok.json()["totals"]["turns"] == 1
    for params, named in (
        ({"since": "yesterday"}, "since"),
        ({"since": "2030-01-02", "until": "2030-01-01"}, "since"),
        ({"device": "bad id"}, "device"),
    ):
        resp = await gateway.client.get("/athena/stats", params=params)
        assert resp.status_code == 422 and named in resp.json()["error"]["message"], params
