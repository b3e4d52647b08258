"""The docker runtime: a task is a Docker container, driven through the Docker SDK.

Only this module imports `docker`. Every blocking SDK call runs in a thread (`asyncio.to_thread`);
the two long-lived streams (the engine's events, a followed log) get their own daemon threads, so
they never hold the loop's small default executor.

Containers are named `warren-<service>.<slot or node>.<task>` and carry the labels of `base.py`
(a global service's task has no slot label). `list` and `exits` filter on this worker's cluster and
node labels, so workers sharing one engine never see each other's containers. No Docker restart
policy is set: restarting is the worker's decision.

Mounts (`docker.types.Mount`): a volume is the Docker volume of that name, created before the container
if missing, labelled `io.warren.volume=NAME` and `io.warren.node=<node>` (an existing one is used as
it is, as Docker does); `volumes()` lists this node's by that label, `remove_volume` removes only
those. A bind is the node's path the worker checked (symlinks resolved); a tmpfs gets its size.

Published ports: a host-mode mapping binds its host port on every address, as `docker run -p` does. An
ingress mapping (docs/networking.md) binds its target on an ephemeral port Docker chooses, on the
worker's advertised IP address (`ingress_ip`; every address if the worker advertises a host name), so
any number of replicas fit on one node; `ingress_ports` reads the chosen ports back from the engine.

A container on the default network (not `--network host`) joins the node's cluster network when the
worker gave one (`use_network`, made by `ensure_network`: network.py), with the network's gateway as
its DNS server, so Docker's embedded resolver forwards to the worker's; otherwise Docker's bridge.

Exits come from the engine's event stream (`die` events), read in a thread and handed to the loop;
when the stream breaks (engine restart) the thread reconnects, and containers believed running that
stopped meanwhile are reported from a fresh `list`. Each container's exit is reported once
(exitwatch.py). A followed log is read in a thread of its own (pump.py).

Logs are the engine's: stdout and stderr reach it through separate pipes, so lines of the two may
come out of order relative to each other (each stream keeps its own order).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import math
import re
import threading
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import docker  # type: ignore[import-untyped]
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound  # type: ignore[import-untyped]

from warren.config import RuntimeSettings
from warren.errors import NotFoundError
from warren.runtime.base import (
    LABEL_CLUSTER,
    LABEL_NODE,
    LABEL_TASK,
    LABEL_VOLUME,
    LABEL_VOLUME_NODE,
    Exit,
    Instance,
    PortMapping,
    RuntimeStartError,
    RuntimeUnavailableError,
    TaskRun,
    VolumeBusyError,
    task_labels,
)
from warren.runtime.engine import PullError, exec_in, explain, parse_time, pull
from warren.runtime.exitwatch import ExitWatch
from warren.runtime.network import ClusterNetwork, NetworkError, cluster_network, network_labels
from warren.runtime.pump import read_in_thread

log = logging.getLogger(__name__)

T = TypeVar("T")

# Chunks of a followed log buffered between its reader thread and the consumer.
_LOG_QUEUE_CHUNKS = 64
# Characters Docker accepts in a container name after the first.
_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")
# Where a container finds its secrets, one file per secret named after it (as Docker Swarm does).
SECRETS_MOUNT = "/run/secrets"
# Entries of one port's bindings looked at in an engine's answer (a target has a few: IPv4, IPv6, a
# host-mode port beside the ingress one).
_MAX_BINDINGS = 64
# Errors that mean the engine did not answer (socket refused, reset, timed out).
_UNREACHABLE = (requests.exceptions.ConnectionError, requests.exceptions.Timeout)


def container_name(run: TaskRun, node: str) -> str:
    """`warren-<service_name>.<slot or node>.<task_id>`, with characters Docker refuses replaced."""
    where = str(run.slot) if run.slot is not None else node
    return _NAME_UNSAFE.sub("_", f"warren-{run.service_name}.{where}.{run.task_id}")


def docker_mounts(run: TaskRun) -> list[Any]:
    """The task's mounts as the SDK's `docker.types.Mount`s, in the spec's order."""
    return [
        docker.types.Mount(
            m.target, m.source, type=m.type, read_only=m.read_only,
            tmpfs_size=m.size if m.type == "tmpfs" else None,
        )
        for m in run.mounts
    ]


def port_bindings(publish: Sequence[PortMapping], ingress_ip: str | None) -> dict[str, list[Any]]:
    """The engine's port bindings of `publish`: a host-mode mapping at its host port on every address;
    an ingress one on an ephemeral port (HostPort "") on `ingress_ip` (None: every address), once per
    target (two published ports to one target share its host port)."""
    ephemeral = {"HostIp": ingress_ip or "", "HostPort": ""}
    bindings: dict[str, list[Any]] = {}
    for p in publish:
        targets = bindings.setdefault(f"{p.container}/{p.protocol}", [])
        if not p.ingress:
            targets.append(p.host)
        elif ephemeral not in targets:
            targets.append(dict(ephemeral))
    return bindings


def bound_port(entries: object, ingress_ip: str | None, taken: Collection[int]) -> int | None:
    """The ephemeral host port of an ingress binding, from the engine's NetworkSettings.Ports entries
    of its target (`[{"HostIp": ..., "HostPort": "32768"}, ...]`, checked: the engine's answer is read
    like any input); None if it has none. `taken`: the target's host-mode ports, bound beside it. The
    entry on `ingress_ip` (every address: "0.0.0.0") is preferred: an engine that also binds IPv6 may
    give "::" a port of its own."""
    if not isinstance(entries, list):
        return None
    want = ingress_ip or "0.0.0.0"
    found: list[tuple[bool, int]] = []
    for entry in entries[:_MAX_BINDINGS]:
        if not isinstance(entry, dict):
            continue
        text, host_ip = entry.get("HostPort"), entry.get("HostIp")
        if not isinstance(text, str) or not text.isascii() or not text.isdigit() or len(text) > 5:
            continue
        port = int(text)
        if 1 <= port <= 65535 and port not in taken:
            found.append((host_ip != want, port))
    return min(found)[1] if found else None


def ping_engine(timeout_s: float) -> bool:
    """Whether a Docker Engine (from the environment: DOCKER_HOST or the default socket) answers."""
    try:
        client = docker.from_env(timeout=timeout_s)
    except DockerException:
        return False
    try:
        return bool(client.ping())
    except (DockerException, *_UNREACHABLE):
        return False
    finally:
        client.close()


class DockerRuntime:
    """`ContainerRuntime` over the Docker Engine. Without `client`, one is made from the environment
    on first use (so constructing the runtime never blocks); a given client is not closed by `close`.
    `ingress_ip`: the address ingress replicas' ephemeral ports are bound on (None: every address)."""

    driver = "docker"

    def __init__(
        self,
        cluster_id: str,
        node: str,
        client: docker.DockerClient | None = None,
        *,
        settings: RuntimeSettings | None = None,
        ingress_ip: str | None = None,
    ) -> None:
        self.cluster_id = cluster_id
        self.node = node
        self.ingress_ip = ingress_ip
        self._settings = settings if settings is not None else RuntimeSettings()
        self._client = client
        self._own_client = client is None
        self._client_lock = threading.Lock()
        # Engine calls of their own: a stop holds its thread for the task's whole grace period, and
        # twenty of those must not queue the next service's starts behind them (the loop's default
        # executor has only a few threads).
        self._pool = ThreadPoolExecutor(
            max_workers=self._settings.docker_api_threads, thread_name_prefix=f"docker-api-{node}"
        )
        self._label_filters = [f"{LABEL_CLUSTER}={cluster_id}", f"{LABEL_NODE}={node}"]
        self.exit_watch = ExitWatch(
            self._open_events,
            inspect=lambda container_id: self._run(lambda c: c.api.inspect_container(container_id)),
            list_instances=self.list,
            errors=(APIError, RuntimeUnavailableError),
            unreachable=(DockerException, *_UNREACHABLE),
            retry_initial_s=self._settings.events_retry_initial_s,
            retry_max_s=self._settings.events_retry_max_s,
            name=f"docker-events-{node}",
        )
        self._log_streams: set[Any] = set()
        self._closed = False
        # The cluster network containers on the default network join (use_network); None: Docker's bridge.
        self._network: ClusterNetwork | None = None

    # -- the client ---------------------------------------------------------------------------------

    def _client_blocking(self) -> Any:
        with self._client_lock:
            if self._client is None:
                settings = self._settings
                self._client = docker.from_env(
                    timeout=settings.docker_api_timeout_s, max_pool_size=settings.docker_api_threads
                )
            return self._client

    async def _run(self, call: Callable[[Any], T]) -> T:
        """`call(client)` in a thread; an engine that does not answer becomes RuntimeUnavailableError.
        Docker's APIError (NotFound, conflicts...) passes through for the caller to interpret."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._run_blocking, call)

    def _run_blocking(self, call: Callable[[Any], T]) -> T:
        try:
            return call(self._client_blocking())
        except APIError:
            raise
        except (DockerException, *_UNREACHABLE) as exc:
            raise RuntimeUnavailableError(f"the Docker Engine does not answer: {exc}") from exc

    # -- start --------------------------------------------------------------------------------------

    async def start(self, run: TaskRun) -> str:
        self._check_open()
        self.exit_watch.start()
        await self._ensure_image(run.image)
        for mount in run.mounts:
            if mount.type == "volume" and mount.source is not None:
                await self._ensure_volume(mount.source)
        name = container_name(run, self.node)
        try:
            container_id = await self._run(lambda c: self._create(c, run, name))
        except ImageNotFound as exc:  # removed between the check and the create
            raise RuntimeStartError(
                f"image {run.image} is not present on this worker: {explain(exc)}"
            ) from exc
        except APIError as exc:
            if exc.status_code != 409 or not await self._remove_stale(name):
                raise RuntimeStartError(
                    f"cannot create a container for task {run.task_id}: {explain(exc)}"
                ) from exc
            try:
                container_id = await self._run(lambda c: self._create(c, run, name))
            except APIError as again:
                raise RuntimeStartError(
                    f"cannot create a container for task {run.task_id}: {explain(again)}"
                ) from again
        try:
            await self._run(lambda c: c.api.start(container_id))
        except APIError as exc:
            # Not left behind as a "created" container that list() would report forever.
            with contextlib.suppress(APIError, RuntimeUnavailableError):
                await self._run(lambda c: c.api.remove_container(container_id, v=True, force=True))
            raise RuntimeStartError(f"task {run.task_id} did not start: {explain(exc)}") from exc
        self.exit_watch.running(container_id, run.task_id)
        log.info("started container %s (%s) for task %s", name, container_id[:12], run.task_id)
        return container_id

    def _create(self, client: Any, run: TaskRun, name: str) -> str:
        """Create (not start) the task's container through the low-level API, which, unlike
        `containers.create`, takes a stop timeout; its ID."""
        bindings = port_bindings(run.publish, self.ingress_ip)
        # The task's secrets (a directory on the host's tmpfs), read-only; no mount without secrets.
        binds: dict[str, dict[str, str]] = {}
        if run.secrets_dir is not None:
            binds[run.secrets_dir] = {"bind": SECRETS_MOUNT, "mode": "ro"}
        # Each config, a file the worker wrote at the mode asked, read-only at its target.
        for config in run.config_files:
            binds[config.host] = {"bind": config.target, "mode": "ro"}
        options = run.options
        # On the default network: the node's cluster network (if any) and its gateway as the resolver.
        network = self._network if options.network == "bridge" else None
        host_config = client.api.create_host_config(
            port_bindings=bindings or None,
            nano_cpus=round(run.cpus * 1e9) if run.cpus is not None else None,
            mem_limit=run.memory,
            binds=binds or None,
            mounts=docker_mounts(run) or None,
            # The container options (warren.spec.container); each left to the engine's default when off.
            network_mode="host" if options.network == "host" else network.name if network else None,
            dns=[network.gateway] if network else None,
            privileged=options.privileged,
            read_only=options.read_only or None,
            init=options.init or None,
            cap_add=list(options.cap_add) or None,
            cap_drop=list(options.cap_drop) or None,
            # As mappings, not "host:container:perms" text: a device path may hold a ":".
            devices=[
                {"PathOnHost": d.host, "PathInContainer": d.container, "CgroupPermissions": d.permissions}
                for d in run.devices
            ] or None,
            ulimits=[
                {"name": name, "soft": limit.soft, "hard": limit.hard}
                for name, limit in options.ulimits.items()
            ] or None,
            sysctls=dict(options.sysctls) or None,
        )
        created = client.api.create_container(
            run.image,
            command=list(run.command) if run.command is not None else None,
            name=name,
            labels=task_labels(self.cluster_id, self.node, run),
            environment=dict(run.env),
            ports=list(dict.fromkeys((p.container, p.protocol) for p in run.publish)),
            host_config=host_config,
            stop_timeout=max(1, math.ceil(run.stop_timeout_s)),
            user=options.user,
            working_dir=options.workdir,
            hostname=options.hostname,
            stop_signal=options.stop_signal,
            detach=True,
        )
        return str(created["Id"])

    async def _ensure_image(self, image: str) -> None:
        try:
            await self._run(lambda c: c.images.get(image))
            return
        except ImageNotFound:
            pass
        except APIError as exc:  # e.g. an invalid reference
            raise RuntimeStartError(f"image {image} cannot be used: {explain(exc)}") from exc
        log.info("image %s is not present; pulling it", image)
        try:
            await self._run(
                lambda c: pull(
                    c, image, self._settings.image_pull_stall_s, self._settings.image_pull_timeout_s
                )
            )
            await self._run(lambda c: c.images.get(image))
        except (APIError, PullError) as exc:
            raise RuntimeStartError(
                f"image {image} is not present on this worker and could not be pulled: {explain(exc)}"
            ) from exc

    async def _ensure_volume(self, name: str) -> None:
        """Volume `name` exists: as it is if it does, else created with this node's labels."""
        try:
            await self._run(lambda c: c.api.inspect_volume(name))
            return
        except NotFound:
            pass
        except APIError as exc:
            raise RuntimeStartError(f"volume {name} cannot be used: {explain(exc)}") from exc
        labels = {LABEL_VOLUME: name, LABEL_VOLUME_NODE: self.node}
        try:
            await self._run(lambda c: c.api.create_volume(name, labels=labels))
        except APIError as exc:
            raise RuntimeStartError(f"cannot create volume {name}: {explain(exc)}") from exc
        log.info("created volume %s", name)

    async def volumes(self) -> builtins.list[str]:
        self._check_open()
        try:
            answer = await self._run(
                lambda c: c.api.volumes(filters={"label": f"{LABEL_VOLUME_NODE}={self.node}"})
            )
        except APIError as exc:
            raise RuntimeUnavailableError(f"cannot list volumes: {explain(exc)}") from exc
        names = set()
        for volume in answer.get("Volumes") or ():
            name = (volume.get("Labels") or {}).get(LABEL_VOLUME)
            if isinstance(name, str) and name == volume.get("Name"):  # as this worker makes them
                names.add(name)
        return sorted(names)

    async def remove_volume(self, name: str) -> None:
        self._check_open()
        try:
            volume = await self._run(lambda c: c.api.inspect_volume(name))
        except NotFound:
            return
        except APIError as exc:
            raise VolumeBusyError(explain(exc)) from exc
        if (volume.get("Labels") or {}).get(LABEL_VOLUME_NODE) != self.node:
            return  # not this node's: left alone
        try:
            await self._run(lambda c: c.api.remove_volume(name))
        except NotFound:
            return
        except APIError as exc:  # 409: a container uses it
            raise VolumeBusyError(explain(exc)) from exc
        log.info("removed volume %s", name)

    # -- the cluster network (network.py) ------------------------------------------------------------

    async def ensure_network(self, name: str) -> ClusterNetwork:
        self._check_open()
        try:
            attrs = await self._run(lambda c: self._network_blocking(c, name))
        except APIError as exc:
            raise NetworkError(f"cannot make Docker network {name}: {explain(exc)}") from exc
        except RuntimeUnavailableError as exc:
            raise NetworkError(f"cannot make Docker network {name}: {exc}") from exc
        return cluster_network(attrs, name=name, cluster_id=self.cluster_id, node=self.node)

    def _network_blocking(self, client: Any, name: str) -> Any:
        """The inspect answer of network `name`, created first (a bridge, labelled) if there is none."""
        try:
            return client.api.inspect_network(name)
        except NotFound:
            pass
        try:
            labels = network_labels(self.cluster_id, self.node)
            client.api.create_network(name, driver="bridge", labels=labels, check_duplicate=True)
            log.info("created Docker network %s", name)
        except APIError as exc:
            if exc.status_code != 409:  # 409: made meanwhile (another start of this worker): use it
                raise
        return client.api.inspect_network(name)

    def use_network(self, network: ClusterNetwork | None) -> None:
        self._network = network

    async def _remove_stale(self, name: str) -> bool:
        """A container of ours with this name that no longer runs (an earlier run of the same task) is
        removed, so the task can start again under its name. True if the name is free now."""
        try:
            old = await self._run(lambda c: c.containers.get(name))
        except NotFound:
            return True
        labels = old.labels or {}
        ours = labels.get(LABEL_CLUSTER) == self.cluster_id and labels.get(LABEL_NODE) == self.node
        if not ours or old.status in ("running", "restarting", "paused"):
            return False
        await self.remove(old.id)
        return True

    # -- stop, remove, list -------------------------------------------------------------------------

    async def stop(self, container_id: str, timeout_s: float) -> None:
        self._check_open()
        # The SDK extends the request's timeout by the stop grace period itself.
        seconds = max(0, math.ceil(timeout_s))
        try:
            await self._run(lambda c: c.api.stop(container_id, timeout=seconds))
        except NotFound:
            return
        except APIError as exc:
            raise RuntimeUnavailableError(f"cannot stop container {container_id}: {explain(exc)}") from exc

    async def remove(self, container_id: str) -> None:
        self._check_open()
        try:
            await self._run(lambda c: c.api.remove_container(container_id, v=True, force=True))
        except NotFound:
            pass
        except APIError as exc:
            if exc.status_code != 409 or "in progress" not in explain(exc):
                raise RuntimeUnavailableError(
                    f"cannot remove container {container_id}: {explain(exc)}"
                ) from exc
        self.exit_watch.removed(container_id)

    async def list(self) -> list[Instance]:
        self._check_open()
        self.exit_watch.start()  # a restarted worker lists first: exits from then on are reported
        containers = await self._run(
            lambda c: c.containers.list(all=True, filters={"label": self._label_filters}, ignore_removed=True)
        )
        instances = []
        for container in containers:
            # Only Warren's labels: a container also inherits its image's.
            labels = {k: v for k, v in (container.labels or {}).items() if k.startswith("warren.")}
            state = container.attrs.get("State", {})
            running = bool(state.get("Running"))
            started_at = parse_time(state.get("StartedAt"))
            exit_code = None if running or started_at is None else state.get("ExitCode")
            task_id = labels.get(LABEL_TASK, "")
            if running:
                self.exit_watch.running(container.id, task_id)
            instances.append(Instance(task_id, container.id, running, exit_code, started_at, labels))
        return instances

    # -- exits --------------------------------------------------------------------------------------

    def exits(self) -> AsyncIterator[Exit]:
        """Exits as the engine reports them, from the moment the runtime was first used (start, list
        or this call). Meant for one consumer at a time (the worker agent); call it in the loop."""
        self._check_open()
        self.exit_watch.start()
        return self.exit_watch.stream()

    def _open_events(self, since: int | None) -> Any:
        """Thread: the engine's `die` events of this worker's containers."""
        filters = {"type": "container", "event": "die", "label": self._label_filters}
        return self._client_blocking().events(decode=True, filters=filters, since=since)

    # -- logs, exec, address ------------------------------------------------------------------------

    async def logs(self, container_id: str, *, follow: bool, tail: int | None) -> AsyncIterator[bytes]:
        self._check_open()
        try:
            stream = await self._run(
                lambda c: c.api.logs(
                    container_id, stream=True, follow=follow, tail=tail if tail is not None else "all"
                )
            )
        except NotFound as exc:
            raise NotFoundError(f"no container {container_id} on this worker") from exc
        except APIError as exc:
            raise RuntimeUnavailableError(f"cannot read the logs of {container_id}: {explain(exc)}") from exc
        self._log_streams.add(stream)
        try:
            async for chunk in read_in_thread(
                stream, name=f"docker-logs-{container_id[:12]}", max_waiting=_LOG_QUEUE_CHUNKS
            ):
                yield chunk
        finally:
            self._log_streams.discard(stream)

    async def exec(self, container_id: str, cmd: builtins.list[str], timeout_s: float) -> int:
        """Exit status of `cmd` run in the container; -1 if it did not finish within `timeout_s` or
        could not run at all (container unknown or not running)."""
        self._check_open()
        try:
            return await self._run(lambda c: exec_in(c, container_id, cmd, timeout_s))
        except APIError as exc:
            log.debug("exec in %s failed: %s", container_id, explain(exc))
            return -1

    async def address(self, container_id: str) -> str:
        self._check_open()
        try:
            attrs = await self._run(lambda c: c.api.inspect_container(container_id))
        except NotFound as exc:
            raise NotFoundError(f"no container {container_id} on this worker") from exc
        settings = attrs.get("NetworkSettings") or {}
        if settings.get("IPAddress"):
            return str(settings["IPAddress"])
        for network in (settings.get("Networks") or {}).values():
            if network and network.get("IPAddress"):
                return str(network["IPAddress"])
        return "127.0.0.1"  # host network: the task's ports are the host's

    async def ingress_ports(self, container_id: str, publish: Sequence[PortMapping]) -> dict[int, int]:
        self._check_open()
        wanted = [p for p in publish if p.ingress]
        if not wanted:
            return {}
        try:
            attrs = await self._run(lambda c: c.api.inspect_container(container_id))
        except NotFound:
            return {}
        except APIError as exc:
            raise RuntimeUnavailableError(f"cannot inspect container {container_id}: {explain(exc)}") from exc
        settings = attrs.get("NetworkSettings") if isinstance(attrs, dict) else None
        bound = settings.get("Ports") if isinstance(settings, dict) else None
        bound = bound if isinstance(bound, dict) else {}
        ports: dict[int, int] = {}
        for p in wanted:
            key = f"{p.container}/{p.protocol}"
            taken = {q.host for q in publish if not q.ingress and f"{q.container}/{q.protocol}" == key}
            port = bound_port(bound.get(key), self.ingress_ip, taken)
            if port is None:
                log.warning("container %s: the engine reports no host port for %s (published %d)",
                            container_id[:12], key, p.host)
            else:
                ports[p.host] = port
        return ports

    # -- close --------------------------------------------------------------------------------------

    async def version(self) -> str:
        """"Docker Engine 20.10.24": what `warren worker start` announces."""
        info = await self._run(lambda c: c.version())
        return f"Docker Engine {info.get('Version', '?')}"

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for stream in self._log_streams:
            with contextlib.suppress(Exception):
                stream.close()
        await self.exit_watch.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._own_client and self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeUnavailableError("the docker runtime is closed")
