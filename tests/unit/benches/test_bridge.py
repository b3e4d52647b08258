"""The `bridge` scenario: both implementations fed the same batches, rows with raw numbers, a breakdown."""

from __future__ import annotations

from pathlib import Path

from benches import bridge


def test_the_smoke_run_times_every_implementation_there_is(tmp_path: Path) -> None:
    result = bridge.run(tmp_path, bridge.BridgeParams.smoke())

    assert result["status"] == "ok"
    rows = {r["key"]: r for r in result["rows"]}
    assert set(rows) == {
        f"bridge/{kind}/{impl}" for kind in ("apply", "loop") for impl in ("python", "cython")
    }
    for impl in ("python", "cython"):
        if impl == "cython" and bridge._compiled()[0] is None:  # measured whenever built, whatever the env
            assert rows["bridge/apply/cython"]["skipped"]
            continue
        for kind in ("apply", "loop"):
            row = rows[f"bridge/{kind}/{impl}"]
            assert len(row["samples_ms"]) == bridge.BridgeParams.smoke().rounds
            assert row["throughput_per_s"] > 0 and row["ns_per_entry"] > 0
    breakdown = result["results"]["breakdown"]
    assert {"sql", "decode"} <= set(breakdown["share_pct"])
    assert result["results"]["components_ns"]["savepoint_release"] > 0


def test_every_batch_is_valid_again_on_the_state_the_last_left() -> None:
    params = bridge.BridgeParams.smoke()
    assert len(bridge.payloads(params, 0)) == params.batch
    assert bridge.payloads(params, 0) != bridge.payloads(params, 1)  # a new round, new messages
