"""The API's request models for mounts, the worker's volume inventory and endpoints digest, discovery and
service names (warren.api.models)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from warren.api import models


def session(**fields: Any) -> models.SessionRequest:
    return models.SessionRequest.model_validate({"node": "worker-1", **fields})


def test_a_session_call_may_carry_the_worker_s_volumes() -> None:
    assert session().volumes is None  # absent: nothing to say
    assert session(volumes=[]).volumes == []
    body = session(volumes=[{"name": "db-data", "driver": "docker"},
                            {"name": "db-data", "driver": "process"}])
    assert [v.model_dump() for v in body.volumes or []] == [
        {"name": "db-data", "driver": "docker"}, {"name": "db-data", "driver": "process"}]
    many = [{"name": f"v{i}", "driver": "docker"} for i in range(models.MAX_NODE_VOLUMES)]
    assert len(session(volumes=many).volumes or []) == models.MAX_NODE_VOLUMES


@pytest.mark.parametrize(("volumes", "said"), [
    ([{"name": "Data", "driver": "docker"}], "volumes.0.name"),
    ([{"name": "a" * 64, "driver": "docker"}], "volumes.0.name"),
    ([{"name": "a\n", "driver": "docker"}], "volumes.0.name"),
    ([{"name": "a", "driver": "vm"}], "volumes.0.driver"),
    ([{"name": "a", "driver": "docker", "size": 1}], "volumes.0.size"),
    ([{"name": "a", "driver": "docker"}] * 2, "a volume is listed twice"),
    ([{"name": f"v{i}", "driver": "docker"} for i in range(models.MAX_NODE_VOLUMES + 1)], "at most 1024"),
    ({"name": "a", "driver": "docker"}, "valid list"),
])
def test_a_bad_inventory_is_refused_naming_the_field(volumes: object, said: str) -> None:
    with pytest.raises(ValidationError) as caught:
        session(volumes=volumes)
    assert said in str(caught.value)


def test_a_worker_reports_the_bind_roots_it_allows() -> None:
    resources = models.WorkerResources.model_validate({"allow_binds": ["/srv/data", "/media"]})
    assert resources.allow_binds == ["/srv/data", "/media"]
    for bad in (["srv"], ["/srv\n"], [f"/s{i}" for i in range(65)]):
        with pytest.raises(ValidationError):
            models.WorkerResources.model_validate({"allow_binds": bad})


def test_a_mount_is_checked_by_the_typed_spec_s_rules() -> None:
    good = models.Mount.model_validate({"type": "tmpfs", "target": "/cache", "size": 65536})
    assert good.model_dump() == {"type": "tmpfs", "target": "/cache", "source": None, "read_only": False,
                                 "size": 65536}
    with pytest.raises(ValidationError, match="a tmpfs mount has no source"):
        models.Mount.model_validate({"type": "tmpfs", "target": "/cache", "source": "x"})
    with pytest.raises(ValidationError, match="a bind mount needs a source"):
        models.Mount.model_validate({"type": "bind", "target": "/b"})
    with pytest.raises(ValidationError, match="two mounts or configs at /a"):
        models.ServiceUpdate.model_validate({"mounts": [{"type": "tmpfs", "target": "/a"}] * 2})
    assert models.ServiceUpdate.model_validate({"mounts": []}).mounts == []


def test_a_session_call_says_whether_it_asks_for_endpoints() -> None:
    assert "known_endpoints" not in session().model_fields_set  # an older worker: not asked
    asked = session(known_endpoints=None)
    assert "known_endpoints" in asked.model_fields_set and asked.known_endpoints is None
    assert session(known_endpoints="0123456789abcdef").known_endpoints == "0123456789abcdef"
    with pytest.raises(ValidationError, match="known_endpoints"):
        session(known_endpoints="x" * 129)


def test_discovery_is_a_bool_on_by_default_and_a_service_name_a_dns_label() -> None:
    assert models.ServiceSpec(image="nginx").discovery is True
    assert models.ServiceUpdate().discovery is None
    assert models.ServiceUpdate.model_validate({"discovery": False}).discovery is False
    with pytest.raises(ValidationError, match="discovery"):
        models.ServiceSpec.model_validate({"image": "nginx", "discovery": "false"})
    assert models.ServiceCreate(name="a" * 63, image="nginx").name == "a" * 63
    for bad in ("Web", "web_1", "-web", "a" * 64, "web.warren"):
        with pytest.raises(ValidationError, match=r"a service name is a DNS name \(tasks find"):
            models.ServiceCreate(name=bad, image="nginx")
