"""Runs a worker: `warren worker start` (`run_worker`, blocking) and a hybrid manager's local worker
(`WorkerAgent`, inside the manager's event loop).

Start-up: the identity (node.json and the TLS material in tls/: join with the token, or resume
without one), then the runtimes (they label containers with the cluster and node, so they need the
identity), then the worker's loop, with the certificate renewal (warren.pki.renewal) running beside it.
Stopping (SIGTERM/SIGINT, or the `stop` event) ends the loop only: the tasks' containers and
processes keep running, and the next start adopts them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import resource
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import uvloop

from warren import logs
from warren.config import OrchestratorSettings, WorkerSettings
from warren.durable import private_data_dir
from warren.errors import ConfigError, CorruptStateError, UnauthorizedError, UnavailableError
from warren.formats import split_host_port
from warren.pki import offload
from warren.pki.join import pinned_ca
from warren.pki.material import NodeMaterial, load_node, tls_dir
from warren.pki.renewal import Renewer, utc_text
from warren.runtime.base import ContainerRuntime, NodeResources
from warren.worker import identity as ident
from warren.worker import resources as res
from warren.worker.backoff import Backoff
from warren.worker.cache import WorkerCache
from warren.worker.client import FetchCA, JoinAnswer, WorkerClient
from warren.worker.identity import WorkerIdentity
from warren.worker.loop import EXIT_OK, WorkerLoop

log = logging.getLogger(__name__)

Announce = Callable[[str], None]


def check(line: str) -> None:
    print(f"✓ {line}", flush=True)


class WorkerAgent:
    """A worker agent for an asyncio program; `await WorkerAgent(settings, token=T).run(stop)`.

    - `settings`: WorkerSettings (managers, data dir, runtime kind, labels, timers), validated here.
    - `token`: a worker join token; needed only if the data dir holds no identity yet.
    - `runtimes`: already open runtimes to use (tests); by default `warren.runtime.open_runtimes`
      opens them after the join and `run` closes them at the end.
    - `announce`: receives the lines a person wants to see (joined, runtimes, connected); by default
      they are logged at INFO.
    - `on_identity`: called with the node's identity once it is known (the daemon names its log
      lines after it).
    - `transport`, `fetch_ca`: replace the network to the managers (tests; see WorkerClient).

    `run(stop)` returns 0 once `stop` is set (or `await agent.stop()` is called: `run()` may also be
    called without an event), 1 if the node was removed from the cluster (or the worker's state
    broke); it raises WarrenError if the worker cannot start (no token, the join refused or no
    manager answered within WorkerSettings.join_timeout_s, no runtime). Either way the tasks'
    containers keep running.
    """

    def __init__(
        self,
        settings: WorkerSettings,
        *,
        token: str | None = None,
        runtimes: Sequence[ContainerRuntime] | None = None,
        announce: Announce | None = None,
        on_identity: Callable[[WorkerIdentity], None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        fetch_ca: FetchCA = pinned_ca,
    ) -> None:
        settings.validate()
        self.settings = settings
        self._token = token
        self._given_runtimes = list(runtimes) if runtimes is not None else None
        self.announce: Announce = announce or (lambda line: log.info("%s", line))
        self._on_identity = on_identity
        self._transport = transport
        self._fetch_ca = fetch_ca
        self.identity: WorkerIdentity | None = None
        self.worker_loop: WorkerLoop | None = None  # while `run` runs, once started
        self._stop = asyncio.Event()
        self._running = False
        self._finished = asyncio.Event()

    async def stop(self) -> None:
        """Stop `run` (the containers keep running) and wait until it has returned."""
        self._stop.set()
        if self._running:
            await self._finished.wait()

    async def run(self, stop: asyncio.Event | None = None) -> int:
        if stop is not None:
            self._stop = stop
        self._running = True
        self._finished.clear()
        try:
            return await self._run(self._stop)
        finally:
            self._running = False
            self._finished.set()

    async def _run(self, stop: asyncio.Event) -> int:
        settings = self.settings
        data_dir = private_data_dir(settings.resolved_data_dir)
        me = ident.load(data_dir)
        managers = list(settings.managers)
        client = WorkerClient(managers, settings, transport=self._transport, fetch_ca=self._fetch_ca)
        runtimes: list[ContainerRuntime] = []
        opened = False
        cache: WorkerCache | None = None
        renewing: asyncio.Task[None] | None = None
        try:
            addr = settings.advertise_host or _default_addr(managers[0])
            labels = dict(settings.labels)
            heartbeat_period_s = OrchestratorSettings().heartbeat_period_s
            if me is None:
                if not self._token:
                    raise ConfigError(
                        f"{data_dir} holds no worker identity: joining needs --token (from `warren cluster "
                        "join-token worker`) and --manager"
                    )
                drivers = await _planned_drivers(settings.runtime, self._given_runtimes)
                resources = res.detect(drivers, allow_privileged=settings.allow_privileged,
                                       allow_devices=settings.allow_devices,
                                   allow_binds=settings.allow_binds)
                answer = await _join(client, self._token, addr, labels, resources, settings, stop, data_dir)
                if answer is None:
                    return EXIT_OK  # stopped while no manager answered yet
                me = WorkerIdentity(answer.name, answer.secret, answer.cluster_id, tuple(managers))
                ident.save(data_dir, me)
                heartbeat_period_s = answer.heartbeat_period_s
                self._identified(me)
                self.announce(f"Worker joined cluster {me.cluster_id} (Node ID: {me.name})")
            else:
                client.use_material(_resumed_material(data_dir, me))
                if tuple(managers) != me.managers:
                    me = dataclasses.replace(me, managers=tuple(managers))
                    ident.save(data_dir, me)
                self._identified(me)
                self.announce(f"Worker resumed in cluster {me.cluster_id} (Node ID: {me.name})")
            client.authenticate(me.name, me.secret)
            renewer = Renewer(data_dir, client.renew, client.use_material)
            renewing = asyncio.create_task(_keep_renewed(renewer), name="certificate-renewal")

            if self._given_runtimes is not None:
                runtimes = list(self._given_runtimes)
            else:
                from warren.runtime import open_runtimes

                # It pings the engine (up to a few seconds): not on the event loop.
                runtimes = await asyncio.to_thread(
                    open_runtimes, settings.runtime, cluster_id=me.cluster_id, node=me.name,
                    data_dir=data_dir, ingress_ip=ingress_ip(addr),
                )
                opened = True
            self.announce("Runtime: " + ", ".join([await _describe(rt) for rt in runtimes]))
            resources = res.detect([rt.driver for rt in runtimes], allow_privileged=settings.allow_privileged,
                                   allow_devices=settings.allow_devices,
                                   allow_binds=settings.allow_binds)

            cache = WorkerCache.open(data_dir)
            worker_loop = self.worker_loop = WorkerLoop(
                node=me.name,
                settings=settings,
                client=client,
                cache=cache,
                runtimes=runtimes,
                resources=resources,
                addr=addr,
                labels=labels,
                heartbeat_period_s=heartbeat_period_s,
                announce=self.announce,
            )
            status = await worker_loop.run(stop)
            log.info("worker %s stopped; its tasks keep running and are adopted by its next start", me.name)
            return status
        finally:
            if renewing is not None:
                renewing.cancel()
                await asyncio.gather(renewing, return_exceptions=True)
            if cache is not None:
                cache.close()
            if opened:
                for runtime in runtimes:
                    try:
                        await runtime.close()
                    except Exception:  # shutting down: one runtime's trouble must not hide the rest
                        log.exception("closing the %s runtime failed", runtime.driver)
            await client.close()

    def _identified(self, me: WorkerIdentity) -> None:
        self.identity = me
        if self._on_identity is not None:
            self._on_identity(me)


def run_worker(settings: WorkerSettings, *, token: str | None) -> int:
    """`warren worker start`: run a worker in the foreground until SIGTERM/SIGINT; the exit status."""
    settings.validate()
    logs.setup("worker", repeat_window_s=settings.log_repeat_window_s)
    _raise_nofile_limit()
    # Keys are made and checked in child processes (warren.pki.offload).
    with offload.enabled_in(), asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_main(settings, token))


def _raise_nofile_limit() -> None:
    """Raise the soft RLIMIT_NOFILE to the hard one (as the manager daemon does): each connection the
    ingress forwards holds two descriptors, and a service manager's default soft 1024 would stop it
    near 500 connections, far under ingress_max_connections. Unlimited limits are left alone."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (OSError, ValueError) as exc:
            log.warning("cannot raise the open files limit from %d to %d: %s", soft, hard, exc)


async def _main(settings: WorkerSettings, token: str | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    agent = WorkerAgent(
        settings,
        token=token,
        announce=check,
        on_identity=lambda me: logs.setup(me.name, repeat_window_s=settings.log_repeat_window_s),
    )
    return await agent.run(stop)


# -- start-up steps -------------------------------------------------------------------------------


def ingress_ip(addr: str) -> str | None:
    """Where Docker binds ingress replicas' ports: the worker's advertised host if it is an IP address
    (the one other workers' ingress proxies connect to; nothing else of the node's is exposed), else
    (a host name, which may resolve to several) every address."""
    try:
        return str(ipaddress.ip_address(addr))
    except ValueError:
        return None


def _default_addr(manager: str) -> str:
    host, port = split_host_port(manager, field="manager")
    return res.local_address_towards(host, port)


async def _planned_drivers(kind: str, given: Sequence[ContainerRuntime] | None) -> list[str]:
    """The drivers to announce when joining (the runtimes are opened after it, once the node has a
    name to label its containers with); the first session call reports the ones actually opened.
    ConfigError before joining if the kind offers Docker and no engine answers."""
    if given is not None:
        return [rt.driver for rt in given]
    from warren.runtime import drivers_of, require_docker

    await asyncio.to_thread(require_docker, kind)
    return list(drivers_of(kind))


async def _join(
    client: WorkerClient,
    token: str,
    addr: str,
    labels: dict[str, str],
    resources: NodeResources,
    settings: WorkerSettings,
    stop: asyncio.Event,
    data_dir: str,
) -> JoinAnswer | None:
    """Join, retrying while no manager answers (a cluster still starting) for up to join_timeout_s;
    None if `stop` is set meanwhile. The TLS material is saved in `data_dir`."""
    backoff = Backoff(settings.retry_initial_delay_s, settings.retry_max_delay_s)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.join_timeout_s
    while True:
        try:
            return await client.join(token, addr, labels, resources.to_doc(), data_dir=data_dir)
        except UnavailableError as exc:
            delay = backoff.delay()
            if loop.time() + delay > deadline:
                raise UnavailableError(
                    f"could not join within {settings.join_timeout_s:g} s: {exc}"
                ) from None
            log.info("join: %s; retrying", exc)
            try:
                async with asyncio.timeout(delay):
                    await stop.wait()
                return None
            except TimeoutError:
                pass


def _resumed_material(data_dir: str, me: WorkerIdentity) -> NodeMaterial:
    """The TLS material a resuming worker presents; CorruptStateError (none, damaged, another node's)
    or UnauthorizedError (expired) with what to do if it has none it can use: without a valid
    certificate no manager will talk to it."""
    rejoin = (
        f"remove {data_dir} and join this worker again with a new token (`warren node rm {me.name}` "
        "removes its old node)"
    )
    material = load_node(data_dir)
    if material is None:
        raise CorruptStateError(
            f"{data_dir} holds the identity of worker {me.name} but no TLS certificate in "
            f"{tls_dir(data_dir)} (it joined before the cluster used TLS, or the directory was removed): "
            + rejoin
        )
    who = material.identity
    if (who.name, who.role, who.cluster_id) != (me.name, "worker", me.cluster_id):
        raise CorruptStateError(
            f"the certificate in {tls_dir(data_dir)} is that of {who.role} {who.name} of cluster "
            f"{who.cluster_id}, not of worker {me.name} of cluster {me.cluster_id}: " + rejoin
        )
    expired = material.facts.not_after
    if expired <= time.time():
        raise UnauthorizedError(
            f"the certificate of worker {me.name} expired at {utc_text(expired)} (the worker was stopped "
            "for longer than its certificate lifetime, so no manager accepts it any more): " + rejoin
        )
    return material


async def _keep_renewed(renewer: Renewer) -> None:
    """The renewal runs as long as the worker's loop; a failure of it must not stop the loop (a task
    boundary), though the certificate then expires unless the worker is restarted in time."""
    try:
        await renewer.run()
    except Exception:
        log.exception("certificate renewal stopped; restart this worker before its certificate expires")


async def _describe(runtime: ContainerRuntime) -> str:
    """"docker (Docker Engine 20.10.24)" if the runtime can say its version (an optional
    `async version() -> str`), else its driver."""
    version: Any = getattr(runtime, "version", None)
    if callable(version):
        try:
            text = await version()
        except Exception:  # only a description: an engine that cannot say its version still runs tasks
            log.debug("the %s runtime did not say its version", runtime.driver, exc_info=True)
        else:
            if text:
                return f"{runtime.driver} ({text})"
    return runtime.driver
