"""Follow-up phrases: what they change, and that ordinary commands are not mistaken for them."""

import pytest

from athena.local.followups import FollowUp, parse


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now turn them off", FollowUp("power", on=False)),
        ("Turn it back on.", FollowUp("power", on=True)),
        ("switch them off please", FollowUp("power", on=False)),
        ("what about the kitchen?", FollowUp("place", place="kitchen")),
        ("What about the Living Room?", FollowUp("place", place="living room")),
        ("and the bedroom too", FollowUp("place", place="bedroom")),
        ("the office too", FollowUp("place", place="office")),
        ("do the same for the office", FollowUp("place", place="office")),
        ("make it brighter", FollowUp("adjust", step=1)),
        ("make them a bit dimmer", FollowUp("adjust", step=-1)),
        ("dim it", FollowUp("adjust", step=-1)),
        ("set it to 30 percent", FollowUp("level", level=30)),
        ("set them to 75%", FollowUp("level", level=75)),
        ("set it to 300 percent", FollowUp("level", level=100)),
    ],
)
def test_english_follow_ups(text, expected):
    assert parse(text, "en-US") == expected


@pytest.mark.parametrize(
    "text",
    [
        "turn on the kitchen lights",
        "what time is it",
        "tell me a joke",
        "and",
        "",
        "set a timer for 5 minutes",
    ],
)
def test_commands_and_chat_are_not_follow_ups(text):
    assert parse(text, "en") is None


def test_german_table():
    assert parse("schalte sie wieder aus", "de-DE") == FollowUp("power", on=False)
    assert parse("Was ist mit der Küche?", "de") == FollowUp("place", place="küche")
    assert parse("mach es heller", "de") == FollowUp("adjust", step=1)
    assert parse("stell es auf 40 Prozent", "de") == FollowUp("level", level=40)


def test_language_without_a_table_has_no_follow_ups():
    assert parse("now turn them off", "ja") is None
