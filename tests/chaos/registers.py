"""The compare-and-set workload (warren.testing.workload) run through a chaos run, and its verdicts."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from warren.pki.userconfig import ClientCredentials
from warren.testing import workload
from warren.testing.workload import History

EXPLAIN_LINES = 30  # of an illegal sub-history, the last ones, in the report


@dataclass
class Verdicts:
    counts: dict[str, int] = field(default_factory=dict)
    summary: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    ok_times: list[float] = field(default_factory=list)


class Registers:
    """Runs the workload's clients in a thread from `__enter__` to `__exit__`; then `verdicts()`."""

    def __init__(self, managers: Sequence[str], credentials: ClientCredentials, seed: int) -> None:
        self.managers, self.credentials, self.seed = list(managers), credentials, seed
        self._stop = threading.Event()
        self._history: History | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="chaos-registers", daemon=True)

    def _run(self) -> None:
        try:
            self._history = workload.run(self.managers, self.credentials, seed=self.seed,
                                         duration_s=24 * 3600.0, stop=self._stop)  # fmt: skip
        except BaseException as exc:  # reported by verdicts(): the run must not hide it
            self._error = exc

    def __enter__(self) -> Registers:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def verdicts(self) -> Verdicts:
        """Linearizability of the consistent reads and compare-and-sets, default reads without phantoms,
        and the final state (read now, consistently) explained by the history."""
        v = Verdicts()
        if self._error is not None or self._history is None:
            v.problems.append(f"the register workload did not run: {self._error!r}")
            return v
        history = self._history
        for (kind, outcome), n in sorted(history.counts().items()):
            v.counts[f"{kind}_{outcome}"] = n
        v.counts["cas_conflicts"] = history.conflicts()
        v.ok_times = [r.complete for r in history.records if r.outcome == "ok" and r.kind != "read"]
        result = history.check()
        v.summary["registers"] = f"{history.summary()}; linearizable: {result.verdict}"
        if not result.ok:
            v.problems.append(f"register history {result.verdict}:\n"
                              f"{result.explain(origin=history.origin, limit=EXPLAIN_LINES)}")
        reads = workload.default_reads(history)
        v.summary["default_reads"] = f"{reads.answered} answered, {reads.stale} stale (allowed), " \
                                     f"{len(reads.phantoms)} phantoms"
        v.problems += [f"default read of a value never written: {r}" for r in reads.phantoms[:10]]
        final = workload.final_state(self.managers, self.credentials, workload.WorkloadSettings())
        present = workload.acknowledged_writes_present(history, final)
        v.summary["acknowledged_cas"] = f"final state explained: {present.result.verdict}"
        if present.result.verdict == "unknown":  # the search's budget ran out: nothing is proven lost
            v.problems.append(f"final state not decided (checker budget): final {dict(present.final)}")
        elif not present.ok:
            v.problems.append(f"acknowledged compare-and-set lost: last acknowledged "
                              f"{dict(present.last_acknowledged)}, final {dict(present.final)}")
        return v
