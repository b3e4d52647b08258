"""The config routes and the configs of a service body: content in (base64) and back out, the 409 of a
name taken, the checks of a ConfigRef (400 naming the field) and of configs that do not exist (404)."""

from __future__ import annotations

import base64

from starlette.testclient import TestClient

from tests.unit.manager.secrets_world import World
from warren.config import ManagerSettings

CONTENT = b"server.port=8080\n"
DATA = base64.b64encode(CONTENT).decode()


def test_a_config_goes_in_and_comes_back_out(client: tuple[TestClient, World]) -> None:
    http, _ = client
    made = http.post("/v1/configs", json={"name": "app-conf", "data": DATA})
    assert made.status_code == 201, made.text
    assert made.json()["size"] == len(CONTENT) and "data" not in made.json()
    listed = http.get("/v1/configs").json()
    assert [c["name"] for c in listed] == ["app-conf"] and "data" not in listed[0]
    one = http.get("/v1/configs/app-conf").json()
    assert one["data"] == DATA and one["services"] == []
    again = http.post("/v1/configs", json={"name": "app-conf", "data": base64.b64encode(b"other").decode()})
    assert again.status_code == 409 and "immutable" in again.json()["message"], again.text
    assert http.get("/v1/configs/app-conf").json()["data"] == DATA
    assert http.get("/v1/configs/nope").status_code == 404
    assert http.delete("/v1/configs/app-conf").json() == {"removed": "app-conf"}
    assert http.get("/v1/configs").json() == []


def test_bad_bodies_are_refused_naming_the_field(client: tuple[TestClient, World]) -> None:
    http, _ = client
    not_b64 = http.post("/v1/configs", json={"name": "a", "data": "not base64!"})
    assert not_b64.status_code == 400 and "base64" in not_b64.json()["message"], not_b64.text
    bad_name = http.post("/v1/configs", json={"name": "App_Conf", "data": DATA})
    assert bad_name.status_code == 400 and "name" in bad_name.text
    limit = ManagerSettings().max_config_bytes
    big = base64.b64encode(b"x" * (limit + 1)).decode()
    too_big = http.post("/v1/configs", json={"name": "big", "data": big})
    assert too_big.status_code == 400 and f"at most {limit}" in too_big.json()["message"], too_big.text


def test_a_service_names_existing_configs_with_checked_targets_and_modes(
    client: tuple[TestClient, World],
) -> None:
    http, _ = client
    body = {"name": "web", "image": "busybox"}
    unknown = http.post("/v1/services", json={**body, "configs": [{"name": "nope"}]})
    assert unknown.status_code == 404 and "nope" in unknown.json()["message"], unknown.text
    for refs, fragment in [
        ([{"name": "a", "target": "/etc/../x"}], "normalised"),
        ([{"name": "a", "target": "etc/x"}], "target"),
        ([{"name": "a", "mode": 0o1000}], "mode"),
        ([{"name": "a", "uid": 0}], "uid"),
        ([{"name": "a"}, {"name": "b", "target": "/a"}], "two mounts or configs at /a"),
        ([{"name": "a"}, {"name": "a", "target": "/b"}], "named twice"),
        ([{"name": "a", "target": "/run/secrets/a"}], "where secrets are mounted"),
    ]:
        refused = http.post("/v1/services", json={**body, "configs": refs})
        assert refused.status_code == 400 and fragment in refused.text, (refs, refused.text)
    assert http.post("/v1/configs", json={"name": "conf-v1", "data": DATA}).status_code == 201
    assert http.post("/v1/configs", json={"name": "conf-v2", "data": DATA}).status_code == 201
    made = http.post("/v1/services", json={**body, "configs": [{"name": "conf-v1"}]})
    assert made.status_code == 201, made.text
    assert made.json()["spec"]["configs"] == [{"name": "conf-v1"}]  # defaults unwritten
    assert http.get("/v1/configs/conf-v1").json()["services"] == ["web"]
    removing = http.delete("/v1/configs/conf-v1")
    assert removing.status_code == 409 and "web" in removing.json()["message"], removing.text
    missing = http.patch("/v1/services/web", json={"configs": [{"name": "conf-v3"}]})
    assert missing.status_code == 404, missing.text
    patched = http.patch("/v1/services/web", json={"configs": [{"name": "conf-v2", "target": "/etc/app.conf",
                                                                "mode": 0o444}]})
    assert patched.status_code == 200, patched.text
    # Stored as create stores it: the default mode and no target unwritten.
    assert patched.json()["spec"]["configs"] == [{"name": "conf-v2", "target": "/etc/app.conf"}]
    assert http.delete("/v1/configs/conf-v1").json() == {"removed": "conf-v1"}
