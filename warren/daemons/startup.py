"""A manager's start-up steps, each idempotent, so a manager killed at any point resumes by rerunning
the same command: the identity (node.json) is written before anything depends on it, the founder's
TLS material before Raft starts, bootstrap runs only on an uninitialised log, the cluster's first
command only if the state has no cluster, and a join that was not promoted yet is finished by the
rerun. What they print is the command's output (stdout); the daemon logs to stderr.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import secrets
import sqlite3
import time
from dataclasses import dataclass

from warren.api.forwarder import FORWARDED_HEADER
from warren.config import ManagerSettings
from warren.durable import read_if_exists
from warren.errors import ConfigError, InvalidError, WarrenError, raft_errors
from warren.manager import identity as ident
from warren.manager.consensus import Consensus
from warren.manager.control import Control
from warren.manager.identity import Identity
from warren.manager.peer import PeerClient
from warren.pki import material, offload, sealing
from warren.pki.founding import FOUNDER_CA_KEY, KeptCA, make_pki, open_ca_key
from warren.pki.join import pinned_ca
from warren.store import commands as c
from warren.store import queries, schema
from warren.store.machine import check_state_file


@dataclass(frozen=True, slots=True)
class JoinRequest:
    token: str | None
    manager: str | None


@dataclass(slots=True)
class Running:
    """A started manager, as the start-up steps and the shutdown see it."""

    settings: ManagerSettings
    data_dir: str
    me: Identity  # replaced when a step records its progress (joined, restored)
    consensus: Consensus
    peers: PeerClient
    control: Control

    def save(self, me: Identity) -> None:
        ident.save(self.data_dir, me)
        self.me = me


def check(line: str) -> None:
    print(f"✓ {line}", flush=True)


def say(line: str = "") -> None:
    print(line, flush=True)


# -- before Raft: identity and TLS material ------------------------------------------------------------


def founder_identity(
    settings: ManagerSettings, data_dir: str, restore: str | None, restore_key: str | None
) -> Identity:
    """The founder's identity (made, or the one a previous run wrote), with its TLS material."""
    me = ident.load(data_dir)
    kept: KeptCA | None = None
    if me is not None:
        if restore is not None:
            raise ConfigError(
                f"{data_dir} already holds manager {me.name} of {me.cluster_id}; "
                "--restore needs an empty data dir"
            )
        if not me.founder and not me.joined:
            raise ConfigError(
                f"{me.name} was joining a cluster: finish with `warren manager join --token ...`"
            )
    else:
        cluster_id = "cluster-" + secrets.token_hex(3)
        if restore is not None:
            restore = os.path.abspath(restore)
            cluster_id = _backup_cluster_id(restore)
            if restore_key is not None:
                kept = _backup_ca(restore, restore_key)  # checked before anything is written
        me = Identity(
            name=f"manager-1-{secrets.token_hex(3)}",
            raft_id=1,
            api_addr=settings.api_advertise,
            raft_addr=settings.raft_advertise,
            cluster_id=cluster_id,
            founder=True,
            restore_from=restore,
        )
        ident.save(data_dir, me)
    if me.founder and material.load_node(data_dir) is None:
        _found_pki(settings, data_dir, me, kept)
    return me


def _backup_cluster_id(path: str) -> str:
    check_state_file(path, versions=schema.IMPORTABLE_VERSIONS)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        cluster = queries.cluster(conn)
    finally:
        conn.close()
    if cluster is None:
        raise InvalidError(f"{path}: the backup holds no cluster")
    return str(cluster["cluster_id"])


def _backup_ca(backup: str, key_file: str) -> KeptCA:
    """The CA of the cluster in `backup`, opened with that cluster's data key from `key_file`."""
    from warren.pki import certs

    data_key = read_if_exists(key_file)
    if data_key is None or len(data_key) != sealing.KEY_BYTES:
        raise ConfigError(f"--restore-key {key_file}: not a cluster data key (a manager's tls/data.key)")
    check_state_file(backup, versions=schema.IMPORTABLE_VERSIONS)
    conn = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        record = queries.cluster_ca(conn) if queries.has_table(conn, "pki") else None
    finally:
        conn.close()
    if record is None:
        raise ConfigError(
            f"{backup} holds no CA (made by a Warren without TLS): restore it without --restore-key"
        )
    ca_pem, sealed = record
    try:
        ca_key = open_ca_key(data_key, sealed)
    except WarrenError:
        raise ConfigError(
            f"--restore-key {key_file} does not open the CA key in {backup} (another cluster's key?)"
        ) from None
    return KeptCA(data_key, ca_key, certs.load_cert(ca_pem.encode("ascii")), sealed)


def _found_pki(settings: ManagerSettings, data_dir: str, me: Identity, kept: KeptCA | None) -> None:
    """The cluster's CA and data key (new, or a restored cluster's `kept` ones), this manager's
    certificate and the CLI's admin certificate (a new CA is made in a child process once offloading
    is enabled, so the founder keeps no `cryptography`: warren.pki.offload).

    Written before Raft starts; node.pem last, so a crash before it makes a rerun start over here.
    """
    lifetime_s = settings.node_cert_lifetime_s
    if kept is None and offload.enabled():
        args = {"data_dir": data_dir, "cluster_id": me.cluster_id, "name": me.name}
        admin_dir = str(offload.run_sync("found_pki", node_lifetime_s=lifetime_s, **args))
    else:
        admin_dir = make_pki(lifetime_s, data_dir, me.cluster_id, me.name, kept)
    what = "Cluster CA created" if kept is None else "Cluster CA restored"
    check(f"{what}; admin certificate for the CLI written to {admin_dir}")


def load_pki(data_dir: str) -> tuple[material.NodeMaterial, bytes]:
    node = material.load_node(data_dir)
    data_key = material.load_data_key(data_dir)
    if node is None or data_key is None:
        raise ConfigError(
            f"{data_dir} has no TLS material ({material.tls_dir(data_dir)}): it was made by an older Warren "
            "or damaged; remove the data dir and join this manager again"
        )
    return node, data_key


async def register(
    settings: ManagerSettings, data_dir: str, peers: PeerClient, token: str, manager: str
) -> tuple[Identity, str]:
    """Step one of a join: check the manager's CA against the token, then the leader checks the token,
    gives this manager its name and Raft ID, signs its certificate and hands it the data key."""
    ca_pem = await asyncio.to_thread(pinned_ca, manager, token)
    await peers.use_tls(material.client_context(ca_pem, None))
    key = await offload.new_join_key()  # `cryptography` in a child process: this daemon keeps none
    body = {
        "token": token,
        "api_addr": settings.api_advertise,
        "raft_addr": settings.raft_advertise,
        "csr": key.csr_pem,
    }
    doc, headers = await peers.call(manager, "POST", "/v1/managers/join", body)
    try:
        data_key = base64.b64decode(str(doc["data_key"]), validate=True)
        cert_pem = str(doc["certificate"]).encode("ascii")
    except (KeyError, ValueError) as exc:
        raise WarrenError(f"{manager} answered the join without a certificate or data key ({exc})") from None
    material.save_data_key(data_dir, data_key)
    material.save_node(data_dir, ca_pem, cert_pem, key.key_pem)
    me = Identity(
        name=str(doc["name"]),
        raft_id=int(doc["raft_id"]),
        api_addr=settings.api_advertise,
        raft_addr=settings.raft_advertise,
        cluster_id=str(doc["cluster_id"]),
        joined=False,
    )
    ident.save(data_dir, me)
    return me, headers.get(FORWARDED_HEADER.decode(), manager)


# -- with Raft running ----------------------------------------------------------------------------------


async def found(node: Running, tls: material.NodeMaterial) -> None:
    """The founder: bootstrap (once), the cluster's first command or a backup's import, the CA record."""
    consensus, me = node.consensus, node.me
    with raft_errors():
        initialized = await consensus.node.is_initialized()
        if not initialized:
            await consensus.node.bootstrap()
    leader = await consensus.wait_for_leader(node.settings.startup_leader_timeout_s)
    if leader.raft_id == me.raft_id:  # the core's fresh answer, never a cached one
        await consensus.read_barrier()
        record = c.ManagerRecord(me.name, me.raft_id, me.api_addr, me.raft_addr)
        if me.restore_from is not None:
            counts = await node.control.backups.restore(me.restore_from, tls.ca_pem, record)
            check(
                f"State restored from {me.restore_from} ({counts.get('services', 0)} services, "
                f"{counts.get('join_tokens', 0)} join tokens, {counts.get('secrets', 0)} secrets)"
            )
            if counts.get("secrets_left", 0):
                say(
                    f"! {counts['secrets_left']} secrets and the old CA were not restored: they are sealed "
                    "with the old cluster's data key (restore with --restore-key <old data-dir>/tls/data.key "
                    "to keep them); recreate the secrets, and join nodes with new tokens"
                )
            node.save(dataclasses.replace(me, restore_from=None))
        elif queries.cluster(consensus.store.conn) is None:
            await consensus.propose(c.InitCluster(me.cluster_id, time.time(), record))
        await _record_ca(node, tls)
    if initialized:
        announce_resumed(node)
        return
    check("Raft consensus initialized (single-node)")
    _announce_started(node)
    say()
    say("Cluster initialized successfully!")
    say("To add managers, generate join token:")
    say("  warren cluster join-token manager")


async def _record_ca(node: Running, tls: material.NodeMaterial) -> None:
    """The founder records the CA (and its own certificate) in the state, once."""
    consensus = node.consensus
    if queries.cluster_ca(consensus.store.conn) is not None:
        return
    sealed = read_if_exists(os.path.join(material.tls_dir(node.data_dir), FOUNDER_CA_KEY))
    if sealed is None:
        raise ConfigError(f"{node.data_dir}: the founder's sealed CA key ({FOUNDER_CA_KEY}) is missing")
    now = time.time()
    await consensus.propose(c.SetClusterCA(tls.ca_pem.decode("ascii"), sealed.decode("ascii"), now))
    cert = tls.facts
    await consensus.propose(c.RecordCert(cert.fingerprint, node.me.name, "manager", cert.not_after, now))


async def promote(node: Running, token: str, via: str) -> None:
    """Step two of a join, with Raft running: the leader makes this manager a voter once caught up."""
    doc, _ = await node.peers.call(
        via,
        "POST",
        f"/v1/managers/{node.me.name}/promote",
        {"token": token},
        timeout_s=node.settings.promote_timeout_s,
    )
    node.save(dataclasses.replace(node.me, joined=True))
    check("Raft joined as follower")
    _announce_started(node)
    say()
    say("Manager joined successfully!")
    voters, needed = int(doc["voters"]), int(doc["needed"])
    say(f"Raft quorum: {voters}/{voters} managers (needs {needed} for majority)")


def announce_resumed(node: Running) -> None:
    voters = len(node.consensus.metrics()["voters"])
    check(f"Raft consensus resumed ({voters} manager{'s' if voters != 1 else ''})")
    _announce_started(node)
    say()
    say(f"Manager resumed ({node.me.cluster_id})")


def _announce_started(node: Running) -> None:
    me, settings = node.me, node.settings
    check(f"Manager started (Node ID: {me.name})")
    check(f"API server listening on {settings.listen_addr} (advertised as {me.api_addr})")
    check(f"Metrics available at http://{settings.metrics_addr}/metrics")
