"""A global service's units: one per eligible node (ready, active, with the service's driver, matching
its constraints, allowing its host access). Tasks on nodes that are no longer eligible, tasks with a
slot (left from replicated mode) and tasks that could not be placed on their node are stopped here."""

from __future__ import annotations

from warren.reconciler.actions import Actions
from warren.reconciler.state import Service
from warren.reconciler.units import Unit, Units, stop_duplicates
from warren.scheduler.placement import static_rejection


def units(acts: Actions, service: Service) -> Units:
    by_node: dict[str, Unit] = {}
    stray = Unit(slot=None, node=None)
    for t in service.tasks:
        if t.slot is not None:
            if t.live:
                acts.shut_down(t, "service mode changed")
            stray.tasks.append(t)
        elif t.node is None:
            # Created for a node that became unavailable before the task was committed.
            if t.live:
                acts.shut_down(t, "its node is no longer available")
            stray.tasks.append(t)
        else:
            by_node.setdefault(t.node, Unit(slot=None, node=t.node)).tasks.append(t)
    request = service.request()
    result = Units()
    for name, node in acts.state.nodes.items():
        unit = by_node.pop(name, None) or Unit(slot=None, node=name)
        why = static_rejection(node, request)
        if why is None:
            stop_duplicates(acts, service, unit)
            result.wanted.append(unit)
            continue
        for t in unit.live():
            acts.shut_down(t, f"node {name} {why.singular}")
        if unit.tasks:
            result.extra.append(unit)
    # Nodes that no longer exist: their tasks were failed already; only history is left.
    result.extra.extend(by_node[name] for name in sorted(by_node))
    if stray.tasks:
        result.extra.append(stray)
    return result
