"""HA's response templates rendered with the variables HA's own agent provides."""

import pytest

from athena.local.catalog import IntentCatalog
from athena.local.speech import TemplateState, needs_states, render


@pytest.fixture(scope="module")
def en():
    return IntentCatalog().get("en")


def test_turn_on_default_uses_the_domain(en):
    template = en.response("HassTurnOn", "default")
    assert not needs_states(template)
    assert render(template, {}, [TemplateState({"entity_id": "light.kitchen"})]) == "Turned on the light"


def test_yes_no_question_uses_matched_states(en):
    template = en.response("HassGetState", "one_yesno")
    assert needs_states(template)
    closed = TemplateState({"entity_id": "cover.kitchen_window", "state": "closed"})
    assert render(template, {"state": "open"}, [closed], matched=[], unmatched=[closed]) == "No, closed"
    opened = TemplateState({"entity_id": "cover.kitchen_window", "state": "open"})
    assert render(template, {"state": "open"}, [opened], matched=[opened]) == "Yes"


def test_state_with_unit_and_name(en):
    template = en.response("HassGetState", "one")
    temp = TemplateState(
        {
            "entity_id": "sensor.t",
            "state": "15.6",
            "attributes": {"unit_of_measurement": "°C", "friendly_name": "Outside"},
        }
    )
    assert render(template, {"name": "outside"}, [temp]) == "Outside is 15.6 °C"


def test_time_speech_slot_from_iso_string(en):
    template = en.response("HassGetCurrentTime", "default")
    assert render(template, {}, speech_slots={"time": "13:05:09.1234"}) == "1:05 PM"


def test_unknown_key_falls_back_to_default(en):
    assert en.response("HassTurnOff", "no-such-key") == en.response("HassTurnOff", "default")


def test_sandbox_refuses_unsafe_templates():
    with pytest.raises(ValueError):
        render("{{ ''.__class__.__mro__[1].__subclasses__() }}", {})


def test_only_iso_looking_speech_slots_become_times():
    assert render("{{ slots.count }}", {}, speech_slots={"count": "21"}) == "21"
    assert render("{{ slots.date.year }}", {}, speech_slots={"date": "2026-11-25"}) == "2026"
