"""`python -m benches compare OLD.json NEW.json [--threshold PCT] [--alpha P]`: what got slower.

For every row key present in both files (a run's bench-<timestamp>.json or a latest.json), compare p50,
and also max for failover and recovery rows, throughput for concurrent rows and the value of quantity
rows (MB). A change is a regression (or an improvement) only if it is larger than the threshold AND
beyond noise: with raw samples on both sides, a Mann-Whitney U test on the samples for p50 and a tail
test for max (benches/stats.py) must give p < alpha; without samples the threshold alone decides.
A row that now fails with an error counts as a regression. Rows a latest.json carried from an earlier
run are compared as what they are, and marked; a row both files carried from the same run is "same run".

Exit status: 0 no regression, 1 at least one regression, 2 bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benches.report import EMPTY, number, text_grid
from benches.stats import Test, mann_whitney, tail_test
from benches.targets import Row, is_recovery


@dataclass(frozen=True)
class CompareParams:
    threshold: float = 0.10  # smallest change that counts; fraction of the old value
    alpha: float = 0.05  # a change is beyond noise when its test's p is below this; probability


PARAMS = CompareParams()
REGRESSION = "regression"


class BadInput(Exception):
    """A file that is not a readable benchmark result."""


@dataclass(frozen=True)
class Side:
    row: Row
    origin: str  # timestamp of the run that measured it
    carried: bool  # kept in a latest.json from an earlier run


@dataclass(frozen=True)
class Change:
    key: str
    field: str
    old: float | None
    new: float | None
    verdict: str  # regression / improvement / same / noise / same run / n/a / error / fixed
    test: str  # how the verdict was reached
    carried: bool = False

    @property
    def relative(self) -> float | None:
        if self.old is None or self.new is None or self.old == 0:
            return None
        return (self.new - self.old) / abs(self.old)


def load(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise BadInput(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("scenarios"), dict):
        raise BadInput(f"{path} is not a benchmark result (no 'scenarios' object)")
    return data


def indexed(run: dict[str, Any]) -> dict[str, Side]:
    """Row key → the row and the run that measured it."""
    out: dict[str, Side] = {}
    for scenario in run["scenarios"].values():
        if not isinstance(scenario, dict):
            continue
        carried = scenario.get("carried_from")
        origin = str(carried.get("timestamp") if isinstance(carried, dict) else run.get("timestamp"))
        for row in scenario.get("rows", []):
            if isinstance(row, dict) and "key" in row:
                out[row["key"]] = Side(row, origin, carried is not None)
    return out


def _unit(field: str) -> str:
    return field.replace("_ms", " ms").replace("_per_s", " /s").replace("_mb", " MB").replace("_pct", " %")


def fields(key: str, old: Row, new: Row) -> list[str]:
    """What to compare for a row present on both sides."""
    compared = ("p50_ms", "max_ms", "throughput_per_s", "value_mb", "value_pct")
    both = [f for f in compared if f in old and f in new]
    chosen: list[str] = [f for f in both if f in ("p50_ms", "value_mb", "value_pct")]
    if is_recovery(key) and "max_ms" in both:
        chosen.append("max_ms")
    if key.endswith("/concurrent") and "throughput_per_s" in both:
        chosen.append("throughput_per_s")
    return chosen


def judge(key: str, field: str, old: Side, new: Side, params: CompareParams) -> Change:
    a, b = old.row.get(field), new.row.get(field)
    carried = old.carried or new.carried
    if a is None or b is None:
        return Change(key, field, a, b, "n/a", "a side has no number", carried)
    if old.origin == new.origin:  # e.g. a latest.json carried it from the run it is compared with
        return Change(key, field, a, b, "same run", f"both from run {old.origin}", carried)
    higher_is_better = field == "throughput_per_s"
    worse = b < a if higher_is_better else b > a
    relative = (b - a) / abs(a) if a else (0.0 if b == a else float("inf"))
    if abs(relative) <= params.threshold:
        return Change(key, field, a, b, "same", f"within {params.threshold:.0%}", carried)
    direction = 1 if b > a else -1
    test = _test(field, old.row, new.row)
    if test is None:
        verdict = REGRESSION if worse else "improvement"
        return Change(key, field, a, b, verdict, "threshold only (no raw samples)", carried)
    if test.p >= params.alpha or test.direction != direction:
        return Change(key, field, a, b, "noise", test.name, carried)
    return Change(key, field, a, b, REGRESSION if worse else "improvement", test.name, carried)


def _test(field: str, old: Row, new: Row) -> Test | None:
    x, y = old.get("samples_ms"), new.get("samples_ms")
    if not x or not y:
        return None
    if field == "p50_ms":
        return mann_whitney(x, y)
    if field == "max_ms":
        return tail_test(x, y)
    return None


def compare(old: dict[str, Any], new: dict[str, Any], params: CompareParams = PARAMS) -> list[Change]:
    """One Change per compared number, in the new file's row order."""
    before, after = indexed(old), indexed(new)
    changes: list[Change] = []
    for key, now in after.items():
        then = before.get(key)
        if then is None:
            continue
        carried = then.carried or now.carried
        if now.row.get("error") or then.row.get("error"):
            if not then.row.get("error"):
                changes.append(
                    Change(key, "—", None, None, REGRESSION, f"error: {now.row['error']}", carried)
                )
            elif not now.row.get("error"):
                changes.append(Change(key, "—", None, None, "fixed", "the old run had an error", carried))
            else:
                changes.append(Change(key, "—", None, None, "error", "both runs had an error", carried))
            continue
        changes += [judge(key, f, then, now, params) for f in fields(key, then.row, now.row)]
    return changes


def render(changes: list[Change], old: dict[str, Any], new: dict[str, Any], names: tuple[str, str]) -> str:
    def describe(label: str, name: str, run: dict[str, Any]) -> str:
        m = run.get("machine") or {}
        commit = str(m.get("git_commit") or "?")[:12]
        return f"{label}  {name}: run {run.get('timestamp')}, commit {commit}"

    lines = [describe("OLD", names[0], old), describe("NEW", names[1], new), ""]
    body = []
    for c in changes:
        rel = c.relative
        body.append(
            [
                c.key + (" *" if c.carried else ""),
                _unit(c.field),
                EMPTY if c.old is None else number(c.field, c.old),
                EMPTY if c.new is None else number(c.field, c.new),
                EMPTY if rel is None else f"{rel:+.1%}",
                c.verdict,
                c.test,
            ]
        )
    lines += text_grid(["row", "metric", "old", "new", "change", "verdict", "test"], body)
    if any(c.carried for c in changes):
        lines += ["", "* carried in a latest.json from an earlier run (see that file's report)"]
    before, after = indexed(old), indexed(new)
    for label, mine, theirs in (("OLD", before, after), ("NEW", after, before)):
        only = [k for k in mine if k not in theirs]
        if only:
            lines.append(f"only in {label}: {', '.join(only)}")
    counts = {v: sum(1 for c in changes if c.verdict == v) for v in dict.fromkeys(c.verdict for c in changes)}
    lines += ["", ", ".join(f"{n} {v}" for v, n in counts.items()) or "no row in both files"]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    """argv: the arguments after `compare`."""
    first_line = (__doc__ or "").splitlines()[0]
    p = argparse.ArgumentParser(prog="python -m benches compare", description=first_line)
    p.add_argument("old", type=Path, help="the earlier result (bench-<timestamp>.json or latest.json)")
    p.add_argument("new", type=Path, help="the later result")
    p.add_argument("--threshold", type=float, default=100 * PARAMS.threshold, help="percent (default 10)")
    p.add_argument("--alpha", type=float, default=PARAMS.alpha, help="significance level (default 0.05)")
    try:
        args = p.parse_args(argv)
        if args.threshold < 0 or not 0 < args.alpha < 1:
            p.error("--threshold must be ≥ 0 and --alpha between 0 and 1")
    except SystemExit as exc:  # argparse has printed the usage error (or --help)
        return int(exc.code or 0)
    try:
        old, new = load(args.old), load(args.new)
    except BadInput as exc:
        sys.stderr.write(f"compare: {exc}\n")
        return 2
    changes = compare(old, new, CompareParams(threshold=args.threshold / 100, alpha=args.alpha))
    sys.stdout.write(render(changes, old, new, (str(args.old), str(args.new))))
    return 1 if any(c.verdict == REGRESSION for c in changes) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
