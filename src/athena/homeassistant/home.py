"""A picture of the home: areas, floors, devices and the entities exposed to Assist, in one immutable value.

Recognition runs on every turn and must not wait for HA, so it reads a `Home`; `registry.py` keeps it fresh.
`build_home` assembles one from HA's raw API answers, deciding exposure the way HA does.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


def _fold(text: str) -> str:
    return " ".join(text.casefold().split())


@dataclass(frozen=True, slots=True)
class Entity:
    entity_id: str
    name: str
    aliases: tuple[str, ...] = ()
    area_id: str | None = None
    device_id: str | None = None
    device_class: str | None = None

    @property
    def domain(self) -> str:
        return self.entity_id.split(".", 1)[0]


@dataclass(frozen=True, slots=True)
class Area:
    id: str
    name: str
    aliases: tuple[str, ...] = ()
    floor_id: str | None = None


@dataclass(frozen=True, slots=True)
class Floor:
    id: str
    name: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Home:
    """One consistent snapshot. `entities` holds only what is exposed to Assist."""

    entities: Mapping[str, Entity] = field(default_factory=dict)
    areas: Mapping[str, Area] = field(default_factory=dict)
    floors: Mapping[str, Floor] = field(default_factory=dict)
    device_areas: Mapping[str, str] = field(default_factory=dict)  # device id -> area id
    # any registry entity -> area id (satellites)
    entity_areas: Mapping[str, str] = field(default_factory=dict)
    version: int = 0
    loaded_at: float = 0.0
    _area_names: dict[str, Area] = field(default_factory=dict, init=False, repr=False)
    _floor_names: dict[str, Floor] = field(default_factory=dict, init=False, repr=False)
    _entity_names: dict[str, list[Entity]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        for area in self.areas.values():
            for n in (area.name, *area.aliases):
                self._area_names.setdefault(_fold(n), area)
        for floor in self.floors.values():
            for n in (floor.name, *floor.aliases):
                self._floor_names.setdefault(_fold(n), floor)
        for entity in self.entities.values():
            for n in (entity.name, *entity.aliases):
                self._entity_names.setdefault(_fold(n), []).append(entity)

    @property
    def loaded(self) -> bool:
        return self.version > 0

    def find_area(self, text: str) -> Area | None:
        return self._area_names.get(_fold(text))

    def find_floor(self, text: str) -> Floor | None:
        return self._floor_names.get(_fold(text))

    def find_entities(self, text: str) -> list[Entity]:
        return list(self._entity_names.get(_fold(text), ()))

    def area_of_device(self, device_id: str | None) -> Area | None:
        if not device_id:
            return None
        area_id = self.device_areas.get(device_id)
        return self.areas.get(area_id) if area_id else None

    def area_of_entity(self, entity_id: str | None) -> Area | None:
        if not entity_id:
            return None
        area_id = self.entity_areas.get(entity_id)
        return self.areas.get(area_id) if area_id else None

    def area_of(
        self,
        area_id: str | None = None,
        area: str | None = None,
        device_id: str | None = None,
        satellite_id: str | None = None,
    ) -> Area | None:
        """The room a turn was spoken in: what the caller said (id, then name), else HA's registry."""
        if area_id and area_id in self.areas:
            return self.areas[area_id]
        if area:
            return self.find_area(area) or Area(id="", name=area)
        return self.area_of_device(device_id) or self.area_of_entity(satellite_id)


# HA's defaults for entities nobody has set exposure on (homeassistant/exposed_entities.py).
DEFAULT_EXPOSED_DOMAINS = frozenset(
    {
        "climate",
        "cover",
        "fan",
        "humidifier",
        "light",
        "media_player",
        "scene",
        "switch",
        "todo",
        "vacuum",
        "water_heater",
    }
)
DEFAULT_EXPOSED_DEVICE_CLASSES = {
    "binary_sensor": frozenset({"door", "garage_door", "lock", "motion", "opening", "presence", "window"}),
    "sensor": frozenset(
        {
            "aqi",
            "carbon_monoxide",
            "carbon_dioxide",
            "humidity",
            "pm10",
            "pm25",
            "temperature",
            "volatile_organic_compounds",
        }
    ),
}


def exposed_to_assist(
    states: Iterable[Mapping[str, Any]],
    entities: Iterable[Mapping[str, Any]],
    exposed: Mapping[str, Mapping[str, Any]],
) -> set[str]:
    """Entity ids exposed to Assist, decided as HA does.

    A registry entry's own `options.conversation.should_expose` wins; an entry without one gets HA's default
    (by domain / device class, never hidden or entity-category ones). Entities outside the registry count only
    when HA's exposure list names them. The list needs an admin token; without it, registry options decide.
    """
    registry = {e["entity_id"]: e for e in entities}
    out: set[str] = set()
    for state in states:
        entity_id = state.get("entity_id")
        if not isinstance(entity_id, str):
            continue
        entry = registry.get(entity_id)
        if entry is None:
            if (exposed.get(entity_id) or {}).get("conversation"):
                out.add(entity_id)
            continue
        setting = ((entry.get("options") or {}).get("conversation") or {}).get("should_expose")
        if setting is None:
            if entity_id in exposed:
                setting = bool(exposed[entity_id].get("conversation"))
            elif entry.get("entity_category") or entry.get("hidden_by"):
                setting = False
            else:
                domain = entity_id.split(".", 1)[0]
                device_class = (state.get("attributes") or {}).get("device_class")
                setting = (
                    domain in DEFAULT_EXPOSED_DOMAINS
                    or device_class in DEFAULT_EXPOSED_DEVICE_CLASSES.get(domain, ())
                )
        if setting:
            out.add(entity_id)
    return out


def build_home(
    *,
    states: Iterable[Mapping[str, Any]],
    areas: Iterable[Mapping[str, Any]],
    floors: Iterable[Mapping[str, Any]],
    devices: Iterable[Mapping[str, Any]],
    entities: Iterable[Mapping[str, Any]],
    exposed: Mapping[str, Mapping[str, Any]],
    aliases: Mapping[str, Iterable[str]] | None = None,
    version: int = 1,
) -> Home:
    """Assemble a snapshot from HA's raw API answers (also used by tests and the benchmark)."""
    aliases = aliases or {}
    states = list(states)
    entities = list(entities)
    exposed_ids = exposed_to_assist(states, entities, exposed)
    device_areas = {d["id"]: d["area_id"] for d in devices if d.get("area_id")}
    registry = {e["entity_id"]: e for e in entities}
    entity_areas: dict[str, str] = {}
    for entity_id, entry in registry.items():
        area_id = entry.get("area_id") or device_areas.get(entry.get("device_id") or "")
        if area_id:
            entity_areas[entity_id] = area_id
    home_entities: dict[str, Entity] = {}
    for state in states:
        entity_id = state.get("entity_id")
        if entity_id not in exposed_ids:
            continue
        entry = registry.get(entity_id, {})
        attrs = state.get("attributes") or {}
        name = str(
            attrs.get("friendly_name") or entry.get("name") or entity_id.split(".", 1)[1].replace("_", " ")
        )
        home_entities[entity_id] = Entity(
            entity_id=entity_id,
            name=name.strip(),
            aliases=tuple(a.strip() for a in aliases.get(entity_id, ()) if a and a.strip()),
            area_id=entity_areas.get(entity_id),
            device_id=entry.get("device_id"),
            device_class=attrs.get("device_class"),
        )
    return Home(
        entities=home_entities,
        areas={
            a["area_id"]: Area(
                a["area_id"],
                a["name"],
                tuple(x for x in a.get("aliases") or () if x.strip()),
                a.get("floor_id"),
            )
            for a in areas
        },
        floors={
            f["floor_id"]: Floor(
                f["floor_id"], f["name"], tuple(x for x in f.get("aliases") or () if x.strip())
            )
            for f in floors
        },
        device_areas=device_areas,
        entity_areas=entity_areas,
        version=version,
        loaded_at=time.time(),
    )
