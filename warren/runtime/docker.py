"""The docker runtime: a task is a Docker container, driven through the Docker SDK.

Only this module imports `docker`. Every blocking SDK call runs in a thread (`asyncio.to_thread`);
the two long-lived streams (the engine's events, a followed log) get their own daemon threads, so
they never hold the loop's small default executor.

Containers are named `warren-<service>.<slot or node>.<task>` and carry the labels of `base.py`
(a global service's task has no slot label). `list` and `exits` filter on this worker's cluster and
node labels, so workers sharing one engine never see each other's containers. No Docker restart
policy is set: restarting is the worker's decision.

Exits come from the engine's event stream (`die` events), read in a thread and handed to the loop;
when the stream breaks (engine restart) the thread reconnects, and containers believed running that
stopped meanwhile are reported from a fresh `list`. Each container's exit is reported once.

Logs are the engine's: stdout and stderr reach it through separate pipes, so lines of the two may
come out of order relative to each other (each stream keeps its own order).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import datetime as dt
import json
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import docker  # type: ignore[import-untyped]
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound  # type: ignore[import-untyped]

from warren.config import RuntimeSettings
from warren.errors import NotFoundError
from warren.runtime.base import (
    LABEL_CLUSTER,
    LABEL_NODE,
    LABEL_SERVICE,
    LABEL_SERVICE_NAME,
    LABEL_SLOT,
    LABEL_TASK,
    Exit,
    Instance,
    RuntimeStartError,
    RuntimeUnavailableError,
    TaskRun,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# Exits already reported, by container ID (a container dies once: the worker never restarts one, it
# starts a new container). Bounded so a long-lived worker does not grow it forever.
_REPORTED_MAX = 10_000
# Chunks of a followed log buffered between its reader thread and the consumer.
_LOG_QUEUE_CHUNKS = 64
# Characters Docker accepts in a container name after the first.
_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")
# Errors that mean the engine did not answer (socket refused, reset, timed out).
_UNREACHABLE = (requests.exceptions.ConnectionError, requests.exceptions.Timeout)


def container_name(run: TaskRun, node: str) -> str:
    """`warren-<service_name>.<slot or node>.<task_id>`, with characters Docker refuses replaced."""
    where = str(run.slot) if run.slot is not None else node
    return _NAME_UNSAFE.sub("_", f"warren-{run.service_name}.{where}.{run.task_id}")


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
    on first use (so constructing the runtime never blocks); a given client is not closed by `close`."""

    driver = "docker"

    def __init__(
        self,
        cluster_id: str,
        node: str,
        client: Any | None = None,
        *,
        settings: RuntimeSettings | None = None,
    ) -> None:
        self.cluster_id = cluster_id
        self.node = node
        self._settings = settings if settings is not None else RuntimeSettings()
        self._client = client
        self._own_client = client is None
        self._client_lock = threading.Lock()
        self._label_filters = [f"{LABEL_CLUSTER}={cluster_id}", f"{LABEL_NODE}={node}"]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._exits: asyncio.Queue[Exit | None] | None = None
        self._watcher: threading.Thread | None = None
        self._stopping = threading.Event()
        self._event_stream: Any = None
        self._reported: OrderedDict[str, None] = OrderedDict()
        self._running: dict[str, str] = {}  # container ID -> task ID, believed running
        self._tasks: set[asyncio.Task[None]] = set()
        self._log_streams: set[Any] = set()
        self._closed = False

    # -- the client ---------------------------------------------------------------------------------

    def _client_blocking(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = docker.from_env(timeout=self._settings.docker_api_timeout_s)
            return self._client

    async def _run(self, call: Callable[[Any], T]) -> T:
        """`call(client)` in a thread; an engine that does not answer becomes RuntimeUnavailableError.
        Docker's APIError (NotFound, conflicts...) passes through for the caller to interpret."""
        return await asyncio.to_thread(self._run_blocking, call)

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
        self._ensure_watcher()
        await self._ensure_image(run.image)
        name = container_name(run, self.node)
        try:
            container_id = await self._run(lambda c: self._create(c, run, name))
        except ImageNotFound as exc:  # removed between the check and the create
            raise RuntimeStartError(
                f"image {run.image} is not present on this worker: {_explain(exc)}"
            ) from exc
        except APIError as exc:
            if exc.status_code != 409 or not await self._remove_stale(name):
                raise RuntimeStartError(
                    f"cannot create a container for task {run.task_id}: {_explain(exc)}"
                ) from exc
            try:
                container_id = await self._run(lambda c: self._create(c, run, name))
            except APIError as again:
                raise RuntimeStartError(
                    f"cannot create a container for task {run.task_id}: {_explain(again)}"
                ) from again
        try:
            await self._run(lambda c: c.api.start(container_id))
        except APIError as exc:
            # Not left behind as a "created" container that list() would report forever.
            with contextlib.suppress(APIError, RuntimeUnavailableError):
                await self._run(lambda c: c.api.remove_container(container_id, v=True, force=True))
            raise RuntimeStartError(f"task {run.task_id} did not start: {_explain(exc)}") from exc
        self._running[container_id] = run.task_id
        log.info("started container %s (%s) for task %s", name, container_id[:12], run.task_id)
        return container_id

    def _create(self, client: Any, run: TaskRun, name: str) -> str:
        """Create (not start) the task's container through the low-level API, which, unlike
        `containers.create`, takes a stop timeout; its ID."""
        labels = {
            LABEL_CLUSTER: self.cluster_id,
            LABEL_NODE: self.node,
            LABEL_SERVICE: run.service_id,
            LABEL_SERVICE_NAME: run.service_name,
            LABEL_TASK: run.task_id,
        }
        if run.slot is not None:
            labels[LABEL_SLOT] = str(run.slot)
        bindings: dict[str, list[int]] = {}
        for p in run.publish:
            bindings.setdefault(f"{p.container}/{p.protocol}", []).append(p.host)
        host_config = client.api.create_host_config(
            port_bindings=bindings or None,
            nano_cpus=round(run.cpus * 1e9) if run.cpus is not None else None,
            mem_limit=run.memory,
        )
        created = client.api.create_container(
            run.image,
            command=list(run.command) if run.command is not None else None,
            name=name,
            labels=labels,
            environment=dict(run.env),
            ports=[(int(key.split("/")[0]), key.split("/")[1]) for key in bindings],
            host_config=host_config,
            stop_timeout=max(1, math.ceil(run.stop_timeout_s)),
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
            raise RuntimeStartError(f"image {image} cannot be used: {_explain(exc)}") from exc
        log.info("image %s is not present; pulling it", image)
        try:
            await self._run(
                lambda c: _pull(
                    c, image, self._settings.image_pull_stall_s, self._settings.image_pull_timeout_s
                )
            )
            await self._run(lambda c: c.images.get(image))
        except (APIError, _PullError) as exc:
            raise RuntimeStartError(
                f"image {image} is not present on this worker and could not be pulled: {_explain(exc)}"
            ) from exc

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
            raise RuntimeUnavailableError(f"cannot stop container {container_id}: {_explain(exc)}") from exc

    async def remove(self, container_id: str) -> None:
        self._check_open()
        try:
            await self._run(lambda c: c.api.remove_container(container_id, v=True, force=True))
        except NotFound:
            pass
        except APIError as exc:
            if exc.status_code != 409 or "in progress" not in _explain(exc):
                raise RuntimeUnavailableError(
                    f"cannot remove container {container_id}: {_explain(exc)}"
                ) from exc
        self._running.pop(container_id, None)
        self._reported.pop(container_id, None)

    async def list(self) -> list[Instance]:
        self._check_open()
        self._ensure_watcher()  # a restarted worker lists first: exits from then on are reported
        containers = await self._run(
            lambda c: c.containers.list(all=True, filters={"label": self._label_filters}, ignore_removed=True)
        )
        instances = []
        for container in containers:
            # Only Warren's labels: a container also inherits its image's.
            labels = {k: v for k, v in (container.labels or {}).items() if k.startswith("warren.")}
            state = container.attrs.get("State", {})
            running = bool(state.get("Running"))
            started_at = _parse_time(state.get("StartedAt"))
            exit_code = None if running or started_at is None else state.get("ExitCode")
            task_id = labels.get(LABEL_TASK, "")
            if running:
                self._running[container.id] = task_id
            instances.append(Instance(task_id, container.id, running, exit_code, started_at, labels))
        return instances

    # -- exits --------------------------------------------------------------------------------------

    def exits(self) -> AsyncIterator[Exit]:
        """Exits as the engine reports them, from the moment the runtime was first used (start, list
        or this call). Meant for one consumer at a time (the worker agent); call it in the loop."""
        self._check_open()
        self._ensure_watcher()
        return self._exit_stream()

    async def _exit_stream(self) -> AsyncIterator[Exit]:
        queue = self._exit_queue()
        while True:
            item = await queue.get()
            if item is None:
                queue.put_nowait(None)  # for any other waiting consumer
                return
            yield item

    def _exit_queue(self) -> asyncio.Queue[Exit | None]:
        if self._exits is None:
            self._exits = asyncio.Queue()
        return self._exits

    def _ensure_watcher(self) -> None:
        """Start the event-stream thread on first use (the constructor may run outside a loop)."""
        if self._watcher is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._exit_queue()
        self._watcher = threading.Thread(target=self._watch, name=f"docker-events-{self.node}", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        """Thread: follow the engine's `die` events of this worker's containers; reconnect when the
        stream ends (engine restart) until the runtime closes."""
        delay = self._settings.events_retry_initial_s
        since: int | None = None
        filters = {"type": "container", "event": "die", "label": self._label_filters}
        while not self._stopping.is_set():
            try:
                stream = self._client_blocking().events(decode=True, filters=filters, since=since)
            except (DockerException, *_UNREACHABLE) as exc:
                log.debug("docker event stream: engine does not answer (%s); retrying in %.1fs", exc, delay)
                self._stopping.wait(delay)
                delay = min(delay * 2, self._settings.events_retry_max_s)
                continue
            self._event_stream = stream
            if self._stopping.is_set():  # close() ran before it could see this stream
                stream.close()
                break
            # Whatever died before this stream opened (start-up, or an engine restart) is found by
            # listing: its `die` event is gone (the engine keeps no history across a restart).
            self._to_loop(self._resync)
            delay = self._settings.events_retry_initial_s
            try:
                for event in stream:
                    since = event.get("time", since)
                    self._to_loop(self._on_die, event)
            except Exception as exc:  # noqa: BLE001 - thread boundary: a broken stream means reconnect
                log.debug("docker event stream broke: %r", exc)
            finally:
                with contextlib.suppress(Exception):
                    stream.close()
            if not self._stopping.is_set():
                log.warning("docker event stream ended (engine restarted?); reconnecting")

    def _to_loop(self, callback: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening any more
            self._loop.call_soon_threadsafe(callback, *args)

    def _on_die(self, event: dict[str, Any]) -> None:
        container_id = event.get("id") or event.get("Actor", {}).get("ID", "")
        attributes = event.get("Actor", {}).get("Attributes", {})
        code = attributes.get("exitCode")
        exit_code = int(code) if code is not None and str(code).lstrip("-").isdigit() else None
        self._report(container_id, attributes.get(LABEL_TASK, ""), exit_code)

    def _report(self, container_id: str, task_id: str, exit_code: int | None, message: str = "") -> None:
        if self._closed or container_id in self._reported:
            return
        self._reported[container_id] = None
        while len(self._reported) > _REPORTED_MAX:
            self._reported.popitem(last=False)
        self._running.pop(container_id, None)
        self._spawn(self._deliver(Exit(task_id, container_id, exit_code, message)))

    async def _deliver(self, exit: Exit) -> None:
        """Add why the container stopped (out of memory, engine error) when the engine knows."""
        message = exit.message
        try:
            attrs = await self._run(lambda c: c.api.inspect_container(exit.container_id))
            state = attrs.get("State", {})
            if state.get("OOMKilled"):
                message = "killed: out of memory"
            elif state.get("Error"):
                message = str(state["Error"])
        except (APIError, RuntimeUnavailableError):
            pass  # already removed: the exit code is all there is
        if not self._closed:
            self._exit_queue().put_nowait(Exit(exit.task_id, exit.container_id, exit.exit_code, message))

    def _resync(self) -> None:
        self._spawn(self._resync_async())

    async def _resync_async(self) -> None:
        """Once a stream is open: containers believed running (started, or seen running by `list`)
        that are not any more died while no stream was open."""
        believed = dict(self._running)
        try:
            now = {i.container_id: i for i in await self.list()}
        except (RuntimeUnavailableError, APIError) as exc:
            log.warning("docker: cannot list containers after reconnecting: %s", exc)
            return
        for container_id, task_id in believed.items():
            instance = now.get(container_id)
            if instance is None or not instance.running:
                code = instance.exit_code if instance is not None else None
                self._report(container_id, task_id, code, "stopped while no engine event stream was open")

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
            raise RuntimeUnavailableError(f"cannot read the logs of {container_id}: {_explain(exc)}") from exc
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        # Backpressure: the reader thread waits for room before handing over another chunk.
        room = threading.Semaphore(_LOG_QUEUE_CHUNKS)
        done = threading.Event()
        self._log_streams.add(stream)

        def pump() -> None:
            try:
                for chunk in stream:
                    room.acquire()
                    if done.is_set():
                        break
                    loop.call_soon_threadsafe(queue.put_nowait, chunk)
            except Exception as exc:  # noqa: BLE001 - thread boundary: the stream was closed or broke
                log.debug("log stream of %s ended: %r", container_id, exc)
            finally:
                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody reads any more
                    loop.call_soon_threadsafe(queue.put_nowait, None)

        threading.Thread(target=pump, name=f"docker-logs-{container_id[:12]}", daemon=True).start()
        try:
            while (chunk := await queue.get()) is not None:
                room.release()
                yield chunk
        finally:
            done.set()
            self._log_streams.discard(stream)
            with contextlib.suppress(Exception):
                stream.close()  # unblocks the reader thread's read
            room.release()  # and its wait for room

    async def exec(self, container_id: str, cmd: builtins.list[str], timeout_s: float) -> int:
        """Exit status of `cmd` run in the container; -1 if it did not finish within `timeout_s` or
        could not run at all (container unknown or not running)."""
        self._check_open()
        try:
            return await self._run(lambda c: _exec(c, container_id, cmd, timeout_s))
        except APIError as exc:
            log.debug("exec in %s failed: %s", container_id, _explain(exc))
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

    # -- close --------------------------------------------------------------------------------------

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        for stream in (self._event_stream, *self._log_streams):
            if stream is not None:
                with contextlib.suppress(Exception):
                    stream.close()
        for task in list(self._tasks):
            task.cancel()
        if self._exits is not None:
            self._exits.put_nowait(None)
        if self._watcher is not None:
            await asyncio.to_thread(self._watcher.join, 5.0)
        if self._own_client and self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeUnavailableError("the docker runtime is closed")


class _PullError(Exception):
    """The engine answered a pull with an error, or the pull did not finish in time."""


def _pull(client: Any, image: str, stall_s: float, timeout_s: float) -> None:
    """Pull `image`: give up when the engine is silent for `stall_s` or the pull is not done within
    `timeout_s`. The SDK's own pull waits without limit, which would hang a start while the engine
    keeps trying an unreachable registry."""
    api = client.api
    repository, tag = docker.utils.parse_repository_tag(image)
    deadline = time.monotonic() + timeout_s
    try:
        response = api.post(
            api._url("/images/create"),
            params={"fromImage": repository, "tag": tag or "latest"},
            stream=True,
            timeout=stall_s,  # connect and every read
        )
    except requests.exceptions.Timeout as exc:
        raise _PullError(f"the Docker Engine did not answer within {stall_s:g}s") from exc
    with response:
        if response.status_code >= 400:
            raise _PullError(_error_body(response))
        try:
            for line in response.iter_lines():
                if time.monotonic() > deadline:
                    raise _PullError(f"not finished within {timeout_s:g}s")
                if not line:
                    continue
                message = json.loads(line)
                if "error" in message:
                    raise _PullError(str(message["error"]))
        except requests.exceptions.RequestException as exc:
            raise _PullError(f"no progress for {stall_s:g}s") from exc
        except ValueError as exc:
            raise _PullError(f"unreadable answer from the Docker Engine: {exc}") from exc


def _error_body(response: Any) -> str:
    try:
        return str(response.json().get("message", response.text))
    except ValueError:
        return str(response.text or response.reason)


def _exec(client: Any, container_id: str, cmd: list[str], timeout_s: float) -> int:
    """Run `cmd` in the container and drain its output until it exits or `timeout_s` passes. The
    socket's own timeout bounds every read, so the thread never outlives the deadline by much."""
    api = client.api
    deadline = time.monotonic() + timeout_s
    exec_id = api.exec_create(container_id, cmd, stdout=True, stderr=True)["Id"]
    sock = api.exec_start(exec_id, socket=True)
    raw = getattr(sock, "_sock", sock)
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return -1
            raw.settimeout(remaining)
            if not sock.read(65536):
                break
    except (TimeoutError, OSError):
        return -1
    finally:
        with contextlib.suppress(OSError):
            sock.close()
            raw.close()  # SocketIO.close leaves the socket itself open
    # The output ends when the process exits; its status is recorded a moment later.
    while True:
        code = api.exec_inspect(exec_id).get("ExitCode")
        if code is not None:
            return int(code)
        if time.monotonic() > deadline:
            return -1
        time.sleep(0.01)


def _explain(exc: BaseException) -> str:
    """The engine's own words for an API error (its `explanation`), else the exception's text."""
    explanation = getattr(exc, "explanation", None)
    if isinstance(explanation, bytes):
        explanation = explanation.decode(errors="replace")
    return str(explanation or exc).strip()


def _parse_time(text: str | None) -> float | None:
    """Epoch seconds of a Docker timestamp ("2024-05-01T12:00:00.123456789Z"); None for Docker's zero
    time (never started)."""
    if not text or text.startswith("0001-"):
        return None
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", text)
    if match is None:
        return None
    base, fraction, zone = match.groups()
    stamp = dt.datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    return stamp.timestamp() + (float("0." + fraction) if fraction else 0.0)
