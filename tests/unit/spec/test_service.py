"""The typed service spec (warren.spec.service): decoded once, defaulted, checked like the API checks a
request, and written and digested exactly as the specs Warren already stores."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from warren.api import models
from warren.errors import InvalidError
from warren.spec import service
from warren.spec.mounts import DEFAULT_VOLUME_POLICY
from warren.spec.publishing import default_mode
from warren.spec.service import HealthCheck, RestartPolicy, ServiceSpec, TaskSpec, UpdatePolicy
from warren.store import commands as c

FIXTURES = Path(__file__).parents[2] / "fixtures" / "commands-v1"


def stored_specs() -> list[dict[str, Any]]:
    """Specs as POST /v1/services stored them (commit 793c90e), each with its task spec and digest."""
    return [orjson.loads(line) for line in (FIXTURES / "specs.jsonl").read_bytes().splitlines()]


@pytest.mark.parametrize("stored", stored_specs(), ids=lambda d: d["digest"])
def test_a_stored_spec_decodes_and_keeps_its_task_spec_and_digest(stored: dict[str, Any]) -> None:
    spec = service.decode(ServiceSpec, orjson.dumps(stored["spec"]))
    assert service.to_doc(spec) == stored["spec"]
    task = spec.task_spec()
    assert type(task) is TaskSpec
    # The task spec as tasks.spec held it (an empty `secrets` left out), in the same order.
    assert service.to_doc(task) == {"secrets": [], **stored["task_spec"]}
    assert [k for k in service.to_doc(task) if k in stored["task_spec"]] == list(stored["task_spec"])
    # An unchanged spec keeps its digest: an upgrade rolls no task.
    assert service.spec_digest(spec) == service.spec_digest(task) == stored["digest"]
    # The task spec a task row holds decodes too, to the same thing.
    assert service.decode(TaskSpec, orjson.dumps(stored["task_spec"])) == task


def test_the_defaults_are_the_ones_the_api_filled_in() -> None:
    minimal = stored_specs()[0]["spec"]
    assert service.to_doc(ServiceSpec(image="nginx")) == minimal
    assert service.field_default(HealthCheck, "interval_s") == 5.0
    assert service.field_default(ServiceSpec, "replicas") == 1
    assert service.field_default(ServiceSpec, "env") == {}
    with pytest.raises(KeyError):
        service.field_default(ServiceSpec, "image")


def test_the_digest_leaves_out_secrets_while_there_are_none() -> None:
    spec = ServiceSpec(image="nginx")
    doc = service.to_doc(spec.task_spec())
    assert doc["secrets"] == []  # the wire form writes every field
    del doc["secrets"]
    body = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    assert service.spec_digest(spec) == hashlib.sha256(body).hexdigest()[:16]
    assert service.spec_digest(ServiceSpec(image="nginx", secrets=["a"])) != service.spec_digest(spec)


def test_only_task_fields_change_the_digest() -> None:
    base = service.spec_digest(ServiceSpec(image="nginx"))
    assert service.spec_digest(ServiceSpec(image="nginx", replicas=5, labels={"a": "b"})) == base
    assert service.spec_digest(ServiceSpec(image="nginx", update=UpdatePolicy(parallelism=3))) == base
    assert service.spec_digest(ServiceSpec(image="nginx:2")) != base
    assert service.spec_digest(ServiceSpec(image="nginx", restart=RestartPolicy(delay_s=1))) != base


# Specs the API's pydantic model takes; the typed spec takes them too and fills in the same defaults.
GOOD = [
    *[d["spec"] for d in stored_specs()],
    {"image": "nginx", "resources": {"cpus": 1024, "memory": 4 * 1024 * 1024}},
    {"image": "nginx", "replicas": 0, "update": {"parallelism": 10_000}},
    {"image": "nginx", "command": ["sh", "-c", "a\tb\nc"], "env": {"_X": "a\nb"}},
    {"image": "nginx", "health": {"kind": "http", "port": 1, "path": "/"}},
    {"image": "nginx", "labels": {"a.b/c-d_e": ""}, "constraints": ["node.name==worker-1"]},
    {"image": "nginx", "container": {}},
    {"image": "nginx", "container": {"read_only": False, "user": None, "cap_add": []}},
    {"image": "nginx", "container": {
        "user": "1000:dialout", "workdir": "/srv/app", "hostname": "hub-1.edge", "read_only": True,
        "init": True, "privileged": True, "cap_add": ["NET_ADMIN", "SYS_TIME"], "cap_drop": ["ALL"],
        "devices": [{"host": "/dev/ttyUSB0"},
                    {"host": "/dev/null", "container": "/dev/radio", "permissions": "rw"}],
        "ulimits": {"nofile": {"soft": 1024, "hard": 4096}}, "stop_signal": "SIGINT",
        "sysctls": {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1000", "kernel.sem": "250 32000 32 128",
                    "fs.mqueue.msg_max": "10", "kernel.msgmax": "8192"}}},
    {"image": "nginx", "container": {"network": "host", "sysctls": {"kernel.shmmax": "1"}}},
    {"image": "nginx", "mounts": []},
    {"image": "nginx", "mounts": [
        {"type": "volume", "source": "db-data", "target": "/var/lib/db"},
        {"type": "bind", "source": "/srv/media", "target": "/media", "read_only": True},
        {"type": "tmpfs", "target": "/cache", "size": 64 * 1024 * 1024},
        {"type": "tmpfs", "target": "/tmp", "read_only": False, "source": None, "size": None}]},
    {"image": "nginx", "configs": []},
    {"image": "nginx", "configs": [{"name": "a", "target": "/etc/a.conf", "mode": 0o440}, {"name": "b"},
                                   {"name": "c", "mode": 0o444, "target": None}]},
    {"image": "nginx", "volume_policy": "reschedule"},
    {"image": "nginx", "volume_policy": "wait"},
    {"image": "nginx", "discovery": False},
    {"image": "nginx", "discovery": True},
]

# Specs the API's model refuses; the typed spec refuses them too, naming the field.
BAD = [
    ({}, "image"),
    ({"image": ""}, "image"),
    ({"image": "Nginx"}, "image"),
    ({"image": "nginx", "unknown": 1}, "unknown"),
    ({"image": "nginx", "volume_policy": "move"}, "volume_policy"),
    ({"image": "nginx", "discovery": "no"}, "discovery"),
    ({"image": "nginx", "replicas": True}, "replicas"),
    ({"image": "nginx", "replicas": 1.0}, "replicas"),
    ({"image": "nginx", "replicas": "1"}, "replicas"),
    ({"image": "nginx", "replicas": -1}, "replicas"),
    ({"image": "nginx", "replicas": 10_001}, "replicas"),
    ({"image": "nginx", "driver": "vm"}, "driver"),
    ({"image": "nginx", "driver": "process"}, "command"),
    ({"image": "nginx", "mode": "every"}, "mode"),
    ({"image": "nginx", "command": ["a\x00"]}, "command"),
    ({"image": "nginx", "command": ["a\rb"]}, "command"),
    ({"image": "nginx", "env": {"1A": "x"}}, "env"),
    ({"image": "nginx", "env": {"A": "\x1b[2J"}}, "env"),
    ({"image": "nginx", "labels": {"-a": "x"}}, "labels"),
    ({"image": "nginx", "labels": {"a": "x\ny"}}, "labels"),
    ({"image": "nginx", "publish": [{"host": 0, "container": 80}]}, "publish"),
    ({"image": "nginx", "publish": [{"host": 80, "container": 80, "protocol": "sctp"}]}, "publish"),
    ({"image": "nginx", "publish": [{"host": 80, "container": 8}, {"host": 80, "container": 9}]}, "publish"),
    ({"image": "nginx", "resources": {"cpus": 0}}, "resources.cpus"),
    ({"image": "nginx", "resources": {"memory": 1024}}, "resources.memory"),
    ({"image": "nginx", "constraints": ["labels.a==b"]}, "constraints"),
    ({"image": "nginx", "constraints": ["node.labels.a==b\n"]}, "constraints"),
    ({"image": "nginx", "restart": {"condition": "always"}}, "restart.condition"),
    ({"image": "nginx", "restart": {"delay_s": -1}}, "restart.delay_s"),
    ({"image": "nginx", "restart": {"delay_s": "1s"}}, "restart.delay_s"),
    ({"image": "nginx", "health": {"kind": "cmd"}}, "health"),
    ({"image": "nginx", "health": {"kind": "tcp"}}, "health"),
    ({"image": "nginx", "health": {"kind": "http", "port": 80, "path": "healthz"}}, "health.path"),
    ({"image": "nginx", "health": {"kind": "tcp", "port": 80, "retries": 0}}, "health.retries"),
    ({"image": "nginx", "health": {"kind": "tcp", "port": 80, "interval_s": 0}}, "health.interval_s"),
    ({"image": "nginx", "update": {"parallelism": 0}}, "update.parallelism"),
    ({"image": "nginx", "update": {"order": "random"}}, "update.order"),
    ({"image": "nginx", "stop_timeout_s": 0}, "stop_timeout_s"),
    ({"image": "nginx", "configs": [{"name": "A"}]}, "configs"),
    ({"image": "nginx", "configs": [{"name": "a", "target": "/etc/../a"}]}, "configs"),
    ({"image": "nginx", "configs": [{"name": "a", "target": "a"}]}, "configs"),
    ({"image": "nginx", "configs": [{"name": "a", "target": "/"}]}, "configs"),
    ({"image": "nginx", "configs": [{"name": "a", "mode": 0o1000}]}, "configs"),
    ({"image": "nginx", "configs": [{"name": "a", "mode": "0444"}]}, "configs"),
    ({"image": "nginx", "configs": [{"name": "a", "uid": 0}]}, "configs"),
    ({"image": "nginx", "configs": [{"name": "a"}, {"name": "a", "target": "/b"}]}, "configs"),
    ({"image": "nginx", "configs": [{"name": "a", "target": "/b"}, {"name": "b"}]}, "configs"),
    ({"image": "nginx", "configs": [{"name": "a", "target": "/run/secrets/a"}]}, "configs"),
    ({"image": "nginx", "configs": [{"name": f"c{i}"} for i in range(65)]}, "configs"),
    ({"image": "nginx", "stop_timeout_s": 86401}, "stop_timeout_s"),
    ({"image": "nginx", "secrets": ["a", "a"]}, "secrets"),
    ({"image": "nginx", "secrets": ["A"]}, "secrets"),
    ({"image": "nginx", "secrets": ["a\n"]}, "secrets"),
    ({"image": "nginx", "mounts": [{"type": "nfs", "source": "a", "target": "/a"}]}, "mounts"),
    ({"image": "nginx", "mounts": [{"type": "volume", "target": "/a"}]}, "mounts"),
    ({"image": "nginx", "mounts": [{"type": "volume", "source": "A", "target": "/a"}]}, "mounts"),
    ({"image": "nginx", "mounts": [{"type": "bind", "source": "/srv/../etc", "target": "/a"}]}, "mounts"),
    ({"image": "nginx", "mounts": [{"type": "bind", "source": "srv", "target": "/a"}]}, "mounts"),
    ({"image": "nginx", "mounts": [{"type": "tmpfs", "source": "x", "target": "/a"}]}, "mounts"),
    ({"image": "nginx", "mounts": [{"type": "volume", "source": "a", "target": "/a", "size": 8192}]},
     "mounts"),
    ({"image": "nginx", "mounts": [{"type": "tmpfs", "target": "/a", "size": 1}]}, "mounts"),
    ({"image": "nginx", "mounts": [{"type": "tmpfs", "target": "/"}]}, "mounts"),
    ({"image": "nginx", "mounts": [{"type": "tmpfs", "target": "/run/secrets/x"}]}, "mounts"),
    ({"image": "nginx", "mounts": [{"type": "tmpfs", "target": "/a"}, {"type": "tmpfs", "target": "/a"}]},
     "mounts"),
    ({"image": "nginx", "mounts": [{"type": "tmpfs", "target": "/a"}] * 33}, "mounts"),
    ({"image": "nginx", "container": {"unknown": 1}}, "unknown"),
    ({"image": "nginx", "container": {"user": "a b"}}, "container.user"),
    ({"image": "nginx", "container": {"user": "root\n"}}, "container.user"),
    ({"image": "nginx", "container": {"user": "x" * 65}}, "container.user"),
    ({"image": "nginx", "container": {"workdir": "srv"}}, "container.workdir"),
    ({"image": "nginx", "container": {"workdir": "/srv/../etc"}}, "container.workdir"),
    ({"image": "nginx", "container": {"workdir": "/srv/"}}, "container.workdir"),
    ({"image": "nginx", "container": {"hostname": "-a"}}, "container.hostname"),
    ({"image": "nginx", "container": {"hostname": "a" * 64}}, "container.hostname"),
    ({"image": "nginx", "container": {"hostname": "a\n"}}, "container.hostname"),
    ({"image": "nginx", "container": {"network": "host", "hostname": "a"}}, "container.hostname"),
    ({"image": "nginx", "container": {"network": "none"}}, "container.network"),
    ({"image": "nginx", "container": {"network": "host"}, "publish": [{"host": 80, "container": 80}]},
     "publish"),
    ({"image": "nginx", "container": {"read_only": "yes"}}, "container.read_only"),
    ({"image": "nginx", "container": {"privileged": 1}}, "container.privileged"),
    ({"image": "nginx", "container": {"cap_add": ["CAP_NET_ADMIN"]}}, "container.cap_add"),
    ({"image": "nginx", "container": {"cap_add": ["ALL"]}}, "container.cap_add"),
    ({"image": "nginx", "container": {"cap_add": ["CHOWN", "CHOWN"]}}, "container.cap_add"),
    ({"image": "nginx", "container": {"cap_drop": ["ALL", "ALL"]}}, "container.cap_drop"),
    ({"image": "nginx", "container": {"cap_add": ["CHOWN"], "cap_drop": ["CHOWN"]}}, "container.cap_add"),
    ({"image": "nginx", "container": {"devices": [{"host": "dev/null"}]}}, "container.devices"),
    ({"image": "nginx", "container": {"devices": [{"host": "/dev/../etc/shadow"}]}}, "container.devices"),
    ({"image": "nginx", "container": {"devices": [{"host": "/dev//null"}]}}, "container.devices"),
    ({"image": "nginx", "container": {"devices": [{"host": "/dev/null\n"}]}}, "container.devices"),
    ({"image": "nginx", "container": {"devices": [{"host": "/dev/null", "permissions": "x"}]}},
     "container.devices"),
    ({"image": "nginx",
      "container": {"devices": [{"host": "/dev/a"}, {"host": "/dev/b", "container": "/dev/a"}]}},
     "container.devices"),
    ({"image": "nginx", "container": {"ulimits": {"files": {"soft": 1, "hard": 1}}}}, "container.ulimits"),
    ({"image": "nginx", "container": {"ulimits": {"nofile": {"soft": 2, "hard": 1}}}}, "container.ulimits"),
    ({"image": "nginx", "container": {"ulimits": {"nofile": {"soft": -1, "hard": 1}}}}, "container.ulimits"),
    ({"image": "nginx", "container": {"sysctls": {"kernel.panic": "1"}}}, "container.sysctls"),
    ({"image": "nginx", "container": {"sysctls": {"vm.swappiness": "1"}}}, "container.sysctls"),
    ({"image": "nginx", "container": {"sysctls": {"net.ipv4.ip_forward": "1\n"}}}, "container.sysctls"),
    ({"image": "nginx", "container": {"sysctls": {"net.ipv4.ip_forward\n": "1"}}}, "container.sysctls"),
    ({"image": "nginx", "container": {"network": "host", "sysctls": {"net.core.somaxconn": "1"}}},
     "container.sysctls"),
    ({"image": "nginx", "container": {"stop_signal": "SIGSTOP"}}, "container.stop_signal"),
    ({"image": "nginx", "container": {"stop_signal": "TERM"}}, "container.stop_signal"),
]


@pytest.mark.parametrize("body", GOOD)
def test_a_spec_the_api_takes_decodes_to_what_the_api_stores(body: dict[str, Any]) -> None:
    model = models.ServiceSpec.model_validate_json(orjson.dumps(body))
    stored = model.model_dump()
    # The typed spec writes only the container options set, and no `container` while none is.
    options = model.container.model_dump(exclude_defaults=True)
    del stored["container"]
    if options:
        stored["container"] = options
    # Likewise `mounts`: written only when there is one, each without its fields at their default.
    mounts = [m.model_dump(exclude_defaults=True) for m in model.mounts]
    del stored["mounts"]
    if mounts:
        stored["mounts"] = mounts
    # Configs are unwritten while empty, like `container`, and each reference without its defaults.
    refs = [{k: v for k, v in ref.items() if (k, v) not in (("target", None), ("mode", 0o444))}
            for ref in stored.pop("configs")]
    if refs:
        stored["configs"] = refs
    # And `volume_policy` only when it is not the default.
    if stored["volume_policy"] == DEFAULT_VOLUME_POLICY:
        del stored["volume_policy"]
    # And `discovery` only when off.
    if stored["discovery"] == service.DEFAULT_DISCOVERY:
        del stored["discovery"]
    # A published port: the API names its mode where the body names none (ingress; host for UDP), and
    # the stored spec keeps it; the typed spec decoding the bare body leaves it unset (stored: host).
    assert service.to_doc(service.decode(ServiceSpec, model.model_dump()))["publish"] == stored["publish"]
    for item, given in zip(stored["publish"], body.get("publish", []), strict=True):
        if "mode" not in given:
            assert item.pop("mode") == default_mode(item["protocol"])
    assert service.to_doc(service.decode(ServiceSpec, orjson.dumps(body))) == stored
    assert service.to_doc(service.decode(ServiceSpec, body)) == stored  # from YAML's objects alike


@pytest.mark.parametrize(("body", "field"), BAD)
def test_a_spec_the_api_refuses_is_refused_naming_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError):
        models.ServiceSpec.model_validate_json(orjson.dumps(body))
    with pytest.raises(InvalidError, match=rf"^spec(\.|: ).*{field.split('.')[-1]}"):
        service.decode(ServiceSpec, orjson.dumps(body))
    with pytest.raises(InvalidError):
        service.decode(ServiceSpec, body)


def test_container_options_left_at_their_defaults_keep_the_digest() -> None:
    base = ServiceSpec(image="nginx")
    off = service.decode(ServiceSpec, {"image": "nginx", "container": {"read_only": False, "devices": []}})
    assert off == base and "container" not in service.to_doc(off)
    assert service.spec_digest(off) == service.spec_digest(base)
    on = service.decode(ServiceSpec, {"image": "nginx", "container": {"read_only": True}})
    assert service.to_doc(on)["container"] == {"read_only": True}  # only the options set are written
    assert service.spec_digest(on) != service.spec_digest(base)
    assert on.task_spec().options.read_only and not base.options.read_only


def test_discovery_is_unwritten_while_on_and_changes_no_task_digest() -> None:
    plain = ServiceSpec(image="nginx")
    on = service.decode(ServiceSpec, {"image": "nginx", "discovery": True})
    off = service.decode(ServiceSpec, {"image": "nginx", "discovery": False})
    assert plain.discoverable and on.discoverable and not off.discoverable
    assert "discovery" not in service.to_doc(on) and service.to_doc(on) == service.to_doc(plain)
    assert service.to_doc(off)["discovery"] is False
    assert service.spec_digest(off) == service.spec_digest(on) == service.spec_digest(plain)
    assert "discovery" not in service.TASK_FIELDS
    assert c.required_version(c.CreateService("s", "web", plain, 1.0)) == c.BASE_COMMAND_VERSION
    assert c.required_version(c.CreateService("s", "web", off, 1.0)) == c.MOUNTS_SINCE == 3
    assert c.required_version(c.UpdateService("web", {"discovery": True}, 1.0)) == 3
    assert c.COMMAND_VERSION >= 3


def test_a_check_runs_when_a_spec_is_made_in_code_too() -> None:
    with pytest.raises(ValueError, match="needs command"):
        ServiceSpec(image="x", driver="process")
    with pytest.raises(ValueError, match="needs port"):
        HealthCheck(kind="tcp")
    with pytest.raises(ValueError, match="control characters"):
        ServiceSpec(image="nginx", labels={"a": "\x1b"})


def test_not_json_is_refused() -> None:
    with pytest.raises(InvalidError, match="^spec: not JSON"):
        service.decode(ServiceSpec, b'{"image": ')


def test_the_spec_package_imports_nothing_of_warren_but_errors_and_formats() -> None:
    code = (
        "import sys, warren.spec.service, warren.spec.validate, warren.spec.problems\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('warren'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert set(out.split()) <= {
        "warren", "warren.spec", "warren.spec.service", "warren.spec.container", "warren.spec.mounts",
        "warren.spec.validate",
            "warren.spec.problems",
        "warren.errors", "warren.formats",
    }


def _published(*ports: dict[str, Any], **fields: Any) -> ServiceSpec:
    return service.decode(ServiceSpec, {"image": "nginx", "publish": list(ports), **fields})


def test_publish_mode_is_unset_in_old_specs_and_needs_command_version_4() -> None:
    old = _published({"host": 8080, "container": 80})
    assert not old.publish[0].ingress  # stored before ingress existed: host mode, digest unchanged
    assert "mode" not in service.to_doc(old)["publish"][0]
    new = _published({"host": 8080, "container": 80, "mode": "ingress"})
    assert new.publish[0].ingress
    assert service.spec_digest(new) != service.spec_digest(old)
    assert c.required_version(c.CreateService("s", "web", old, 1.0)) == c.BASE_COMMAND_VERSION
    assert c.required_version(c.CreateService("s", "web", new, 1.0)) == c.PUBLISH_MODE_SINCE == 4
    update = c.UpdateService("web", {"publish": [{"host": 8080, "container": 80, "mode": "host"}]}, 1.0)
    assert c.required_version(update) == 4


def test_ingress_is_tcp_only_and_a_process_task_cannot_share_its_port_with_the_ingress() -> None:
    with pytest.raises(InvalidError, match="ingress forwards TCP only"):
        _published({"host": 53, "container": 53, "protocol": "udp", "mode": "ingress"})
    _published({"host": 53, "container": 53, "protocol": "udp", "mode": "host"})
    with pytest.raises(InvalidError, match="they must differ"):
        _published({"host": 8080, "container": 8080, "mode": "ingress"}, driver="process", command=["x"])
    _published({"host": 8080, "container": 8080, "mode": "host"}, driver="process", command=["x"])
