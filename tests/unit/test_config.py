"""RaftSettings defaults and validation, conversion to the core's Config, ManagerSettings, and
WorkerSettings' ingress fields."""

from __future__ import annotations

import dataclasses
import math
from types import ModuleType

import pytest

from warren.config import ManagerSettings, RaftSettings, WorkerSettings
from warren.errors import ConfigError, WarrenError
from warren.formats import MIB


def test_defaults_are_valid_and_documented_values() -> None:
    settings = RaftSettings()
    settings.validate()
    assert settings.heartbeat_interval_s == 0.05
    assert (settings.election_timeout_min_s, settings.election_timeout_max_s) == (0.15, 0.30)
    assert settings.snapshot_threshold == 10_000
    assert settings.max_in_snapshot_log_to_keep == 1_000
    assert settings.max_entry_bytes == MIB == 1_048_576
    assert settings.rpc_timeout_s == 1.0


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        RaftSettings().heartbeat_interval_s = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"heartbeat_interval_s": 0.15}, "heartbeat_interval_s"),  # == election min
        ({"heartbeat_interval_s": 0.2}, "heartbeat_interval_s"),  # > election min
        ({"election_timeout_min_s": 0.3}, "election_timeout_min_s"),  # == max
        ({"election_timeout_min_s": 0.4}, "election_timeout_min_s"),  # > max
        ({"heartbeat_interval_s": 0.0}, "heartbeat_interval_s"),
        ({"heartbeat_interval_s": -0.05}, "heartbeat_interval_s"),
        ({"heartbeat_interval_s": 0.0004}, "heartbeat_interval_s"),  # rounds to 0 ms at the core
        ({"election_timeout_max_s": math.nan}, "election_timeout_max_s"),
        ({"election_timeout_max_s": math.inf}, "election_timeout_max_s"),
        ({"rpc_timeout_s": 0.0}, "rpc_timeout_s"),
        ({"snapshot_threshold": 0}, "snapshot_threshold"),
        ({"max_entry_bytes": -1}, "max_entry_bytes"),
        ({"max_in_snapshot_log_to_keep": -1}, "max_in_snapshot_log_to_keep"),
        # Distinct in seconds, equal once converted to whole milliseconds.
        ({"election_timeout_min_s": 0.2001, "election_timeout_max_s": 0.2004}, "election_timeout_min_s"),
    ],
)
def test_validate_rejects_impossible_values(changes: dict[str, float], field: str) -> None:
    settings = dataclasses.replace(RaftSettings(), **changes)
    with pytest.raises(ConfigError, match=field) as info:
        settings.validate()
    assert isinstance(info.value, WarrenError)


def test_validate_accepts_keeping_no_log_behind_snapshot() -> None:
    RaftSettings(max_in_snapshot_log_to_keep=0).validate()


def test_to_core_validates_before_touching_the_core() -> None:
    # Raised by Warren's own validate(), whether or not warren_raft is importable.
    with pytest.raises(ConfigError, match="heartbeat_interval_s"):
        RaftSettings(heartbeat_interval_s=1.0).to_core()


def test_to_core_converts_seconds_to_milliseconds(raft: ModuleType) -> None:
    settings = RaftSettings(
        heartbeat_interval_s=0.1,
        election_timeout_min_s=0.5,
        election_timeout_max_s=1.25,
        snapshot_threshold=500,
        max_in_snapshot_log_to_keep=0,
        max_entry_bytes=4096,
        rpc_timeout_s=2.5,
    )
    core = settings.to_core()
    assert isinstance(core, raft.Config)
    assert core.heartbeat_interval_ms == 100
    assert core.election_timeout_min_ms == 500
    assert core.election_timeout_max_ms == 1250
    assert core.snapshot_threshold == 500
    assert core.max_in_snapshot_log_to_keep == 0
    assert core.max_entry_bytes == 4096
    assert core.rpc_timeout_ms == 2500


def test_to_core_passes_every_value_the_core_takes(raft: ModuleType) -> None:
    # Each default lives once, in RaftSettings: the core gets every value from it, none from its own
    # Default. A field the core grows without a RaftSettings counterpart fails here.
    settings = RaftSettings(
        heartbeat_interval_s=0.07,
        election_timeout_min_s=0.31,
        election_timeout_max_s=0.77,
        snapshot_threshold=123,
        max_in_snapshot_log_to_keep=45,
        max_entry_bytes=3 * MIB,
        max_payload_entries=17,
        max_frame_bytes=9 * MIB,
        rpc_timeout_s=1.9,
    )
    core = settings.to_core()
    core_fields = {name for name in dir(core) if not name.startswith("_")}
    expected = {
        "heartbeat_interval_ms": 70,
        "election_timeout_min_ms": 310,
        "election_timeout_max_ms": 770,
        "snapshot_threshold": 123,
        "max_in_snapshot_log_to_keep": 45,
        "max_entry_bytes": 3 * MIB,
        "max_payload_entries": 17,
        "max_frame_bytes": 9 * MIB,
        "rpc_timeout_ms": 1900,
    }
    assert core_fields == set(expected)
    assert {name: getattr(core, name) for name in expected} == expected
    defaults = raft.Config()
    for name in expected:  # each value above differs from the core's default, so none came from it
        assert expected[name] != getattr(defaults, name), name


def test_advertised_addresses_default_from_the_listen_address() -> None:
    s = ManagerSettings(listen_addr="0.0.0.0:8081")
    assert s.api_advertise == "127.0.0.1:8081"
    assert s.raft_advertise == "127.0.0.1:7946"
    s = ManagerSettings(listen_addr="0.0.0.0:8081", advertise_addr="10.1.2.3:9000")
    assert (s.api_advertise, s.raft_advertise) == ("10.1.2.3:9000", "10.1.2.3:7946")
    assert ManagerSettings(raft_addr="10.1.2.3:7000").raft_advertise == "10.1.2.3:7000"


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"listen_addr": "nope"}, "listen_addr"),
        ({"write_timeout_s": 0.0}, "write_timeout_s"),
        ({"probe_timeout_s": float("nan")}, "probe_timeout_s"),
        ({"ready_apply_lag": -1}, "ready_apply_lag"),
        ({"max_request_bytes": 0}, "max_request_bytes"),
    ],
)
def test_manager_settings_validate(changes: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        ManagerSettings(**changes).validate()  # type: ignore[arg-type]
    ManagerSettings().validate()


def test_the_guides_timers_give_the_default_settings() -> None:
    # Same effective timers as before the flags meant the guide's timers: failover benches do not move.
    assert RaftSettings.from_timeouts() == RaftSettings()
    assert RaftSettings.from_timeouts(0.15, 0.15) == RaftSettings()
    assert (RaftSettings().heartbeat_timeout_s, RaftSettings().election_timeout_s) == (0.15, 0.15)


@pytest.mark.parametrize(
    ("heartbeat", "election", "expected"),
    [
        (1.0, 1.0, (0.333, 1.0, 2.0)),  # the guide's WAN example
        (1.0, None, (0.333, 1.0, 2.0)),  # the spread defaults to the heartbeat timeout
        (None, 0.5, (0.05, 0.15, 0.65)),  # the heartbeat timeout keeps its default
        (0.5, 2.0, (0.167, 0.5, 2.5)),
        (0.003, 0.003, (0.001, 0.003, 0.006)),  # the smallest the core can count
    ],
)
def test_from_timeouts_derives_the_cores_timers(
    heartbeat: float | None, election: float | None, expected: tuple[float, float, float]
) -> None:
    settings = RaftSettings.from_timeouts(heartbeat, election)
    settings.validate()
    timers = (settings.heartbeat_interval_s, settings.election_timeout_min_s, settings.election_timeout_max_s)
    assert timers == pytest.approx(expected)
    # The heartbeat interval is a third of a follower's shortest wait, in whole milliseconds.
    assert round(settings.heartbeat_interval_s * 1000) == round(settings.election_timeout_min_s * 1000 / 3)


@pytest.mark.parametrize(
    ("heartbeat", "election", "message"),
    [
        (1.0, 0.5,
         r"election_timeout_s \(0.5 s\) must be at least heartbeat_timeout_s \(1.0 s\).*split the vote"),
        (None, 0.1, r"election_timeout_s \(0.1 s\) must be at least heartbeat_timeout_s \(0.15 s\)"),
        (0.002, None, r"heartbeat_timeout_s \(0.002 s\) must be at least 0.003 s: .*whole milliseconds"),
        (0.0, 1.0, "heartbeat_timeout_s must be a positive duration"),
        (1.0, math.inf, "election_timeout_s must be a positive duration"),
        (math.nan, None, "heartbeat_timeout_s must be a positive duration"),
    ],
)
def test_from_timeouts_refuses_unsafe_timers_and_says_why(
    heartbeat: float | None, election: float | None, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        RaftSettings.from_timeouts(heartbeat, election)
    assert info.value.fields == ("heartbeat_timeout_s", "election_timeout_s")


def test_worker_ingress_defaults() -> None:
    settings = WorkerSettings()
    settings.validate()
    assert settings.ingress_host == "0.0.0.0"
    assert settings.ingress_connect_timeout_s == 1.0 and settings.ingress_max_connections == 4096
    WorkerSettings(ingress_host=None).validate()
    WorkerSettings(ingress_host="::1").validate()


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"ingress_host": "localhost"}, "ingress_host 'localhost' must be an IP address"),
        ({"ingress_host": ""}, "ingress_host '' must be an IP address"),
        ({"ingress_connect_timeout_s": 0.0}, "ingress_connect_timeout_s must be greater than 0"),
        ({"ingress_connect_timeout_s": math.inf}, "ingress_connect_timeout_s must be greater than 0"),
        ({"ingress_max_connections": 0}, "ingress_max_connections must be at least 1"),
    ],
)
def test_worker_ingress_settings_are_checked(changes: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        WorkerSettings(**changes).validate()  # type: ignore[arg-type]


def test_the_docker_network_name_is_the_template_with_the_node_kept_to_dockers_rules() -> None:
    from warren.config import DOCKER_NETWORK_MAX_LEN, WorkerSettings

    settings = WorkerSettings()
    assert settings.docker_network_name("worker-1a2b3c") == "warren-worker-1a2b3c"
    # A node name from a manager is not trusted to be a Docker name: refused characters become "_",
    # and the whole is bounded.
    assert settings.docker_network_name("w/1 é") == "warren-w_1__"
    long = settings.docker_network_name("x" * 500)
    assert long is not None and len(long) == DOCKER_NETWORK_MAX_LEN and long.startswith("warren-xxx")
    assert WorkerSettings(docker_network=None).docker_network_name("w") is None
    assert WorkerSettings(docker_network="edge").docker_network_name("w") == "edge"  # one name, no {node}
    with pytest.raises(ConfigError, match="must begin with a letter or digit"):
        WorkerSettings(docker_network="{node}").docker_network_name("_w")
