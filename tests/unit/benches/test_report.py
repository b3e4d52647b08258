"""The benchmark report's pure parts: targets met / missed / absent, Warren-to-peer ratios, the markdown
and JSON files, and the plots (drawn into tmp_path)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from benches import plots, report, targets

MACHINE = {
    "nproc": 2,
    "usable_cpus": 2,
    "cpu_model": "Test CPU",
    "memory": "24684084 kB",
    "python": "3.11.7",
    "platform": "Linux-6.1-x86_64",
    "kernel": "6.1.0",
    "docker_version": "20.10.24",
    "data_dir_fs": "ext4",
    "git_commit": "0123456789abcdef",
    "git_dirty": False,
    "warren_raft_version": "0.1.0",
}


def samples(median_ms: float, n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [round(median_ms * rng.lognormvariate(0, 0.2), 3) for _ in range(n)]


def row(key: str, **fields: Any) -> dict[str, Any]:
    return {"key": key, "scenario": key.split("/")[0], "what": f"what {key}", "event": "a → b", **fields}


def sampled_row(key: str, median_ms: float, n: int = 20, seed: int = 1) -> dict[str, Any]:
    s = samples(median_ms, n, seed)
    ordered = sorted(s)
    return row(
        key, trials=n, p50_ms=ordered[(n - 1) // 2], p99_ms=ordered[-1], max_ms=ordered[-1], samples_ms=s
    )


def judged(*rows: dict[str, Any]) -> dict[str, dict[str, Any]]:
    targets.apply_targets(list(rows))
    return {r["key"]: r for r in rows}


def a_run(scenarios: dict[str, Any], timestamp: str = "20260101T000000Z") -> dict[str, Any]:
    return {"timestamp": timestamp, "argv": [], "machine": MACHINE, "scenarios": scenarios}


# -- targets ----------------------------------------------------------------------------------------


def test_leader_failover_is_met_when_fast_and_ahead_of_every_sigkill_etcd_row() -> None:
    rows = judged(
        row("leader_failover/sigkill", p50_ms=500.0, max_ms=900.0),
        row("etcd/3/failover-default", p50_ms=1400.0, max_ms=2500.0),
        row("etcd/3/failover-et500", p50_ms=600.0, max_ms=2400.0),
        row("etcd/3/failover-sigstop", p50_ms=100.0, max_ms=200.0),  # not a SIGKILL row: not compared
    )
    mine = rows["leader_failover/sigkill"]
    assert mine["verdict"] == "met"
    assert "failover-et500" in mine["target_note"] and "sigstop" not in mine["target_note"]


def test_leader_failover_misses_when_etcd_has_the_lower_max() -> None:
    rows = judged(
        row("leader_failover/sigkill", p50_ms=500.0, max_ms=900.0),
        row("etcd/3/failover-et500", p50_ms=600.0, max_ms=800.0),
    )
    assert rows["leader_failover/sigkill"]["verdict"] == "missed"


def test_without_etcd_only_the_absolute_half_is_checked_and_said() -> None:
    rows = judged(row("leader_failover/sigkill", p50_ms=500.0, max_ms=900.0))
    assert rows["leader_failover/sigkill"]["verdict"] == "met"
    assert "only the absolute half" in rows["leader_failover/sigkill"]["target_note"]
    assert judged(row("containers/create-20", p50_ms=3000.0))["containers/create-20"]["verdict"] == "n/a"


@pytest.mark.parametrize(
    ("key", "fields", "verdict"),
    [
        ("commit_latency/3/sequential", {"p50_ms": 0.9}, "met"),
        ("commit_latency/3/sequential", {"p50_ms": 1.1}, "missed"),
        ("leader_failover/graceful", {"p50_ms": 40.0, "max_ms": 99.0}, "met"),
        ("leader_failover/graceful", {"p50_ms": 40.0, "max_ms": 150.0}, "missed"),
        ("leader_failover/graceful", {"p50_ms": 60.0, "max_ms": 99.0}, "missed"),
        ("failover/3", {"p50_ms": 500.0, "max_ms": 1200.0}, "missed"),
        ("schedule/1000", {"p50_ms": 20_000.0, "max_ms": 29_000.0}, "met"),
        ("schedule/1000", {"p50_ms": 20_000.0, "max_ms": 29_000.0, "failed_trials": 1}, "missed"),
        ("worker_failure/process", {"max_ms": 16_000.0}, "missed"),
        ("rss/manager", {"value_mb": 69.0}, "met"),
        ("rss/manager", {"value_mb": 71.0}, "missed"),
        ("rss/worker", {"value_mb": 41.0}, "missed"),
        ("cpu/manager", {"value_pct": 0.4}, "met"),
        ("cpu/worker", {"value_pct": 0.6}, "missed"),
        ("rss/worker", {}, "n/a"),
        ("containers/crash", {"error": "HarnessError: no engine"}, "missed (error)"),
    ],
)
def test_targets_judge_their_rows(key: str, fields: dict[str, Any], verdict: str) -> None:
    assert judged(row(key, **fields))[key]["verdict"] == verdict


def test_schedule_4000_is_judged_on_its_time_and_on_time_per_replica_staying_flat() -> None:
    def sizes(per_4000: float, max_4000: float = 8_000.0) -> dict[str, dict[str, Any]]:
        return judged(
            row("schedule/250", p50_ms=500.0, max_ms=500.0, per_replica_ms=2.0),
            row("schedule/1000", p50_ms=2_200.0, max_ms=2_200.0, per_replica_ms=2.2),
            row("schedule/4000", p50_ms=4000 * per_4000, max_ms=max_4000, per_replica_ms=per_4000),
        )

    flat = sizes(2.5)["schedule/4000"]
    assert flat["verdict"] == "met"
    assert "per replica vs 250: 1000 1.10×, 4000 1.25×" in flat["target_note"]
    assert sizes(2.7)["schedule/4000"]["verdict"] == "missed"  # 1.35× the 250 row's
    # Cheaper per replica as the service grows: the create's fixed costs spread wider, not a miss.
    assert sizes(1.3)["schedule/4000"]["verdict"] == "met"
    assert sizes(2.0, max_4000=12_500.0)["schedule/4000"]["verdict"] == "missed"
    alone = judged(row("schedule/4000", p50_ms=8_000.0, max_ms=8_000.0, per_replica_ms=2.0))["schedule/4000"]
    assert alone["verdict"] == "n/a" and "fewer than two sizes" in alone["target_note"]


def test_api_write_target_is_judged_against_etcd_plain_and_mutual_tls() -> None:
    def leader(etcd_plain: float, etcd_mtls: float) -> dict[str, Any]:
        return judged(
            row("manager_api/3/leader", p50_ms=1.2, p99_ms=3.0),
            row("etcd/3/leader", p50_ms=etcd_plain),
            row("etcd/3-mtls/leader", p50_ms=etcd_mtls),
        )["manager_api/3/leader"]

    met = leader(1.3, 1.5)
    assert met["verdict"] == "met"
    assert "etcd/3/leader" in met["target_note"] and "etcd/3-mtls/leader" in met["target_note"]
    assert leader(1.3, 1.1)["verdict"] == "missed"  # slower than the mutual-TLS etcd alone
    assert leader(1.1, 1.5)["verdict"] == "missed"  # slower than the plain etcd alone


def test_etcd_mutual_tls_rows_are_paired_with_warren_and_with_plain_etcd() -> None:
    rows = [
        row("manager_api/3/leader", p50_ms=2.0, p99_ms=4.0, max_ms=9.0),
        row("etcd/3/leader", p50_ms=1.0, p99_ms=2.0, max_ms=3.0),
        row("etcd/3-mtls/leader", p50_ms=1.25, p99_ms=2.5, max_ms=6.0),
    ]
    by_pair = {(r.warren, r.peer, r.field): r for r in targets.ratios(rows)}
    assert by_pair[("manager_api/3/leader", "etcd/3-mtls/leader", "p50_ms")].ratio == pytest.approx(1.6)
    assert by_pair[("etcd/3-mtls/leader", "etcd/3/leader", "p50_ms")].ratio == pytest.approx(1.25)
    assert by_pair[("manager_api/3/follower", "etcd/3-mtls/follower", "p50_ms")].missing


def test_rows_without_a_target_or_absent_rows_get_no_verdict_and_stale_marks_go() -> None:
    targets.apply_targets([])
    rows = judged(
        row("follower_loss/gap", p50_ms=5.0),
        row("schedule/100", p50_ms=400.0, target="old text", verdict="met", target_note="old"),
    )
    for r in rows.values():
        assert "verdict" not in r and "target" not in r and "target_note" not in r


@pytest.mark.parametrize(("follower_p50", "verdict"), [(2.4, "met"), (2.6, "missed")])
def test_a_forwarded_write_is_judged_against_the_leader_of_the_same_run(
    follower_p50: float, verdict: str
) -> None:
    # Both under the absolute 3 ms: only "the leader's + 1 ms" decides.
    rows = judged(
        row("manager_api/3/leader", p50_ms=1.5, p99_ms=3.0),
        row("manager_api/3/follower", p50_ms=follower_p50),
    )
    assert rows["manager_api/3/follower"]["verdict"] == verdict
    assert "over manager_api/3/leader" in rows["manager_api/3/follower"]["target_note"]
    alone = judged(row("manager_api/3/follower", p50_ms=1.0))["manager_api/3/follower"]
    assert alone["verdict"] == "n/a" and "no manager_api/3/leader" in alone["target_note"]


def test_graceful_target_says_why_it_judges_the_worst_trial() -> None:
    note = judged(row("leader_failover/graceful", max_ms=50.0))["leader_failover/graceful"]["target_note"]
    assert "every trial" in note


# -- ratios -----------------------------------------------------------------------------------------


def test_ratios_are_warren_over_peer_with_direction_and_missing_pairs_named() -> None:
    rows = [
        row("containers/crash", p50_ms=300.0, max_ms=400.0),
        row("swarm/crash-default", p50_ms=6000.0, max_ms=8000.0),
        row("commit_latency/3/concurrent", throughput_per_s=20_000.0),
        row("pysyncobj/3/concurrent", throughput_per_s=10_000.0),
    ]
    by_pair = {(r.warren, r.peer, r.field): r for r in targets.ratios(rows)}
    crash = by_pair[("containers/crash", "swarm/crash-default", "p50_ms")]
    assert crash.ratio == pytest.approx(0.05) and crash.warren_ahead
    throughput = by_pair[("commit_latency/3/concurrent", "pysyncobj/3/concurrent", "throughput_per_s")]
    assert throughput.ratio == pytest.approx(2.0) and throughput.warren_ahead and throughput.higher_is_better
    delay0 = by_pair[("containers/crash", "swarm/crash-delay0", "p50_ms")]
    assert delay0.ratio is None and delay0.missing == "not measured: swarm/crash-delay0"


# -- markdown, text, files --------------------------------------------------------------------------


def full_run() -> dict[str, Any]:
    return a_run(
        {
            "leader_failover": {
                "status": "ok",
                "config": {"trials": 20},
                "rows": [
                    sampled_row("leader_failover/sigkill", 500),
                    sampled_row("leader_failover/graceful", 40),
                ],
            },
            "etcd": {"status": "ok", "rows": [sampled_row("etcd/3/failover-default", 1400, seed=2)]},
            "commit_latency": {
                "status": "ok",
                "rows": [sampled_row("commit_latency/3/sequential", 1.1, n=200)],
            },
            "rss": {"status": "ok", "rows": [row("rss/manager", value_mb=61.25)]},
            "swarm": {"status": "missing", "reason": "no Docker Engine"},
        }
    )


def test_markdown_has_machine_tables_ratios_images_and_notes() -> None:
    run = full_run()
    targets.apply_targets(targets.rows_of(run))
    text = report.markdown(run, [Path("out/failover-times.png"), Path("out/commit-latency-cdf.png")])
    assert "Test CPU · 2 cores · 23.5 GiB RAM · Linux 6.1.0 · Python 3.11.7 · Docker 20.10.24" in text
    assert (
        "| row | what | from→to event | trials | p50 ms | p99 ms | max ms | value | target | verdict |"
        in text
    )
    assert "| rss/manager |" in text and "61.2 MB" in text and "≤ 70 MB | met |" in text
    assert "| swarm | missing: no Docker Engine |" in text
    assert "| leader_failover/sigkill | etcd/3/failover-default | p50 ms (lower is better) |" in text
    assert "not measured: etcd/3/failover-et500" in text
    assert "![Failover and recovery times per scenario](failover-times.png)" in text
    assert "![Commit and write latency CDF](commit-latency-cdf.png)" in text
    assert "- leader_failover/graceful: " in text  # the target's reasoning, in the notes


def test_markdown_says_why_there_are_no_plots_and_renders_rows_without_samples() -> None:
    run = a_run(
        {"failover": {"status": "ok", "rows": [row("failover/3", trials=20, p50_ms=513.2, max_ms=628.0)]}}
    )
    text = report.markdown(run, [], "Plots not drawn: matplotlib is not installed.")
    assert "Plots not drawn: matplotlib is not installed." in text
    assert "| failover/3 | what failover/3 | a → b | 20 | 513.2 | 628.0 |" in text
    assert "not in the plots (no raw samples in these results): failover/3" in text
    assert "Warren ÷ peer" in report.text_table(run)


def test_dumps_keeps_each_sample_list_on_one_line_and_loads_back() -> None:
    run = full_run()
    text = report.dumps(run)
    assert json.loads(text) == run
    line = next(ln for ln in text.splitlines() if '"samples_ms"' in ln)
    assert line.strip().startswith('"samples_ms": [') and line.rstrip().rstrip(",").endswith("]")


def test_write_carries_earlier_scenarios_and_retires_replaced_ones(tmp_path: Path) -> None:
    first = a_run(
        {
            "client_failover": {
                "status": "ok",
                "rows": [row("client_failover/3", p50_ms=566.0, max_ms=623.0)],
            },
            "schedule": {"status": "ok", "rows": [row("schedule/100", p50_ms=481.0)]},
        },
        timestamp="20260101T000000Z",
    )
    report.write(first, tmp_path)
    path = report.write(full_run() | {"timestamp": "20260102T000000Z"}, tmp_path)
    assert path == tmp_path / "bench-20260102T000000Z.json"
    latest = json.loads((tmp_path / "latest.json").read_text())
    assert "client_failover" not in latest["scenarios"]  # leader_failover replaced it
    assert latest["scenarios"]["schedule"]["carried_from"]["timestamp"] == "20260101T000000Z"
    md = (tmp_path / "latest.md").read_text()
    assert "- schedule: run 20260101T000000Z" in md
    for name in (plots.RECOVERY_FILE, plots.CDF_FILE):
        if plots.unavailable() is None:
            assert (tmp_path / name).read_bytes().startswith(b"\x89PNG") and f"]({name})" in md
    assert "verdict" in json.loads(path.read_text())["scenarios"]["leader_failover"]["rows"][0]


# -- plots ------------------------------------------------------------------------------------------


def test_plots_draw_pngs_for_sampled_rows_and_skip_empty_ones(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    written = plots.write(full_run(), tmp_path)
    assert [p.name for p in written] == [plots.RECOVERY_FILE, plots.CDF_FILE]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in written)
    no_samples = a_run({"failover": {"status": "ok", "rows": [row("failover/3", p50_ms=500.0)]}})
    assert plots.write(no_samples, tmp_path) == []
    assert not (tmp_path / plots.RECOVERY_FILE).exists()  # the stale picture went with its data


def test_report_main_redraws_latest_from_its_json_and_exits_2_without_one(tmp_path: Path) -> None:
    old_format = a_run(
        {"failover": {"status": "ok", "rows": [row("failover/3", p50_ms=513.2, max_ms=628.0)]}}
    )
    (tmp_path / "latest.json").write_text(json.dumps(old_format))
    assert report.main([str(tmp_path)]) == 0
    assert "| failover/3 |" in (tmp_path / "latest.md").read_text()
    assert (
        json.loads((tmp_path / "latest.json").read_text())["scenarios"]["failover"]["rows"][0]["verdict"]
        == "met"
    )
    assert report.main([str(tmp_path / "nowhere")]) == 2
