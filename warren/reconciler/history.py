"""Finished tasks kept per unit for `service ps` (OrchestratorSettings.task_history_per_slot); older
ones are removed.

Two things stretch the limit, because the restart rules read history: a unit with no live task keeps
at least its latest finished task (else a `none` restart policy would see an empty slot and start it
again), and a service with `restart.max_attempts` keeps that many attempts plus one, so the count
that stops the restarts is still there to be counted. A service that mounts volumes keeps a unit's
latest placed task: it says where the unit's volumes are (sticky placement).
"""

from __future__ import annotations

from warren.reconciler.actions import Actions
from warren.reconciler.state import Service
from warren.reconciler.units import Unit


def collect(acts: Actions, service: Service, units: list[Unit]) -> None:
    keep = acts.settings.task_history_per_slot
    max_attempts = service.spec.restart.max_attempts
    if max_attempts > 0:
        keep = max(keep, max_attempts + 1)
    for unit in units:
        # Only tasks that were final in the state read: one finished in this pass is not gone yet.
        finished = [t for t in unit.tasks if t.was_final]
        limit = keep if any(t.live for t in unit.tasks) else max(keep, 1)
        if len(finished) > limit:
            # Newest last (creation order): the oldest go.
            doomed = finished[: len(finished) - limit]
            if service.needs.volumes:
                placed = [t for t in unit.tasks if t.node is not None]
                if placed:
                    doomed = [t for t in doomed if t is not placed[-1]]
            acts.remove(doomed)
