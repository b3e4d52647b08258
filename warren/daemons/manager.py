"""Runs a manager in the foreground: `warren cluster init` and `warren manager join` end here.

This is the manager's composition root: it builds Raft (warren.manager.consensus), the manager's
service objects (warren.manager.control), the HTTP API over them (warren.api.app) and the servers
(servers.py), and runs them until stopped. Start-up is a list of idempotent steps (startup.py).

Leader-only services (worker sessions, the reconcile loop) start and stop with leadership
(warren.manager.leadership). Unless --manager-only, a local worker runs in the same process once the
manager is up (warren.manager.local_worker); it never delays the manager's start or stop.

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
import logging
import os
import signal

import uvloop
import warren_raft

from warren import logs
from warren.api.app import create_app
from warren.api.forwarder import Forwarder
from warren.config import ManagerSettings
from warren.daemons import startup
from warren.daemons.servers import SOCKET_NAME, HttpServer, bind, bind_unix, raise_nofile_limit
from warren.daemons.startup import JoinRequest, Running, check
from warren.durable import private_data_dir
from warren.errors import ConfigError, StorageError, WarrenError, raft_errors
from warren.manager import control
from warren.manager import identity as ident
from warren.manager.consensus import Consensus, MemberMeta
from warren.manager.identity import Identity
from warren.manager.leadership import LeaderServices
from warren.manager.local_worker import LocalWorker
from warren.manager.metrics import ManagerMetrics, metrics_app
from warren.manager.peer import PeerClient
from warren.manager.tlskeeper import TlsKeeper, renew_through
from warren.pki import material, offload

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1


# -- entry points -------------------------------------------------------------------------------------


def run_init(settings: ManagerSettings, *, restore: str | None = None, restore_key: str | None = None) -> int:
    """Start (or resume) a manager that founds a cluster; blocks until SIGTERM/SIGINT. Exit status."""
    settings.validate()
    with offload.enabled_in():  # keys and certificates are made in child processes (warren.pki.offload)
        data_dir = private_data_dir(settings.resolved_data_dir)
        me = startup.founder_identity(settings, data_dir, restore, restore_key)
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


# -- the daemon ---------------------------------------------------------------------------------------


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
            me, leader_addr = await startup.register(settings, data_dir, peers, join.token, join.manager)
            check(f"Connected to cluster leader at {leader_addr}")
        _setup_logging(settings, me.name)
        return await _serve(settings, data_dir, me, join, peers)
    finally:
        await peers.close()


async def _serve(
    settings: ManagerSettings, data_dir: str, me: Identity, join: JoinRequest | None, peers: PeerClient
) -> int:
    node_tls, data_key = startup.load_pki(data_dir)
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
    consensus.versions.probe = peers.command_version
    applying = consensus.start()
    metrics = ManagerMetrics(consensus)
    forwarder = Forwarder(settings.forward_timeout_s, client_tls)
    # A session call may reach the leader through a follower: hold it well within the forward timeout.
    hold_s = min(settings.orchestrator.heartbeat_period_s, settings.forward_timeout_s / 2)
    leader_services = LeaderServices(consensus, metrics=metrics, hold_s=hold_s, data_key=data_key)
    services = control.build(
        name=me.name,
        cluster_id=me.cluster_id,
        settings=settings,
        consensus=consensus,
        peers=peers,
        metrics=metrics,
        leader_services=leader_services,
        data_key=data_key,
    )
    node = Running(settings, data_dir, me, consensus, peers, services)
    leader_services.start()
    local_worker: LocalWorker | None = None
    keeper: TlsKeeper | None = None
    servers: list[HttpServer] = []
    try:
        api = create_app(services, settings, forwarder)
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
            await startup.found(node, node_tls)
        elif not me.joined:
            assert join is not None and join.token and join.manager
            await startup.promote(node, join.token, join.manager)
        else:
            startup.announce_resumed(node)
        if not settings.manager_only:
            local_worker = LocalWorker(settings, data_dir, me.api_addr, peers)
            local_worker.start()
        return await _until_stopped(consensus, applying)
    finally:
        if keeper is not None:
            await keeper.stop()
        await _shutdown(node, leader_services, servers, local_worker)
        forwarder.close()


async def _until_stopped(consensus: Consensus, applying: asyncio.Task[None]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stopping = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({stopping, applying}, return_when=asyncio.FIRST_COMPLETED)
    if applying in done:
        stopping.cancel()
        exc = applying.exception()
        fatal = consensus.fatal_error()
        if fatal is not None:
            # The Raft core stopped on a storage fault (its log can take nothing more): the manager
            # stops too and exits with that one line, which names the file and the errno.
            raise StorageError(f"raft stopped: {fatal}") from exc
        log.critical("the state machine stopped%s; the manager exits", f": {exc}" if exc else "")
        return EXIT_ERROR
    log.info("stop requested")
    return EXIT_OK


async def _shutdown(
    node: Running,
    leader_services: LeaderServices,
    servers: list[HttpServer],
    local_worker: LocalWorker | None,
) -> None:
    consensus, settings = node.consensus, node.settings
    # Followed event streams end now: their clients resume on another manager, and the servers'
    # drain below does not wait for streams that never end.
    consensus.store.events.close()
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
        await leader_services.stop()
        for server in servers:
            await server.stop()
    finally:
        await consensus.shutdown()
        log.info("manager stopped")
