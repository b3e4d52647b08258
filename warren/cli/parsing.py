"""Argument parsing shared by every `warren` command: the parser class, common options, value types.

Usage errors never print argparse's two-line usage dump: they raise `UsageError`, which `main` turns
into one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable
from typing import Any, NoReturn

from warren.cli import specs
from warren.cli.version import VersionAction
from warren.config import DEFAULT_MANAGER, MANAGER_ENV, ClientSettings
from warren.errors import ConfigError
from warren.formats import parse_duration, parse_port, parse_size

OUTPUT_FORMATS = ("table", "json", "yaml")


class UsageError(Exception):
    """The command line is wrong; the message is one line and already says where to look for help."""


class HelpExit(Exception):
    """--help or --version was printed: stop with this exit status (argparse would call sys.exit)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class WarrenArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of exiting, so `main` decides what reaches stderr."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            print(message, end="")
        raise HelpExit(status)

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        # A mistyped command reads better as "unknown command 'x'" than as argparse's "invalid choice".
        if isinstance(action, argparse._SubParsersAction) and value not in action.choices:
            raise argparse.ArgumentError(None, f"unknown command {value!r}")
        super()._check_value(action, value)


def new_parser(prog: str, description: str, epilog: str | None = None) -> WarrenArgumentParser:
    parser = WarrenArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    add_version(parser)
    return parser


def add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action=VersionAction,
                        help="print the versions of Warren, its Raft core and openraft, and exit")


def add_client_options(parser: argparse.ArgumentParser) -> None:
    """--manager and -o, accepted at every level; SUPPRESS keeps a later level from erasing an earlier one."""
    parser.add_argument(
        "--manager", metavar="HOST:PORT", default=argparse.SUPPRESS,
        help=f"manager API to talk to; several as HOST:PORT,HOST:PORT are tried in turn "
        f"(env {MANAGER_ENV}; default {DEFAULT_MANAGER})",
    )
    parser.add_argument(
        "--timeout", metavar="DUR", type=duration, default=argparse.SUPPRESS,
        help="keep retrying for this long while no manager answers or the cluster has no leader "
        f"(default {ClientSettings().retry_deadline_s:g}s; 0 tries once)",
    )
    # Only `-o` (and --format): `cluster backup --output FILE` names a file, as in the design.
    parser.add_argument(
        "-o", "--format", dest="format", choices=OUTPUT_FORMATS, default=argparse.SUPPRESS,
        help="output format: table (default), json or yaml",
    )


Subparsers = Any  # argparse._SubParsersAction[WarrenArgumentParser]; typeshed's generic is awkward here.


def add_group(subparsers: Subparsers, name: str, help: str, description: str,
              client: bool = True) -> WarrenArgumentParser:
    """A command group (`cluster`, `node`, ...); its commands go into `subcommands(group)`."""
    parser = add_command(subparsers, name, help, description, client=client)
    parser.set_defaults(group_parser=parser)
    return parser


def add_command(subparsers: Subparsers, name: str, help: str, description: str,
                epilog: str | None = None, client: bool = True,
                aliases: tuple[str, ...] = ()) -> WarrenArgumentParser:
    """A command; `aliases` are other names for it (`ls` for `list`), shown beside its name in help."""
    parser: WarrenArgumentParser = subparsers.add_parser(
        name, aliases=aliases, help=help, description=description, epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
    )
    add_version(parser)
    if client:
        add_client_options(parser)
    return parser


def subcommands(parser: WarrenArgumentParser) -> Subparsers:
    return parser.add_subparsers(title="commands", metavar="<command>", parser_class=WarrenArgumentParser)


# -- value types (argparse `type=`): ArgumentTypeError keeps our message in argparse's report ----------

def duration(text: str) -> float:
    """Seconds from "500ms", "1s", "1m"..."""
    try:
        return parse_duration(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number of 0 or more, got {text!r}")
    return value


def tail_lines(text: str) -> int | str:
    """A number of lines, or "all"."""
    if text.strip().lower() == "all":
        return "all"
    return non_negative_int(text)


def positive_int(text: str) -> int:
    value = non_negative_int(text) if text.strip().isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {text!r}")
    return value


def key_value(text: str) -> tuple[str, str]:
    """("K", "V") from "K=V" (the value may be empty or contain "=")."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value



def number(text: str) -> float:
    """A plain decimal number (--cpus 0.5); the range is the API model's to judge."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a number such as 0.5 or 2, got {text!r}")
    return value


def size(text: str) -> int:
    """Bytes from "512m", "1g", "256MiB", "1.5GB" (binary multiples)."""
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def port(text: str) -> int:
    try:
        return parse_port(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def publish(text: str) -> dict[str, Any]:
    """{"host", "container", "protocol", "mode"} from "PUBLISHED:TARGET[/tcp|udp]" or Docker's long
    syntax "mode=ingress|host,published=P,target=T[,protocol=tcp|udp]"."""
    try:
        return specs.parse_publish(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def published_port(text: str) -> tuple[int, str]:
    """(published port, protocol) from "PUBLISHED[/tcp|udp]": which published port to remove."""
    host, _, protocol = text.partition("/")
    protocol = protocol.lower() or "tcp"
    if protocol not in ("tcp", "udp"):
        raise argparse.ArgumentTypeError(f"expected PUBLISHED[/tcp|udp], got {text!r}")
    return port(host), protocol


def http_check(text: str) -> tuple[int, str]:
    """(port, path) from "PORT/PATH" ("8080/healthz") or "PORT" (path "/")."""
    head, slash, path = text.partition("/")
    return port(head), "/" + path if slash else "/"


def command(text: str) -> list[str]:
    """A command line split as a shell would ("sh -c 'sleep 1'" -> ["sh", "-c", "sleep 1"])."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} in {text!r}") from exc
    if not words or not words[0]:
        raise argparse.ArgumentTypeError("empty command")
    return words


def add_host_access(parser: argparse.ArgumentParser, whose: str) -> None:
    """--allow-device, --allow-bind and --allow-privileged: what `whose` worker lets its tasks have of
    this machine."""
    parser.add_argument("--allow-device", metavar="PATH[,PATH...]", action="append", default=[],
                        help=f"devices {whose} tasks may be given (service create --device): these paths, or "
                             "any under them, checked again once symlinks are resolved; repeatable "
                             "(default: none)")
    parser.add_argument("--allow-bind", metavar="PATH[,PATH...]", action="append", default=[],
                        help=f"host directories (or files) {whose} tasks may bind-mount (service create "
                             "--mount type=bind,src=PATH,...): these paths, or any under them, checked "
                             "again once symlinks are resolved; repeatable (default: none)")
    parser.add_argument("--allow-privileged", action="store_true",
                        help=f"let {whose} privileged tasks (service create --privileged: every capability "
                             "and device of this machine) run here (default: refused)")


def allowed_paths(given: list[str]) -> tuple[str, ...]:
    """The paths of --allow-device or --allow-bind flags (each a comma-separated list), in order, once
    each."""
    return tuple(dict.fromkeys(part.strip() for text in given for part in text.split(",") if part.strip()))


def _part(parse: Callable[[str], object], text: str) -> dict[str, Any]:
    """A spec part (a mapping) parsed from a flag's text; argparse's error, with the parser's message,
    if it does not parse."""
    try:
        parsed = parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    assert isinstance(parsed, dict)
    return parsed


def device(text: str) -> dict[str, Any]:
    """{"host", "container"?, "permissions"?} from "HOST[:CONTAINER[:PERMS]]"."""
    return _part(specs.parse_device, text)


def mount(text: str) -> dict[str, Any]:
    """{"type", "target", "source"?, "read_only"?, "size"?} from Docker's --mount syntax."""
    return _part(specs.parse_mount, text)


def config_ref(text: str) -> dict[str, Any]:
    """{"name", "target"?, "mode"?} from "NAME[,target=/PATH][,mode=0444]"."""
    return _part(specs.parse_config_ref, text)


def ulimit(text: str) -> tuple[str, dict[str, Any]]:
    """("nofile", {"soft", "hard"}) from "nofile=1024[:4096]"."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME={specs.ULIMIT_HELP}, got {text!r}")
    try:
        limit = specs.parse_ulimit(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    assert isinstance(limit, dict)
    return name.strip().lower(), limit


def capability(text: str) -> str:
    """NET_ADMIN from "NET_ADMIN", "net_admin" or "CAP_NET_ADMIN"; the list is the API model's."""
    return str(specs.capability(text))


def stop_signal(text: str) -> str:
    """SIGTERM from "SIGTERM", "TERM", "term" or "15"; the list is the API model's."""
    return str(specs.stop_signal(text))


def constraint(text: str) -> str:
    """node.labels.K==V, node.labels.K!=V, node.name==N or node.role==manager|worker."""
    # The API's models (pydantic) load only for commands that check a spec: daemons never need them.
    from pydantic import TypeAdapter, ValidationError

    from warren.api.models import Constraint

    try:
        return TypeAdapter(Constraint).validate_python(text.strip())
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(
            f"expected node.labels.KEY==VALUE (or !=), node.name==NAME or node.role==worker, got {text!r}"
        ) from exc
