"""A replicated service's units: slots 1..replicas. Tasks in slots above the replica count (a scale
down), tasks without a slot (left from global mode) and duplicates in a slot are stopped here."""

from __future__ import annotations

from warren.reconciler.actions import Actions
from warren.reconciler.state import Service
from warren.reconciler.units import Unit, Units, stop_duplicates


def units(acts: Actions, service: Service) -> Units:
    by_slot: dict[int, Unit] = {}
    modeless = Unit(slot=None, node=None)
    for t in service.tasks:
        if t.slot is None:
            modeless.tasks.append(t)
        else:
            by_slot.setdefault(t.slot, Unit(slot=t.slot, node=None)).tasks.append(t)
    replicas = service.replicas
    result = Units()
    for slot in range(1, replicas + 1):
        unit = by_slot.pop(slot, None) or Unit(slot=slot, node=None)
        stop_duplicates(acts, service, unit)
        result.wanted.append(unit)
    # Highest slots first: if the leader fails midway, the lowest slots are the ones left running.
    for slot in sorted(by_slot, reverse=True):
        unit = by_slot[slot]
        for t in unit.live():
            acts.shut_down(t, "scaled down")
        result.extra.append(unit)
    for t in modeless.live():
        acts.shut_down(t, "service mode changed")
    if modeless.tasks:
        result.extra.append(modeless)
    return result
