"""Renewer: when a certificate is renewed, what it sends and saves, and retries after failures
(a fake clock and sleep; a fake request signed by a real CA)."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.unit.fake_manager import CA_PEM, NODE, issue, node_material
from warren.config import SecuritySettings
from warren.errors import UnavailableError
from warren.pki import certs
from warren.pki.join import new_join_key
from warren.pki.material import NodeMaterial, load_node, tls_dir
from warren.pki.renewal import Renewer
from warren.testing.wait import eventually_async

LIFETIME_S = 1000.0
SETTINGS = SecuritySettings(renew_after_fraction=0.5, renew_retry_s=5.0)


class FakeTime:
    """Wall clock and sleep: a sleep moves the clock on at once. Once `freeze()`d, a sleep (and the
    FakeCluster's request) blocks for good, so a test can look at a renewer that would otherwise go
    on renewing."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.sleeps: list[float] = []
        self._frozen = asyncio.Event()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        await self.unless_frozen()
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)  # a real await (the fake clock's pause takes no time)

    def freeze(self) -> None:
        self._frozen.set()

    async def unless_frozen(self) -> None:
        if self._frozen.is_set():
            await asyncio.Event().wait()


class FakeCluster:
    """The request: answers a CSR with a certificate of the fake CA, after `failures` failures."""

    def __init__(self, failures: int = 0, *, name: str = NODE) -> None:
        self.failures = failures
        self.name = name
        self.csrs: list[str] = []
        self.answer: Mapping[str, Any] | None = None  # answer this instead (once)
        self.time: FakeTime | None = None

    async def request(self, csr_pem: str) -> Mapping[str, Any]:
        if self.time is not None:
            await self.time.unless_frozen()
        self.csrs.append(csr_pem)
        if self.failures:
            self.failures -= 1
            raise UnavailableError("no manager answered (127.0.0.1:1: connection refused)")
        if self.answer is not None:
            answer, self.answer = self.answer, None
            return answer
        cert = issue(csr_pem, name=self.name, lifetime_s=LIFETIME_S)
        return {"certificate": cert.decode(), "ca": CA_PEM.decode(), "cert_expires_at": 0.0}


class Renewed:
    def __init__(self, time: FakeTime, after: int = 1) -> None:
        self.materials: list[NodeMaterial] = []
        self.time = time
        self.after = after
        self.done = asyncio.Event()

    def __call__(self, material: NodeMaterial) -> None:
        self.materials.append(material)
        if len(self.materials) >= self.after:
            self.time.freeze()
            self.done.set()


async def run_until(renewer: Renewer, renewed: Renewed) -> None:
    task = asyncio.create_task(renewer.run())
    try:
        async with asyncio.timeout(10):
            await renewed.done.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def setup(
    tmp_path: Path, offset_s: float, cluster: FakeCluster, after: int = 1
) -> tuple[NodeMaterial, FakeTime, Renewed, Renewer]:
    """A node with a certificate of LIFETIME_S, the clock `offset_s` after it was issued."""
    old = node_material(str(tmp_path), lifetime_s=LIFETIME_S)
    time = FakeTime(certs.issued_at(old.cert) + offset_s)
    cluster.time = time
    renewed = Renewed(time, after)
    renewer = Renewer(
        str(tmp_path), cluster.request, renewed, settings=SETTINGS, clock=time.clock, sleep=time.sleep
    )
    return old, time, renewed, renewer


def test_due_at_is_the_fraction_of_the_lifetime(tmp_path: Path) -> None:
    old = node_material(str(tmp_path), lifetime_s=LIFETIME_S)
    issued, expires = certs.issued_at(old.cert), certs.expires_at(old.cert)
    assert expires - issued == pytest.approx(LIFETIME_S, abs=1.0)
    r = Renewer(str(tmp_path), FakeCluster().request, lambda m: None, settings=SETTINGS)
    assert r.due_at(old) == pytest.approx(issued + 0.5 * (expires - issued))
    late = Renewer(
        str(tmp_path),
        FakeCluster().request,
        lambda m: None,
        settings=SecuritySettings(renew_after_fraction=0.8),
    )
    assert late.due_at(old) == pytest.approx(issued + 0.8 * (expires - issued))


async def test_waits_until_due_then_renews_with_a_new_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    cluster = FakeCluster()
    old, time, renewed, renewer = setup(tmp_path, 100.0, cluster)
    due = renewer.due_at(old)
    await run_until(renewer, renewed)

    assert sum(time.sleeps) == pytest.approx(due - (certs.issued_at(old.cert) + 100.0))
    assert time.sleeps and max(time.sleeps) <= 60.0  # naps, looking at the wall clock in between
    [csr] = cluster.csrs
    [new] = renewed.materials
    # A new key, the CSR's; saved in place of the old files, and handed over as saved.
    assert certs.csr_public_key(csr) == certs.load_key(new.key_pem).public_key()
    assert new.key_pem != old.key_pem and new.cert_pem != old.cert_pem
    assert load_node(str(tmp_path)) == new
    assert new.identity.name == NODE and new.identity.role == "worker"
    node_file = os.path.join(tls_dir(str(tmp_path)), "node.pem")
    assert stat.S_IMODE(os.stat(node_file).st_mode) == 0o600
    assert sorted(os.listdir(tls_dir(str(tmp_path)))) == ["ca.crt", "node.pem"]  # no temp file left
    assert renewer.renewals == 1
    [line] = [r.getMessage() for r in caplog.records if "renewed" in r.getMessage()]
    assert line.startswith("certificate renewed, valid until ") and line.endswith(" UTC")


async def test_the_next_renewal_waits_for_the_new_certificate_and_uses_another_key(tmp_path: Path) -> None:
    cluster = FakeCluster()
    old, time, renewed, renewer = setup(tmp_path, 0.0, cluster, after=2)
    await run_until(renewer, renewed)
    first, second = renewed.materials
    assert len({old.key_pem, first.key_pem, second.key_pem}) == 3
    # Between them, the wait for the first renewal's certificate to be due.
    assert time.now >= renewer.due_at(first)
    assert load_node(str(tmp_path)) == second


async def test_a_failed_renewal_is_retried_after_renew_retry_s(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    cluster = FakeCluster(failures=2)
    old, time, renewed, renewer = setup(tmp_path, 600.0, cluster)  # past due: no wait
    await run_until(renewer, renewed)
    assert time.sleeps == [SETTINGS.renew_retry_s, SETTINGS.renew_retry_s]
    assert len(cluster.csrs) == 3 and len(set(cluster.csrs)) == 3  # a new key for every attempt
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all("no manager answered" in w and "retrying in 5 s" in w for w in warnings)
    for key in (old.key_pem, renewed.materials[0].key_pem):
        assert key.decode() not in caplog.text
    assert "PRIVATE KEY" not in caplog.text and "CERTIFICATE REQUEST" not in caplog.text


async def test_an_expired_certificate_is_renewed_at_once(tmp_path: Path) -> None:
    cluster = FakeCluster()
    old, time, renewed, renewer = setup(tmp_path, LIFETIME_S + 3600.0, cluster)
    await run_until(renewer, renewed)
    assert time.sleeps == [] and len(cluster.csrs) == 1


async def test_a_wrong_answer_never_replaces_the_material(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = FakeCluster()
    old, time, renewed, renewer = setup(tmp_path, 600.0, cluster)
    # A certificate for a key this node never made: refused, the old files kept, tried again.
    cluster.answer = {"certificate": issue(new_join_key().csr_pem).decode(), "ca": CA_PEM.decode()}
    task = asyncio.create_task(renewer.run())
    try:
        # look after every turn of the loop: the retry follows the (fake, instant) pause at once
        await eventually_async(lambda: time.sleeps, 10.0, "a pause before the retry", poll_s=0.0)
        assert load_node(str(tmp_path)) == old and not renewed.materials
        assert "another key" in caplog.text
        await renewed.done.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert time.sleeps == [SETTINGS.renew_retry_s] and load_node(str(tmp_path)) == renewed.materials[0]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({"ca": CA_PEM.decode()}, "no 'certificate'"),
        ({"certificate": "garbage", "ca": CA_PEM.decode()}, "not a PEM certificate"),
    ],
)
async def test_answers_without_a_usable_certificate_are_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, answer: Mapping[str, Any], reason: str
) -> None:
    cluster = FakeCluster()
    old, time, renewed, renewer = setup(tmp_path, 600.0, cluster)
    cluster.answer = answer
    await run_until(renewer, renewed)
    assert reason in caplog.text and time.sleeps == [SETTINGS.renew_retry_s]


async def test_a_certificate_for_another_node_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = FakeCluster(name="worker-other")
    old, time, renewed, renewer = setup(tmp_path, 600.0, cluster)
    task = asyncio.create_task(renewer.run())
    try:
        await eventually_async(lambda: len(cluster.csrs) >= 2, 10.0, "a second request", poll_s=0.0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert "for name 'worker-other', not 'worker-3f9a1c'" in caplog.text
    assert load_node(str(tmp_path)) == old and not renewed.materials
