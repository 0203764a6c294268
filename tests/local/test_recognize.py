"""Recognition against a home snapshot: names with their domain, the device's area, exposure respected."""

import pytest

from athena.homeassistant import build_home
from athena.local.catalog import IntentCatalog
from athena.local.recognize import Recognizer
from tests.support.recorded_ha import make_home


@pytest.fixture(scope="module")
def en():
    return IntentCatalog().warm("en")


def test_named_entity(en):
    home = build_home(**make_home(40))
    found = Recognizer().recognize("Turn on the Kitchen Lights!", en, home)
    assert found is not None and found.intent == "HassTurnOn"
    assert found.slots == {"name": "Kitchen Lights"} and found.domain == "light"


def test_device_area_fills_in_the_room(en):
    home = build_home(**make_home(40))
    found = Recognizer().recognize("turn off the lights", en, home, area_name="Bedroom")
    assert found is not None and found.intent == "HassTurnOff"
    assert found.slots == {"area": "Bedroom", "domain": "light"} and found.response_key == "lights_area"
    assert (
        Recognizer().recognize("turn off the lights in the office", en, home, "Bedroom").slots["area"]
        == "Office"
    )


def test_unknown_sentence_and_unknown_name(en):
    home = build_home(**make_home(40))
    rec = Recognizer()
    assert rec.recognize("tell me a joke about owls", en, home) is None
    assert rec.recognize("turn on the spaceship", en, home) is None


def test_unexposed_entity_is_not_a_name(en):
    raw = make_home(40)
    del raw["exposed"]["light.kitchen_lights"]  # HA's list names only exposed entities
    entry = next(e for e in raw["entities"] if e["entity_id"] == "light.kitchen_lights")
    entry["options"] = {"conversation": {"should_expose": False}}
    home = build_home(**raw)
    assert "light.kitchen_lights" not in home.entities
    found = Recognizer().recognize("turn on the kitchen lights", en, home)
    # Still a sentence HA knows ("the lights in the kitchen"), but no longer naming the hidden entity.
    assert found is not None and "name" not in found.slots and found.slots["area"] == "Kitchen"


def test_slot_lists_are_rebuilt_per_snapshot(en):
    rec = Recognizer()
    small = build_home(**make_home(5))
    assert "name" not in rec.recognize("turn on the garage lights", en, small).slots  # not among 5 entities
    bigger = build_home(**make_home(60), version=small.version + 1)
    assert rec.recognize("turn on the garage lights", en, bigger).slots == {"name": "Garage Lights"}


def test_device_and_satellite_areas():
    home = build_home(**make_home(10))
    assert home.area_of_device("satellite-kitchen").name == "Kitchen"
    assert home.area_of_device("nope") is None
    assert home.find_area("LIVING room").id == "living_room"


def test_exposure_follows_home_assistants_rules():
    from athena.homeassistant.home import exposed_to_assist

    states = [
        {"entity_id": e, "attributes": attrs}
        for e, attrs in [
            ("light.a", {}),  # default-exposed domain
            ("light.hidden", {}),
            ("light.off", {}),  # explicitly unexposed
            ("lock.front", {}),  # not exposed by default
            ("lock.opted_in", {}),
            ("sensor.temp", {"device_class": "temperature"}),
            ("sensor.power", {"device_class": "power"}),
            ("switch.yaml_only", {}),  # no registry entry: only HA's list decides
            ("switch.yaml_listed", {}),
        ]
    ]
    entities = [
        {"entity_id": "light.a"},
        {"entity_id": "light.hidden", "hidden_by": "user"},
        {"entity_id": "light.off", "options": {"conversation": {"should_expose": False}}},
        {"entity_id": "lock.front"},
        {"entity_id": "lock.opted_in", "options": {"conversation": {"should_expose": True}}},
        {"entity_id": "sensor.temp"},
        {"entity_id": "sensor.power"},
    ]
    exposed = {"switch.yaml_listed": {"conversation": True}}
    assert exposed_to_assist(states, entities, exposed) == {
        "light.a",
        "lock.opted_in",
        "sensor.temp",
        "switch.yaml_listed",
    }
