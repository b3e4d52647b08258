"""Runs a manager in the foreground: `warren cluster init` and `warren manager join` end here.

Start-up is a list of idempotent steps, so a manager killed at any point resumes by rerunning the same
command: the identity (node.json) is written before anything depends on it, bootstrap runs only on an
uninitialised log, the cluster's first command only if the state has no cluster, and a join that was
not promoted yet is finished by the rerun.

Leader-only services (worker sessions, the reconcile loop) start and stop with leadership
(leadership.py). Unless --manager-only, a local worker runs in the same process once the manager is
up (local_worker.py); it never delays the manager's start or stop.

SIGTERM/SIGINT: the local worker stops first (its containers keep running), a leader hands leadership
to the most up-to-date voter (no election timeout for the others), the leader services stop, the API
drains its open requests, then Raft stops.

A storage fault in the Raft log (a failed write or fsync: disk full, I/O error) stops the Raft core
for good; the manager then shuts down the same way and exits non-zero with one line naming the file
and the errno (`warren: raft stopped: raft log write failed: ...`). Restarted with a working disk, it
resumes from its last durable log entry.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import os
import secrets
import signal
import sqlite3
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import uvloop
import warren_raft

from warren import logs
from warren.api.app import create_app
from warren.api.forwarder import FORWARDED_HEADER, Forwarder
from warren.api.peer import PeerClient
from warren.config import SECURITY, ManagerSettings
from warren.durable import private_data_dir, read_if_exists, write_atomically
from warren.errors import ConfigError, InvalidError, StorageError, WarrenError, raft_errors
from warren.manager import identity as ident
from warren.manager.ca import CA_KEY_AAD, seal_ca_key
from warren.manager.consensus import Consensus, MemberMeta
from warren.manager.identity import Identity
from warren.manager.leadership import LeaderServices
from warren.manager.local_worker import LocalWorker
from warren.manager.manager import Manager
from warren.manager.metrics import ManagerMetrics, metrics_app
from warren.manager.servers import SOCKET_NAME, HttpServer, bind, bind_unix, raise_nofile_limit
from warren.manager.tlskeeper import TlsKeeper, renew_through
from warren.pki import material, offload, peek, sealing, userconfig
from warren.pki.join import pinned_ca
from warren.store import commands as c
from warren.store import queries, schema
from warren.store.machine import check_state_file

if TYPE_CHECKING:  # `cryptography` is loaded to make a CA or a key (init, join, restore), not to resume
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1


@dataclass(frozen=True, slots=True)
class JoinRequest:
    token: str | None
    manager: str | None


def check(line: str) -> None:
    print(f"✓ {line}", flush=True)


def say(line: str = "") -> None:
    print(line, flush=True)


# -- entry points -------------------------------------------------------------------------------------


def run_init(settings: ManagerSettings, *, restore: str | None = None, restore_key: str | None = None) -> int:
    """Start (or resume) a manager that founds a cluster; blocks until SIGTERM/SIGINT. Exit status."""
    settings.validate()
    with offload.enabled_in():  # keys and certificates are made in child processes (warren.pki.offload)
        return _run_init(settings, restore, restore_key)


def _run_init(settings: ManagerSettings, restore: str | None, restore_key: str | None) -> int:
    data_dir = private_data_dir(settings.resolved_data_dir)
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
    return _run(settings, data_dir, me, None)


def run_join(settings: ManagerSettings, *, token: str | None, manager: str | None) -> int:
    """Join an existing cluster as a manager (or resume one that joined before); blocks. Exit status."""
    settings.validate()
    data_dir = private_data_dir(settings.resolved_data_dir)
    me = ident.load(data_dir)
    if me is None or not me.joined:
        if not token or not manager:
            raise ConfigError(
                "joining needs --token (from `warren cluster join-token manager`) and --manager"
            )
    with offload.enabled_in():  # keys and certificates are made in child processes (warren.pki.offload)
        return _run(settings, data_dir, me, JoinRequest(token, manager))


# -- certificates -------------------------------------------------------------------------------------

# The founder keeps its sealed CA key here until the cluster's state has recorded it (SetClusterCA).
FOUNDER_CA_KEY = "ca-key.sealed"


@dataclass(frozen=True, slots=True)
class KeptCA:
    """A backed-up cluster's CA, opened with its data key, for a restore that keeps it."""

    data_key: bytes = dataclasses.field(repr=False)
    ca_key: ec.EllipticCurvePrivateKey = dataclasses.field(repr=False)
    ca_cert: x509.Certificate
    sealed: str


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
        ca_key = certs.load_key(sealing.unseal(data_key, base64.b64decode(sealed), CA_KEY_AAD))
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


def make_pki(
    node_lifetime_s: float, data_dir: str, cluster_id: str, name: str, kept: KeptCA | None = None
) -> str:
    """_found_pki's work: writes the TLS material, answers the admin certificate's directory."""
    from warren.pki import certs

    if kept is None:
        data_key = os.urandom(sealing.KEY_BYTES)
        ca_key, ca_cert = certs.create_ca(cluster_id, SECURITY.ca_lifetime_s)
        sealed = seal_ca_key(data_key, ca_key)
    else:
        data_key, ca_key, ca_cert, sealed = kept.data_key, kept.ca_key, kept.ca_cert, kept.sealed
    material.save_data_key(data_dir, data_key)
    write_atomically(os.path.join(material.tls_dir(data_dir), FOUNDER_CA_KEY), sealed.encode("ascii"))

    def issue(node: str, role: peek.Role, lifetime_s: float) -> tuple[bytes, bytes]:
        key = certs.new_key()
        cert = certs.issue(
            ca_key,
            ca_cert,
            key.public_key(),
            name=node,
            role=role,
            cluster_id=cluster_id,
            lifetime_s=lifetime_s,
        )
        return certs.cert_pem(cert), certs.key_pem(key)

    ca_pem = certs.cert_pem(ca_cert)
    admin = issue("admin", "admin", SECURITY.admin_cert_lifetime_s)
    admin_dir = userconfig.save_admin(cluster_id, ca_pem, *admin)
    material.save_node(data_dir, ca_pem, *issue(name, "manager", node_lifetime_s))
    return str(admin_dir)


def _load_pki(data_dir: str) -> tuple[material.NodeMaterial, bytes]:
    node = material.load_node(data_dir)
    data_key = material.load_data_key(data_dir)
    if node is None or data_key is None:
        raise ConfigError(
            f"{data_dir} has no TLS material ({material.tls_dir(data_dir)}): it was made by an older Warren "
            "or damaged; remove the data dir and join this manager again"
        )
    return node, data_key


# -- the daemon ---------------------------------------------------------------------------------------


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


def _setup_logging(settings: ManagerSettings, name: str) -> None:
    logs.setup(name, repeat_window_s=settings.log_repeat_window_s)
    warren_raft.init_logging("info")


def _run(settings: ManagerSettings, data_dir: str, me: Identity | None, join: JoinRequest | None) -> int:
    raise_nofile_limit()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_main(settings, data_dir, me, join))


async def _main(
    settings: ManagerSettings, data_dir: str, me: Identity | None, join: JoinRequest | None
) -> int:
    peers = PeerClient(timeout_s=settings.forward_timeout_s, probe_timeout_s=settings.probe_timeout_s)
    try:
        if me is None:
            assert join is not None and join.token and join.manager
            me, leader_addr = await _register(settings, data_dir, peers, join.token, join.manager)
            check(f"Connected to cluster leader at {leader_addr}")
        _setup_logging(settings, me.name)
        return await _serve(settings, data_dir, me, join, peers)
    finally:
        await peers.close()


async def _register(
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


async def _serve(
    settings: ManagerSettings, data_dir: str, me: Identity, join: JoinRequest | None, peers: PeerClient
) -> int:
    node_tls, data_key = _load_pki(data_dir)
    client_tls = material.client_context(node_tls.ca_pem, node_tls.node_path)
    server_tls = material.server_context(node_tls)
    await peers.use_tls(client_tls)
    consensus = Consensus.open(
        raft_dir=os.path.join(data_dir, "raft"),
        data_dir=data_dir,
        raft_id=me.raft_id,
        listen_addr=me.raft_addr,
        advertise_addr=me.raft_addr,
        meta=MemberMeta(me.name, me.api_addr),
        settings=settings,
        tls=node_tls,
    )
    applying = consensus.start()
    manager = Manager(me, settings, consensus, peers, data_key)
    metrics = ManagerMetrics(consensus)
    forwarder = Forwarder(settings.forward_timeout_s, client_tls)
    # A session call may reach the leader through a follower: hold it well within the forward timeout.
    hold_s = min(settings.orchestrator.heartbeat_period_s, settings.forward_timeout_s / 2)
    leader_services = LeaderServices(consensus, metrics=metrics, hold_s=hold_s, data_key=data_key)
    manager.leader_services = leader_services
    leader_services.start()
    local_worker: LocalWorker | None = None
    keeper: TlsKeeper | None = None
    servers: list[HttpServer] = []
    try:
        api = create_app(manager, metrics, forwarder)
        grace = settings.shutdown_grace_s
        servers.append(
            HttpServer(
                api,
                bind(settings.listen_addr, "listen_addr"),
                settings.listen_addr,
                grace_s=grace,
                tls=server_tls,
            )
        )
        socket_path = os.path.join(data_dir, SOCKET_NAME)
        servers.append(HttpServer(api, bind_unix(socket_path), socket_path, grace_s=grace))
        servers.append(
            HttpServer(
                metrics_app(metrics, consensus, me.name),
                bind(settings.metrics_addr, "metrics_addr"),
                settings.metrics_addr,
                grace_s=grace,
            )
        )
        for server in servers:
            await server.start()
        keeper = TlsKeeper(data_dir, consensus, [server_tls, client_tls], renew_through(peers, me.api_addr))
        keeper.start()
        if me.founder:
            await _found(manager, data_dir, node_tls)
        elif not me.joined:
            assert join is not None and join.token and join.manager
            await _promote(manager, data_dir, join.token, join.manager)
        else:
            _announce_resumed(manager)
        if not settings.manager_only:
            local_worker = LocalWorker(settings, data_dir, me.api_addr, peers)
            local_worker.start()
        return await _until_stopped(manager, applying)
    finally:
        if keeper is not None:
            await keeper.stop()
        await _shutdown(manager, servers, local_worker)
        forwarder.close()


async def _found(manager: Manager, data_dir: str, node: material.NodeMaterial) -> None:
    consensus, me = manager.consensus, manager.identity
    with raft_errors():
        initialized = await consensus.node.is_initialized()
        if not initialized:
            await consensus.node.bootstrap()
    await consensus.wait_for_leader(manager.settings.startup_leader_timeout_s)
    if consensus.is_leader():
        await consensus.read_barrier()
        if me.restore_from is not None:
            counts = await manager.import_backup(me.restore_from, node.ca_pem)
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
            me = dataclasses.replace(me, restore_from=None)
            ident.save(data_dir, me)
            manager.identity = me
        elif queries.cluster(manager.conn) is None:
            record = c.ManagerRecord(me.name, me.raft_id, me.api_addr, me.raft_addr)
            await consensus.propose(c.InitCluster(me.cluster_id, time.time(), record))
        await _record_ca(manager, data_dir, node)
    if initialized:
        _announce_resumed(manager)
        return
    check("Raft consensus initialized (single-node)")
    _announce_started(manager)
    say()
    say("Cluster initialized successfully!")
    say("To add managers, generate join token:")
    say("  warren cluster join-token manager")


async def _record_ca(manager: Manager, data_dir: str, node: material.NodeMaterial) -> None:
    """The founder records the CA (and its own certificate) in the state, once."""
    if queries.cluster_ca(manager.conn) is not None:
        return
    sealed = read_if_exists(os.path.join(material.tls_dir(data_dir), FOUNDER_CA_KEY))
    if sealed is None:
        raise ConfigError(f"{data_dir}: the founder's sealed CA key ({FOUNDER_CA_KEY}) is missing")
    now = time.time()
    await manager.consensus.propose(c.SetClusterCA(node.ca_pem.decode("ascii"), sealed.decode("ascii"), now))
    cert = node.facts
    me = manager.identity
    await manager.consensus.propose(
        c.RecordCert(cert.fingerprint, me.name, "manager", cert.not_after, now)
    )


async def _promote(manager: Manager, data_dir: str, token: str, via: str) -> None:
    me = manager.identity
    doc, _ = await manager.peers.call(
        via,
        "POST",
        f"/v1/managers/{me.name}/promote",
        {"token": token},
        timeout_s=manager.settings.promote_timeout_s,
    )
    me = dataclasses.replace(me, joined=True)
    ident.save(data_dir, me)
    manager.identity = me
    check("Raft joined as follower")
    _announce_started(manager)
    say()
    say("Manager joined successfully!")
    voters, needed = int(doc["voters"]), int(doc["needed"])
    say(f"Raft quorum: {voters}/{voters} managers (needs {needed} for majority)")


def _announce_resumed(manager: Manager) -> None:
    voters = len(manager.consensus.metrics()["voters"])
    check(f"Raft consensus resumed ({voters} manager{'s' if voters != 1 else ''})")
    _announce_started(manager)
    say()
    say(f"Manager resumed ({manager.identity.cluster_id})")


def _announce_started(manager: Manager) -> None:
    me, settings = manager.identity, manager.settings
    check(f"Manager started (Node ID: {me.name})")
    check(f"API server listening on {settings.listen_addr} (advertised as {me.api_addr})")
    check(f"Metrics available at http://{settings.metrics_addr}/metrics")


async def _until_stopped(manager: Manager, applying: asyncio.Task[None]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stopping = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({stopping, applying}, return_when=asyncio.FIRST_COMPLETED)
    if applying in done:
        stopping.cancel()
        exc = applying.exception()
        fatal = manager.consensus.fatal_error()
        if fatal is not None:
            # The Raft core stopped on a storage fault (its log can take nothing more): the manager
            # stops too and exits with that one line, which names the file and the errno.
            raise StorageError(f"raft stopped: {fatal}") from exc
        log.critical("the state machine stopped%s; the manager exits", f": {exc}" if exc else "")
        return EXIT_ERROR
    log.info("stop requested")
    return EXIT_OK


async def _shutdown(manager: Manager, servers: list[HttpServer], local_worker: LocalWorker | None) -> None:
    consensus, settings = manager.consensus, manager.settings
    try:
        if local_worker is not None:
            await local_worker.stop()
        m = consensus.metrics()
        if m["role"] == "leader" and len(m["voters"]) > 1:
            try:
                with raft_errors():
                    new = await consensus.node.transfer_leadership(None, settings.shutdown_transfer_timeout_s)
                log.info("leadership handed to raft id %d before shutdown", new)
            except WarrenError as exc:
                log.warning("could not hand leadership over before shutdown: %s", exc)
        if manager.leader_services is not None:
            await manager.leader_services.stop()
        for server in servers:
            await server.stop()
    finally:
        await consensus.shutdown()
        log.info("manager stopped")
