"""Scenario `cli`: how long `warren service ls` takes as a person at a terminal sees it, a whole process.

One manager is founded through the CLI (`benches.managers`, `--manager-only`) and given a few services
(0 replicas: nothing to run). Each command below is then started `runs` times as a fresh process and
timed from just before it is started until it has exited (wall time, its output read from a pipe):

- `python -c pass`: the interpreter's own start, the floor of any Python command;
- `warren --version`: the console script, answered before the command tree is imported;
- `warren service ls --manager ADDR`: imports, the TLS handshake with the admin certificate (mutual
  TLS, the CA pinned), one GET /v1/services, the table;
- `docker service ls` against a single-node swarm on the same engine, with as many services (the peer;
  the engine enters swarm mode for the run and leaves it again if this run made it, as
  benches/swarm_peer.py does).

The commands take turns (one run of each, then the next round), so a burst of load from whatever else
runs on the machine falls on all of them alike; a few untimed rounds come first (page cache, the
engine's first answer). The console script is the `warren` next to this interpreter, run with this
interpreter's PYTHONPATH: the code of the checkout under test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from benches.managers import HarnessError, ManagerCluster
from benches.stats import summarize_ms, trial_row

EVENT = "process started → exited (wall time, output read from a pipe)"
FIRST_HOST = 120  # the manager listens on 127.0.0.<FIRST_HOST + 1>, apart from the other scenarios'


@dataclass(frozen=True)
class CliParams:
    runs: int = 50  # timed runs of each command; runs
    warmup: int = 3  # untimed rounds first; rounds
    services: int = 5  # services on the manager (and on the swarm); services
    command_timeout_s: float = 30.0  # one command that has not exited by then is a failed run; seconds
    image: str = "warren-busybox:latest"  # the swarm services' image (0 replicas: never pulled)

    @classmethod
    def smoke(cls) -> CliParams:
        return replace(cls(), runs=5, warmup=1, services=2)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def warren_command() -> list[str]:
    """The `warren` console script of this interpreter's environment, or the same entry point run by
    this interpreter when there is no script (a checkout that was never installed)."""
    script = Path(sys.executable).parent / "warren"
    if script.exists():
        return [str(script)]
    code = "import sys\nfrom warren.cli.entry import main\nsys.exit(main())"
    return [sys.executable, "-c", code]


def time_command(argv: list[str], env: dict[str, str], timeout_s: float) -> tuple[float | None, str]:
    """(wall seconds, "") for a run that exited 0; (None, why) otherwise."""
    t0 = time.perf_counter()
    try:
        done = subprocess.run(
            argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        return None, f"{' '.join(argv)}: no exit within {timeout_s:g} s"
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip()[-300:]
        return None, f"{' '.join(argv)}: exit status {done.returncode}: {err}"
    return elapsed, ""


def timed_rounds(
    commands: dict[str, list[str]], env: dict[str, str], params: CliParams
) -> dict[str, tuple[list[float], list[str]]]:
    """Every command `params.runs` times, taking turns, after `params.warmup` untimed rounds."""
    out: dict[str, tuple[list[float], list[str]]] = {key: ([], []) for key in commands}
    for n in range(params.warmup + params.runs):
        for key, argv in commands.items():
            seconds, why = time_command(argv, env, params.command_timeout_s)
            if n < params.warmup:
                continue
            if seconds is None:
                out[key][1].append(why)
            else:
                out[key][0].append(seconds)
    return out


def _docker_reason() -> str | None:
    """Why `docker service ls` cannot be measured here, or None."""
    if shutil.which("docker") is None:
        return "no docker command on PATH"
    try:
        done = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                              capture_output=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return "the Docker Engine did not answer within 30 s"
    if done.returncode != 0:
        return f"no Docker Engine answers: {done.stderr.decode(errors='replace').strip()[-200:]}"
    return None


ROWS = {
    "python": ("cli/python-floor", "`python -c pass`: the interpreter alone (floor)"),
    "version": ("cli/warren-version", "`warren --version` (floor of the console script)"),
    "service_ls": ("cli/service-ls", "`warren service ls --manager ADDR`: 1 manager, mutual TLS"),
    "docker": ("cli/docker-service-ls", "`docker service ls`, single-node swarm, same engine (peer)"),
}


def run(base_dir: Path, params: CliParams) -> dict[str, Any]:
    results: dict[str, Any] = {"loadavg_before": os.getloadavg(), "warren": warren_command()}
    rows: list[dict[str, Any]] = []
    error: str | None = None
    warren = warren_command()
    env = dict(os.environ)
    env.pop("WARREN_MANAGER", None)
    with ManagerCluster(base_dir / "cli", first_host=FIRST_HOST) as cluster:
        try:
            leader = cluster.start(1)
            conn = leader.http(10.0)
            try:
                for i in range(params.services):
                    body = json.dumps({"name": f"cli-{i}", "image": "x", "replicas": 0}).encode()
                    status, data = conn.request("POST", "/v1/services", body)
                    if status not in (201, 409):
                        raise HarnessError(f"creating service cli-{i}: HTTP {status}: {data[:200]!r}")
            finally:
                conn.close()
            env["WARREN_CONFIG_DIR"] = str(cluster.admin.config_dir)  # the admin certificate
            commands = {
                "python": [sys.executable, "-c", "pass"],
                "version": [*warren, "--version"],
                "service_ls": [*warren, "service", "ls", "--manager", leader.api_addr],
            }
            docker_missing = _docker_reason()
            if docker_missing is None:
                with _swarm(params) as swarm:
                    results["swarm_made_here"] = swarm.made_here
                    commands["docker"] = ["docker", "service", "ls"]
                    timed = timed_rounds(commands, env, params)
            else:
                timed = timed_rounds(commands, env, params)
        except HarnessError as exc:
            error = f"{type(exc).__name__}: {exc}"
            timed, docker_missing = {}, None
    results["loadavg_after"] = os.getloadavg()
    for name, (seconds, failures) in timed.items():
        key, what = ROWS[name]
        results[name] = summarize_ms(seconds)
        rows.append(trial_row("cli", key, what, EVENT, seconds, failures))
    if docker_missing is not None:
        key, what = ROWS["docker"]
        rows.append({"scenario": "cli", "key": key, "what": f"{what} — not measured: {docker_missing}",
                     "skipped": docker_missing})
    if error is not None:
        rows.append({"scenario": "cli", "key": "cli/service-ls", "what": "manager", "error": error})
    return {
        "status": "ok" if error is None else "error",
        "error": error,
        "config": {"runs": params.runs, **params.as_dict()},
        "results": results,
        "rows": rows,
    }


def _swarm(params: CliParams) -> Any:
    """A single-node swarm holding `params.services` services of 0 replicas (removed, and the swarm left
    if this run made it, on the way out)."""
    import contextlib

    import docker

    from benches.swarm_peer import Swarm

    @contextlib.contextmanager
    def swarm() -> Any:
        with Swarm(docker.from_env()) as s:
            for i in range(params.services):
                s.service(f"bench-cli-{i}", params.image, 0, None)
            yield s

    return swarm()
