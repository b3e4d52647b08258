"""The worker's table of its containers: found by task without a scan of them all, in the order they
were first seen, and forgotten whole."""

from __future__ import annotations

from warren.worker.containers import Container, Containers


def box(task_id: str, container_id: str, running: bool = True) -> Container:
    return Container(task_id, container_id, "process", running)


def test_a_tasks_containers_are_found_in_the_order_they_were_first_seen() -> None:
    table = Containers()
    table.put(box("t1", "c1"))
    table.put(box("t2", "c2"))
    table.started(box("t1", "c3"))
    assert [c.container_id for c in table.of_task("t1")] == ["c1", "c3"]
    assert table.of_task("nope") == []
    assert table.task_ids() == {"t1", "t2"}
    # Seen again (an exit event): replaced in place, its place kept.
    table.put(box("t1", "c1", running=False))
    assert [(c.container_id, c.running) for c in table.of_task("t1")] == [("c1", False), ("c3", True)]
    assert table.running_count() == 2


def test_started_keeps_an_entry_an_exit_made_first() -> None:
    table = Containers()
    table.put(box("t1", "c1", running=False))  # the exit event came before start() returned
    table.started(box("t1", "c1"))
    assert [c.running for c in table.of_task("t1")] == [False]


def test_dropped_containers_leave_their_task() -> None:
    table = Containers()
    table.put(box("t1", "c1"))
    table.put(box("t1", "c2"))
    table.drop("c1")
    assert [c.container_id for c in table.of_task("t1")] == ["c2"]
    table.drop("c2")
    table.drop("c2")  # twice: nothing
    assert table.of_task("t1") == [] and table.task_ids() == set() and not table
    # A container ID seen again under another task (not expected; kept consistent) moves.
    table.put(box("t1", "c9"))
    table.put(box("t2", "c9"))
    assert table.of_task("t1") == [] and [c.task_id for c in table.of_task("t2")] == ["t2"]
    assert len(table) == 1
