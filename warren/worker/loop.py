"""The worker's loop: keep this node's containers in line with its assignments, one controller per task
(warren.worker.controller, after swarmkit's agent/worker.go).

Inputs: the assignments (from the session, or from worker.db while no manager answers), the
runtimes' containers (listed at start, so a restarted worker adopts what it left running), their
exits (`runtime.exits()`), and health check results. Each of these pokes the tasks it concerns; the
loop hands each poked task to its controller, which converges it on its own.

Status updates go through worker.db's queue and are sent by their own loop as soon as they are made
(an exit reaches the leader in milliseconds, not at the next heartbeat).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from warren.config import WorkerSettings
from warren.errors import ConfigError, StorageError
from warren.runtime.base import ContainerRuntime, NodeResources, RuntimeUnavailableError
from warren.runtime.network import NetworkError, NetworkingRuntime
from warren.spec.taskstate import RUNNING
from warren.worker.backoff import Backoff
from warren.worker.cache import WorkerCache
from warren.worker.client import NodeRemovedError, WorkerClient
from warren.worker.configs import TaskConfigs
from warren.worker.containers import Container, Containers
from warren.worker.controller import TaskController
from warren.worker.endpoints import EndpointsTable
from warren.worker.ingress import IngressProxy
from warren.worker.logstream import LogForwarder
from warren.worker.reporter import StatusReporter
from warren.worker.secrets import TaskSecrets
from warren.worker.session import WorkerSession
from warren.worker.volumes import VolumeKeeper

if TYPE_CHECKING:
    from warren.worker.dns import DnsServer

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1
# Under the worker's data dir: the configs' contents and each task's config files.
CONFIGS_DIR = "configs"
# Docker's `dns` option takes an address, not a port: containers ask port 53.
CONTAINER_DNS_PORT = 53


class WorkerLoop:
    """One worker's loop; `run(stop)` until `stop` is set (0) or the node was removed (1).

    Everything it is given is open and owned by the caller (client, cache, runtimes). `announce`
    receives the few lines worth printing to a person (the daemon prints them with a check mark).
    """

    def __init__(
        self,
        *,
        node: str,
        settings: WorkerSettings,
        client: WorkerClient,
        cache: WorkerCache,
        runtimes: Sequence[ContainerRuntime],
        resources: NodeResources,
        addr: str,
        labels: Mapping[str, str],
        heartbeat_period_s: float = 1.0,
        announce: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        secrets: TaskSecrets | None = None,
        configs: TaskConfigs | None = None,
    ) -> None:
        self.node = node
        self.settings = settings
        self.client = client
        self.cache = cache
        self.runtimes: Mapping[str, ContainerRuntime] = {rt.driver: rt for rt in runtimes}
        self.clock = clock
        self.wall = wall

        self.digest, self.assignments = cache.assignments()
        # Whether `assignments` is something a manager said (now, or before a restart): only then may
        # containers of tasks missing from it be removed.
        self.authoritative = self.digest is not None
        self.containers = Containers()
        # The controller of each task this worker has (assigned, with a local view, or a container);
        # an idle one is forgotten, so the map does not grow with every task this worker ever ran.
        self.tasks: dict[str, TaskController] = {
            task_id: TaskController(task_id, self, lt) for task_id, lt in cache.local_tasks().items()
        }
        self._assigned(self.assignments)
        self.exit_status = EXIT_OK
        # Secret values (memory only) and each task's secrets dir on tmpfs.
        self.secrets = secrets if secrets is not None else TaskSecrets(settings.resolved_secrets_dir(node))
        # Config contents (on disk: they outlive a restart) and each task's config files.
        self.configs = configs if configs is not None else TaskConfigs(
            os.path.join(settings.resolved_data_dir, CONFIGS_DIR)
        )
        # The cluster's service endpoints (session news, kept in the data dir) and the DNS server that
        # answers names from them (started by `run`; None: no task could reach it), and the address
        # process tasks are told (None: dns_addr off or no process runtime).
        self.endpoints = EndpointsTable(settings.resolved_data_dir)
        self.endpoints.load()
        self.dns: DnsServer | None = None
        # The ingress proxy: it listens on the table's published ports (None: ingress_host off); set
        # `_ingress_changed` when the table changes.
        self.ingress = None if settings.ingress_host is None else IngressProxy(
            settings.ingress_host, connect_timeout_s=settings.ingress_connect_timeout_s,
            max_connections=settings.ingress_max_connections, suspect_s=settings.ingress_suspect_s,
        )
        self._ingress_changed = asyncio.Event()
        self.dns_for_processes: tuple[str, int] | None = None
        # Missing secret values and config contents last asked for (known=None): ("secret"|"config", name).
        self._missing_asked: frozenset[tuple[str, str]] = frozenset()

        self._dirty: set[str] = set()
        self._all_dirty = True
        self._wake = asyncio.Event()
        self._done = asyncio.Event()
        self._timers: set[asyncio.TimerHandle] = set()
        self._loops: list[asyncio.Task[None]] = []
        self.statuses = StatusReporter(client, cache, settings)
        self.logs = LogForwarder(client, node, self._log_source)
        self.volumes = VolumeKeeper(self.runtimes, self._volumes_in_use,
                                    list_timeout_s=settings.volume_list_timeout_s)
        self.session = WorkerSession(
            client, settings, self, addr=addr, labels=labels, resources=resources,
            heartbeat_period_s=heartbeat_period_s, announce=announce or (lambda line: log.info("%s", line)),
            clock=clock, volumes=self.volumes,
        )

    # -- life cycle -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> int:
        """Run until `stop` is set; the containers keep running after it returns."""
        try:
            for runtime in self.runtimes.values():
                self._loops.append(self._spawn(self._watch_exits(runtime), f"exits-{runtime.driver}"))
            await self._start_dns()
            if self.ingress is not None:
                self._loops.append(self._spawn(self._ingress_loop(self.ingress), "ingress"))
            await self._adopt()
            self._clean_task_dirs()
            self._loops += [
                self._spawn(self.session.run(), "session"),
                self._spawn(self.statuses.run(), "status"),
                self._spawn(self._reconcile_loop(), "reconcile"),
            ]
            stopping = asyncio.create_task(stop.wait())
            done = asyncio.create_task(self._done.wait())
            try:
                await asyncio.wait({stopping, done}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
                done.cancel()
            return self.exit_status
        finally:
            await self._close()

    async def _close(self) -> None:
        for handle in self._timers:
            handle.cancel()
        for task in self._loops:
            task.cancel()
        steps = [step for c in list(self.tasks.values()) if (step := c.cancel()) is not None]
        await asyncio.gather(*self._loops, *steps, return_exceptions=True)
        await self.logs.close()
        await self.volumes.close()
        if self.dns is not None:
            await self.dns.stop()
        if self.ingress is not None:
            await self.ingress.close()
        for controller in list(self.tasks.values()):
            await controller.stop_health()

    async def _start_dns(self) -> None:
        """Start the DNS server of service names for the tasks that can reach it: process tasks on
        dns_addr (they share the worker's network), Docker containers on their cluster network's gateway,
        port 53 (docker_network). A worker with neither starts none and does not load dnspython (about
        3 MB of its memory). The containers' part failing is a warning: they run as without it."""
        settings = self.settings
        bind = settings.dns_bind() if "process" in self.runtimes else None
        docker = self.runtimes.get("docker")
        networking = isinstance(docker, NetworkingRuntime)
        network_name = settings.docker_network_name(self.node) if networking else None
        if bind is None and network_name is None:
            return
        from warren.worker.dns import DnsServer

        server = DnsServer(
            lambda: self.endpoints.current, host=bind[0] if bind else None, port=bind[1] if bind else 0,
            ttl_s=settings.dns_ttl_s, forward_timeout_s=settings.dns_forward_timeout_s,
            max_forwards=settings.dns_max_forwards,
        )
        try:
            await server.start()
        except OSError as exc:
            raise ConfigError(f"the DNS server cannot listen on {self.settings.dns_addr}: "
                              f"{exc.strerror or exc} (worker start --dns-addr)") from None
        self.dns = server
        self.dns_for_processes = server.address if bind else None
        if isinstance(docker, NetworkingRuntime) and network_name is not None:
            await self._serve_containers(server, docker, network_name)
        if not server.addresses:
            await server.stop()
            self.dns = None

    async def _serve_containers(self, server: DnsServer, docker: NetworkingRuntime, name: str) -> None:
        """The node's cluster network, the DNS server on its gateway, and the Docker runtime told to put
        containers there; on any failure one warning and containers stay on Docker's bridge."""
        what = "Docker containers get no service names (they run on Docker's default bridge)"
        try:
            network = await docker.ensure_network(name)
        except NetworkError as exc:
            log.warning("%s: %s (worker start --docker-network off stops trying)", what, exc)
            return
        try:
            await server.listen(network.gateway, CONTAINER_DNS_PORT)
        except OSError as exc:
            why = exc.strerror or str(exc)
            if exc.errno in (errno.EACCES, errno.EPERM):
                why += ": port 53 needs root or CAP_NET_BIND_SERVICE"
            elif exc.errno == errno.EADDRINUSE:
                why += ": another DNS server listens there"
            log.warning("%s: the DNS server cannot listen on %s:%d, the gateway of Docker network %s: %s "
                        "(worker start --docker-network off stops trying)",
                        what, network.gateway, CONTAINER_DNS_PORT, network.name, why)
            return
        docker.use_network(network)
        log.info("Docker containers join network %s (%s) and resolve service names at %s:%d",
                 network.name, network.subnet, network.gateway, CONTAINER_DNS_PORT)

    async def _ingress_loop(self, proxy: IngressProxy) -> None:
        """Give the proxy each new table (the one kept from the last run first: a worker restarted while
        cut off keeps forwarding; none heard yet: it listens on nothing)."""
        while True:
            self._ingress_changed.clear()
            current = self.endpoints.current
            await proxy.update({} if current is None else current.ingress_routes())
            await self._ingress_changed.wait()

    @property
    def discovery_env(self) -> Mapping[str, str]:
        """What a process task is told of service names: the resolver (WARREN_DNS, "IP:PORT") and the
        hosts-style file (WARREN_HOSTS)."""
        env = {"WARREN_HOSTS": self.endpoints.hosts_path}
        if self.dns_for_processes is not None:
            host, port = self.dns_for_processes
            env["WARREN_DNS"] = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return env

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(self._guard(coro, name), name=name)
        return task

    async def _guard(self, coro: Any, name: str) -> None:
        """A loop's task boundary: the node's removal or a broken worker.db ends the worker."""
        try:
            await coro
        except NodeRemovedError as exc:
            log.error(
                "node %s was removed from the cluster (a manager refused its credentials: %s); the worker "
                "stops. To rejoin, remove its data dir and run `warren worker start` with a new token",
                self.node, exc,
            )
            self.fail()
        except StorageError as exc:
            log.critical("worker.db failed: %s; the worker stops", exc)
            self.fail()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the worker's %s loop failed; the worker stops", name)
            self.fail()

    def fail(self) -> None:
        self.exit_status = EXIT_ERROR
        self._done.set()

    async def _adopt(self) -> None:
        """Take over the containers this node already has (left by a previous run of the worker)."""
        for runtime in self.runtimes.values():
            for inst in await runtime.list():
                known = self.containers.get(inst.container_id)
                if known is not None and not known.running:
                    continue  # its exit arrived while listing
                self.containers.put(
                    Container(inst.task_id, inst.container_id, runtime.driver, inst.running, inst.exit_code)
                )
        running = self.containers.running_count()
        if self.containers:
            log.info("found %d containers of this node (%d running)", len(self.containers), running)

    def _clean_task_dirs(self) -> None:
        """Remove the secrets and config dirs of tasks this worker no longer has (they ended while it was
        away)."""
        with_local = {task_id for task_id, c in self.tasks.items() if c.local is not None}
        keep = set(self.assignments) | with_local | self.containers.task_ids()
        try:
            self.secrets.clean(keep)
        except OSError as exc:
            log.warning("cannot clean up the secrets dir %s: %s", self.secrets.base_dir, exc)
        try:
            self.configs.clean(keep)
        except OSError as exc:
            log.warning("cannot clean up the configs dir %s: %s", self.configs.base_dir, exc)

    # -- the session's news (session.SessionListener) ----------------------------------------------

    @property
    def cut_off(self) -> bool:
        return self.session.cut_off

    def known_digest(self) -> str | None:
        # Values are held in memory only: after a restart the cached assignments are current but their
        # secrets are gone (and a config's content may be missing, e.g. a disk was cleaned). Claiming no
        # assignments gets them all again, once per set of missing values (one the leader cannot send,
        # e.g. a removed secret, is not asked for at every heartbeat).
        if self.digest is not None:
            running = [self._controller(task_id) for task_id, d in self.assignments.items()
                       if d.get("desired_state") == RUNNING]
            secrets = {n for controller in running for n in controller.secrets()}
            configs = {n for controller in running for n in controller.configs()}
            missing = frozenset({("secret", n) for n in self.secrets.missing(secrets)}
                                | {("config", n) for n in self.configs.missing(configs)})
            if missing and missing != self._missing_asked:
                self._missing_asked = missing
                return None
        return self.digest

    def known_endpoints(self) -> str | None:
        return self.endpoints.digest

    def endpoints_received(self, doc: Any) -> None:
        if doc is not None and self.endpoints.received(doc):
            self._ingress_changed.set()

    def secrets_received(self, values: Mapping[str, Any]) -> None:
        """The values of the secrets this node's tasks use (with a full assignments answer)."""
        self.secrets.replace(values)

    def configs_received(self, values: Mapping[str, Any]) -> None:
        """The contents of the configs this node's tasks use (with a full assignments answer)."""
        try:
            self.configs.replace(values)
        except OSError as exc:  # a task that needs one fails saying so, and is tried again
            log.error("cannot keep the configs' contents in %s: %s", self.configs.content_dir, exc)

    def assignments_received(self, digest: str | None, tasks: list[dict[str, Any]] | None) -> None:
        if tasks is not None:
            # Only the tasks whose document changed (or that left) are saved and looked at again.
            new = {str(t["task_id"]): t for t in tasks}
            changed = [task_id for task_id, doc in new.items() if self.assignments.get(task_id) != doc]
            removed = [task_id for task_id in self.assignments if task_id not in new]
            digest = digest or ""
            self.cache.save_assignments(digest, [new[task_id] for task_id in changed], removed)
            self.assignments = new
            self._assigned(new)
            self.digest = digest
            for task_id in changed + removed:
                self.poke(task_id)
        if not self.authoritative:
            self.authoritative = True
            self.poke()

    def log_requested(self, request: Mapping[str, Any]) -> None:
        self.logs.open(request)

    def connectivity_changed(self, online: bool) -> None:
        # Online: queued statuses go now, tasks waiting for a local restart are reported instead.
        # Offline: tasks whose exit no manager heard of may be restarted in place.
        if online:
            self.statuses.wake()
        self.poke()

    def running_count(self) -> int:
        return self.containers.running_count()

    # -- exits and health -------------------------------------------------------------------------

    async def _watch_exits(self, runtime: ContainerRuntime) -> None:
        backoff = Backoff(self.settings.retry_initial_delay_s, self.settings.retry_max_delay_s)
        while True:
            try:
                async for ex in runtime.exits():
                    backoff.reset()
                    self._on_exit(runtime.driver, ex.task_id, ex.container_id, ex.exit_code, ex.message)
            except RuntimeUnavailableError as exc:
                log.warning("the %s runtime's exit events broke off: %s", runtime.driver, exc)
            await asyncio.sleep(backoff.delay())

    def _on_exit(
        self, driver: str, task_id: str, container_id: str, exit_code: int | None, message: str
    ) -> None:
        if self.containers.removed(container_id):
            return  # removed by this worker (it stopped it); nothing to report
        known = self.containers.get(container_id)
        if known is None:
            known = Container(task_id, container_id, driver, running=False)
            self.containers.put(known)
        known.running = False
        known.exit_code = exit_code
        known.message = message
        self.poke(known.task_id)

    # -- the tasks' controllers (controller.TaskHost) ---------------------------------------------

    def assignment(self, task_id: str) -> Mapping[str, Any] | None:
        return self.assignments.get(task_id)

    def _controller(self, task_id: str) -> TaskController:
        controller = self.tasks.get(task_id)
        if controller is None:
            controller = self.tasks[task_id] = TaskController(task_id, self)
        return controller

    def _assigned(self, assignments: Mapping[str, Mapping[str, Any]]) -> None:
        for task_id, doc in assignments.items():
            self._controller(task_id).assigned(doc)

    def poke(self, task_id: str | None = None) -> None:
        """Look at one task again (all of them with None)."""
        if task_id is None:
            self._all_dirty = True
        else:
            self._dirty.add(task_id)
        self._wake.set()

    def poke_later(self, delay_s: float, task_id: str) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            self.poke(task_id)

        handle = loop.call_later(max(0.0, delay_s), fire)
        self._timers.add(handle)

    def step_done(self, task_id: str) -> None:
        controller = self.tasks.get(task_id)
        if controller is not None and controller.idle:
            del self.tasks[task_id]

    async def _reconcile_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._all_dirty:
                self._all_dirty = False
                ids = set(self.assignments) | set(self.tasks) | self.containers.task_ids()
            else:
                ids = self._dirty
            self._dirty = set()
            for task_id in ids:
                self._controller(task_id).poke()

    def _volumes_in_use(self) -> set[str]:
        """The volumes that a task of this worker mounts: one the managers still assign here (not final),
        or one with a container."""
        used: set[str] = set()
        for task_id, controller in self.tasks.items():
            spec = controller.spec
            if spec is not None and (task_id in self.assignments or self.containers.of_task(task_id)):
                used.update(spec.volumes)
        return used

    def _log_source(self, request: Mapping[str, Any]) -> tuple[ContainerRuntime | None, str | None]:
        """The runtime and container of a log request's task (the one the leader named, else the
        task's current one)."""
        container_id = request.get("container_id")
        known = self.containers.get(str(container_id)) if container_id else None
        if known is not None:
            return self.runtimes.get(known.driver), known.container_id
        controller = self.tasks.get(str(request.get("task_id") or ""))
        lt = controller.local if controller is not None else None
        if lt is None or lt.container_id is None:
            return None, None
        return self.runtimes.get(lt.driver), lt.container_id
