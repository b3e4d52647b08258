"""spec.mounts, spec.configs and volume_policy: each path checked, unwritten while empty."""

from __future__ import annotations

from typing import Any

import pytest

from warren.errors import InvalidError
from warren.spec import mounts
from warren.spec.service import ServiceSpec, decode, spec_digest, to_doc
from warren.store import commands as c


def spec(**fields: Any) -> ServiceSpec:
    return decode(ServiceSpec, {"image": "busybox", **fields})


def test_mounts_configs_and_policy_are_unwritten_while_empty_and_keep_the_digest() -> None:
    plain = spec()
    empty = spec(mounts=[], configs=[], volume_policy="wait")
    assert to_doc(empty) == to_doc(plain)
    assert {"mounts", "configs", "volume_policy"}.isdisjoint(to_doc(empty))
    assert spec_digest(empty) == spec_digest(plain)
    assert empty.on_volume_node_down == "wait"


def test_a_mount_is_written_with_the_fields_set_only() -> None:
    s = spec(mounts=[{"type": "volume", "source": "data", "target": "/data"}], volume_policy="reschedule")
    assert to_doc(s)["mounts"] == [{"type": "volume", "target": "/data", "source": "data"}]
    assert s.volumes == ["data"]
    assert s.on_volume_node_down == "reschedule"
    assert spec_digest(s) != spec_digest(spec())


def test_volume_policy_does_not_change_the_task_digest() -> None:
    mounts = [{"type": "volume", "source": "data", "target": "/data"}]
    assert spec_digest(spec(mounts=mounts)) == spec_digest(spec(mounts=mounts, volume_policy="reschedule"))


def test_a_config_defaults_to_slash_name_and_mode_0444() -> None:
    ref = spec(configs=[{"name": "hub-conf"}]).config_list[0]
    assert (ref.path, ref.mode) == ("/hub-conf", 0o444)


@pytest.mark.parametrize(
    ("mount", "message"),
    [
        ({"type": "volume", "source": "../x", "target": "/d"}, r"mounts\[0\]\.source: a volume name"),
        ({"type": "volume", "source": "Data", "target": "/d"}, r"mounts\[0\]\.source: a volume name"),
        ({"type": "volume", "source": "data\n", "target": "/d"}, r"mounts\[0\]\.source"),
        ({"type": "volume", "target": "/d"}, "needs a source"),
        ({"type": "bind", "source": "/srv/../etc", "target": "/d"}, "normalised absolute path"),
        ({"type": "bind", "source": "srv", "target": "/d"}, "absolute path of the node"),
        ({"type": "bind", "source": "/srv/", "target": "/d"}, "normalised absolute path"),
        ({"type": "bind", "source": "/srv", "target": "/a//b"}, "normalised absolute path"),
        ({"type": "tmpfs", "target": "/"}, "cannot be /"),
        ({"type": "tmpfs", "source": "x", "target": "/t"}, "has no source"),
        ({"type": "volume", "source": "d", "target": "/t", "size": 65536}, "only a tmpfs"),
        ({"type": "tmpfs", "target": "/t", "size": 10}, "size"),
        ({"type": "nfs", "source": "d", "target": "/t"}, "type"),
        ({"type": "volume", "source": "d", "target": "/run/secrets"}, "where secrets are mounted"),
        ({"type": "volume", "source": "d", "target": "/run/secrets/x"}, "where secrets are mounted"),
        ({"type": "volume", "source": "d", "target": "/t", "propagation": "shared"}, "unknown field"),
    ],
)
def test_a_bad_mount_is_refused_naming_the_field(mount: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidError, match=message):
        spec(mounts=[mount])


def test_two_mounts_or_configs_at_one_target_are_refused() -> None:
    with pytest.raises(InvalidError, match="two mounts or configs at /d"):
        spec(mounts=[{"type": "tmpfs", "target": "/d"}, {"type": "volume", "source": "x", "target": "/d"}])
    with pytest.raises(InvalidError, match="two mounts or configs at /etc/x"):
        spec(mounts=[{"type": "tmpfs", "target": "/etc/x"}], configs=[{"name": "a", "target": "/etc/x"}])
    with pytest.raises(InvalidError, match="named twice"):
        spec(configs=[{"name": "a", "target": "/x"}, {"name": "a", "target": "/y"}])
    with pytest.raises(InvalidError, match="mode"):
        spec(configs=[{"name": "a", "mode": 0o1777}])


def test_commands_carrying_mounts_configs_or_the_policy_are_of_version_3() -> None:
    t0 = 1.0
    assert c.required_version(c.CreateService("s", "web", spec(), t0)) == 1
    for fields in ({"mounts": [{"type": "tmpfs", "target": "/t"}]}, {"configs": [{"name": "a"}]},
                   {"volume_policy": "reschedule"}):
        assert c.required_version(c.CreateService("s", "web", spec(**fields), t0)) == c.MOUNTS_SINCE == 3
    for key in ("mounts", "configs", "volume_policy"):
        assert c.required_version(c.UpdateService("web", {key: []}, t0)) == 3
    assert c.COMMAND_VERSION >= c.MOUNTS_SINCE


def test_the_variable_of_each_target_for_the_process_runtime() -> None:
    assert mounts.mount_env("/data") == "WARREN_MOUNT_DATA"
    assert mounts.mount_env("/var/lib/my-db.d") == "WARREN_MOUNT_VAR_LIB_MY_DB_D"
    assert mounts.mount_env("/srv/Cache2") == "WARREN_MOUNT_SRV_CACHE2"


def test_what_the_process_runtime_cannot_honour_is_named_by_field() -> None:
    given = spec(mounts=[
        {"type": "volume", "source": "a", "target": "/a"},
        {"type": "bind", "source": "/srv", "target": "/b", "read_only": True},
        {"type": "tmpfs", "target": "/c"},
        {"type": "volume", "source": "d", "target": "/A"},
    ]).mount_list
    assert mounts.unsupported_by_process(given) == [
        "mounts[1].read_only", "mounts[2].type=tmpfs",
        "mounts[3].target (its variable WARREN_MOUNT_A is also mounts[0]'s)",
    ]
    assert mounts.unsupported_by_process(given[:1]) == []
    assert mounts.bind_sources(given) == ["/srv"]
def test_a_config_at_the_default_mode_is_written_and_digested_as_one_without_it() -> None:
    # msgspec's omit_defaults compares an int above 256 by identity: a decoded 0o444 must still be
    # left out, or the same spec would have two digests and roll its tasks for nothing.
    given = decode(ServiceSpec, b'{"image": "a", "configs": [{"name": "x", "mode": 292}]}')
    left_out = decode(ServiceSpec, {"image": "a", "configs": [{"name": "x"}]})
    assert to_doc(given)["configs"] == [{"name": "x"}]
    assert spec_digest(given) == spec_digest(left_out)
    other = decode(ServiceSpec, b'{"image": "a", "configs": [{"name": "x", "mode": 288}]}')
    assert to_doc(other)["configs"] == [{"name": "x", "mode": 0o440}]
    assert spec_digest(other) != spec_digest(left_out)
