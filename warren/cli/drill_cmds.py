"""`warren drill`: the operators' failover drill (warren/drill), its flags and what it prints.

Defaults live in warren.config (DrillSettings) only: a flag not given leaves the field at its default.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from warren.cli.output import Format, render, safe
from warren.cli.parsing import OUTPUT_FORMATS, Subparsers, UsageError, add_command, duration
from warren.config import DRILL_KILLS, DRILL_MANAGER_COUNTS, DRILL_RUNTIMES, DrillSettings

_DRILL = DrillSettings()

DESCRIPTION = f"""\
Rehearse a leader failure on a throwaway cluster of this machine: the "Test Failover Regularly"
checklist as one command. The drill starts its own managers (each --manager-only, on 127.0.0.x
loopback addresses with free ports), one worker and a service, all as `python -m warren ...`
processes of this Warren installation, with data in a temporary directory (the admin certificate of
its cluster too: nothing goes to ~/.config/warren). It never touches any other cluster and sends
nothing beyond loopback.

Steps (each within --step-timeout, timed, printed as it completes with ✓ or ✗ and the reason):
  1. start: {_DRILL.managers} managers (--managers), a worker (--runtime), service {_DRILL.service}
     with {_DRILL.replicas} replicas running `{" ".join(_DRILL.command)}`; wait until every manager is a
     ready member and the tasks run
  2. kill the leader (--kill), and time until a survivor reports a different leader that is ready
  3. services continue: the same task IDs still run, in the same containers, and under the process
     runtime as the same PIDs (nothing was restarted)
  4. writes succeed: scale the service to {_DRILL.scaled_replicas} through a surviving follower; time the
     acknowledgement and wait for the new replica to run
  5. restart the failed manager with its own command on its own data dir (after --kill sigstop:
     SIGCONT), until it answers
  6. it rejoins: ready, a follower of the current leader, its applied index caught up with the
     leader's commit index, and listed as a ready follower by the leader

A failed step that leaves nothing to check (1, 2, 5) skips the steps after it. At the end, and on
Ctrl-C or SIGTERM, every process the drill started is stopped (managers, worker, task processes or
containers) and its directory removed (unless --keep or --data-dir)."""

EPILOG = """\
exit status: 0 every step passed, 1 a step failed (or the drill could not run), 2 usage error.

examples:
  warren drill
  warren drill --managers 5 --kill sigstop
  warren drill --runtime docker --image warren-busybox:latest
  warren drill -o json > drill.json
"""


def register(commands: Subparsers) -> None:
    drill = add_command(commands, "drill", "rehearse a leader failover on a throwaway local cluster",
                        DESCRIPTION, epilog=EPILOG, client=False)
    drill.add_argument("--managers", type=int, choices=DRILL_MANAGER_COUNTS, metavar="3|5",
                       help=f"managers of the drill's cluster (default {_DRILL.managers})")
    drill.add_argument("--runtime", choices=DRILL_RUNTIMES,
                       help="runtime of the drill's worker: process (plain processes, no engine needed) or "
                            f"docker (needs a Docker Engine) (default {_DRILL.runtime})")
    drill.add_argument("--image", metavar="IMAGE",
                       help="image of the service under --runtime docker; it must hold `sleep` "
                            f"(default {_DRILL.docker_image})")
    drill.add_argument("--kill", choices=DRILL_KILLS,
                       help="how the leader fails: sigkill (a crash), sigterm (a graceful stop: it hands "
                            "leadership over first) or sigstop (frozen; resumed with SIGCONT in step 5) "
                            f"(default {_DRILL.kill})")
    drill.add_argument("--step-timeout", metavar="DUR", type=duration,
                       help="each step must be done within this long (step 1: each manager, the worker "
                            f"and the service in turn) (default {_DRILL.step_timeout_s:g}s)")
    drill.add_argument("--data-dir", metavar="DIR",
                       help="put the managers' and the worker's data and logs in DIR (empty or absent) and "
                            "keep them (default: a temporary directory, removed afterwards)")
    drill.add_argument("--keep", action="store_true",
                       help="keep the temporary directory (data and logs) and print where it is")
    drill.add_argument("-o", "--format", dest="format", choices=OUTPUT_FORMATS, default=argparse.SUPPRESS,
                       help="table (default: each step as it happens, then the verdict), or json or yaml: "
                            "the whole result (steps, timings, every pid started) at the end")
    drill.set_defaults(daemon_handler=run)


def build_settings(args: argparse.Namespace) -> DrillSettings:
    """DrillSettings from the flags given (validated)."""
    fields: dict[str, Any] = {}
    for flag, name in (("managers", "managers"), ("runtime", "runtime"), ("kill", "kill"),
                       ("step_timeout", "step_timeout_s"), ("data_dir", "data_dir")):
        value = getattr(args, flag)
        if value is not None:
            fields[name] = value
    if args.image is not None:
        if fields.get("runtime", _DRILL.runtime) != "docker":
            raise UsageError("--image applies to --runtime docker only (process tasks need no image)")
        fields["image"] = args.image
    if args.step_timeout is not None and args.step_timeout <= 0:
        raise UsageError("--step-timeout must be greater than 0")
    fields["keep"] = bool(args.keep)
    settings = DrillSettings(**fields)
    settings.validate()
    return settings


def run(args: argparse.Namespace) -> int:
    settings = build_settings(args)
    fmt: Format = getattr(args, "format", "table")
    table = fmt == "table"
    from warren.drill import DrillResult, StepResult, run_drill  # the drill loads the API client
    from warren.drill.report import format_step

    def started(base_dir: Path) -> None:
        if table:
            where = "kept in" if settings.keep or settings.data_dir else "in"
            print(f"Failover drill on this machine: {settings.managers} managers + 1 worker "
                  f"({settings.runtime} runtime), leader killed with {settings.kill.upper()}; "
                  f"data and logs {where} {base_dir}", flush=True)

    def step_done(step: StepResult) -> None:
        if table:
            print(safe(format_step(step)), flush=True)

    try:
        result: DrillResult = run_drill(settings, step_done, started)
    except KeyboardInterrupt:
        print("warren: drill interrupted; every process it started was stopped", file=sys.stderr)
        return 130
    if table:
        print(safe(result.verdict))
        if result.kept:
            logs = ", ".join(Path(str(p["log"])).name for p in result.processes)
            print(f"Data and logs kept in {result.data_dir} ({logs})")
        elif not result.passed:
            print("Run it again with --keep to keep the managers' and the worker's logs.")
    else:
        print(render(result.to_doc(), fmt, lambda: ""), end="")
    return 0 if result.passed else 1
