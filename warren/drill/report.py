"""What the drill reports: one result per step, the verdict, and the machine-readable document.

Pure functions of the results, so the wording is tested without a cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

StepStatus = Literal["passed", "failed", "skipped"]

# The six steps of the seed's "Test Failover Regularly" checklist, as the drill titles them.
STEP_TITLES = (
    "Cluster started",
    "New leader elected",
    "Services kept running",
    "Writes succeed",
    "Failed manager restarted",
    "Manager rejoined",
)
PASSED_MARK, FAILED_MARK, SKIPPED_MARK = "✓", "✗", "-"


@dataclass(frozen=True, slots=True)
class StepResult:
    """One step: `message` says what was seen (passed) or why it failed or was skipped."""

    number: int  # 1-based, as in STEP_TITLES
    status: StepStatus
    message: str
    duration_s: float | None = None  # None for a skipped step
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return STEP_TITLES[self.number - 1]

    def to_doc(self) -> dict[str, Any]:
        return {
            "step": self.number,
            "title": self.title,
            "status": self.status,
            "message": self.message,
            "duration_ms": None if self.duration_s is None else round(self.duration_s * 1000, 1),
            "details": dict(self.details),
        }


def format_duration(seconds: float) -> str:
    """"412 ms" below a second, else "4.8 s" (the drill's timings are rarely above a minute)."""
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    return f"{seconds:.1f} s"


def format_step(step: StepResult) -> str:
    """`✓ New leader elected: manager2 ... (412 ms)`, `✗ ...: why (after 30.0 s)`, `- ...: skipped (why)`."""
    if step.status == "skipped":
        return f"{SKIPPED_MARK} {step.title}: skipped ({step.message})"
    took = "" if step.duration_s is None else format_duration(step.duration_s)
    if step.status == "passed":
        return f"{PASSED_MARK} {step.title}: {step.message}" + (f" ({took})" if took else "")
    return f"{FAILED_MARK} {step.title}: {step.message}" + (f" (after {took})" if took else "")


def passed(steps: Sequence[StepResult]) -> bool:
    """Every step of the checklist ran and passed."""
    return len(steps) == len(STEP_TITLES) and all(s.status == "passed" for s in steps)


def verdict(steps: Sequence[StepResult], total_s: float) -> str:
    """`Drill passed: 6/6 steps in 4.8 s` or `Drill FAILED: ...` naming the failed and skipped steps."""
    total = len(STEP_TITLES)
    ok = sum(1 for s in steps if s.status == "passed")
    took = format_duration(total_s)
    if passed(steps):
        return f"Drill passed: {ok}/{total} steps in {took}"
    failed = [s for s in steps if s.status == "failed"]
    skipped = [s.number for s in steps if s.status == "skipped"]
    skipped += list(range(len(steps) + 1, total + 1))  # never reached (interrupted)
    parts = [f"{ok}/{total} steps passed"]
    if failed:
        parts.append(_numbered("failed", [s.number for s in failed]) + " (" +
                     "; ".join(f"{s.title.lower()}: {s.message}" for s in failed) + ")")
    if skipped:
        parts.append(_numbered("skipped", skipped))
    return f"Drill FAILED: {', '.join(parts)}, in {took}"


def _numbered(what: str, numbers: Sequence[int]) -> str:
    label = "step" if len(numbers) == 1 else "steps"
    return f"{label} {', '.join(str(n) for n in numbers)} {what}"


@dataclass(frozen=True, slots=True)
class DrillResult:
    """The whole run: its steps, timing, and where it ran (for `-o json` and `--keep`)."""

    steps: tuple[StepResult, ...]
    duration_s: float
    settings: Mapping[str, Any]
    data_dir: str
    kept: bool  # the data dir and logs are still there
    processes: tuple[Mapping[str, Any], ...]  # {"label", "role", "pids", "log"}
    task_pids: tuple[int, ...]  # process-runtime task processes seen during the drill

    @property
    def passed(self) -> bool:
        return passed(self.steps)

    @property
    def verdict(self) -> str:
        return verdict(self.steps, self.duration_s)

    @property
    def pids(self) -> list[int]:
        """Every process the drill started: daemons (each incarnation) and task processes."""
        out = [pid for p in self.processes for pid in p.get("pids", ())]
        return out + [pid for pid in self.task_pids if pid not in out]

    def to_doc(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "verdict": self.verdict,
            "duration_s": round(self.duration_s, 3),
            "steps": [s.to_doc() for s in self.steps],
            "settings": dict(self.settings),
            "data_dir": self.data_dir,
            "kept": self.kept,
            "processes": [dict(p) for p in self.processes],
            "pids": self.pids,
        }
