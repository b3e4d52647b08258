"""`warren config create | ls | inspect | rm`: named files tasks get, stored as they are (docs/configs.md).

A config is no secret: `inspect` shows its content (UTF-8 text as it is, anything else in base64). It
never changes: new content is a config of a new name, and the services switch to it.
"""

from __future__ import annotations

import argparse
import base64
import binascii

from warren.cli.output import Column, render, render_list, render_object, safe
from warren.cli.parsing import Subparsers, UsageError, add_command
from warren.cli.specs import read_config_file
from warren.client import ManagerClient
from warren.config import ManagerSettings

CREATE_EPILOG = """\
A config is stored as it is (not encrypted: use 'warren secret' for passwords and keys) and shown by
'warren config inspect'. Tasks of services created with --config NAME[,target=PATH][,mode=OCTAL] get it
as a read-only file at PATH (default /NAME) in their container, or in $WARREN_CONFIGS_DIR/NAME for a
process. A config cannot be changed: create one under a new name (app-conf-v2) and switch the services
to it ('warren service update SERVICE --config-rm app-conf-v1 --config-add app-conf-v2,target=...').

examples:
  warren config create app-conf-v1 ./app.conf
  envsubst < app.conf.in | warren config create app-conf-v2 -
  warren service create app --image app:1 --config app-conf-v1,target=/etc/app.conf
"""

CONFIG_COLUMNS: list[Column] = [
    ("NAME", lambda s: s.get("name")),
    ("ID", lambda s: s.get("id")),
    ("SIZE", lambda s: s.get("size")),
    ("SERVICES", lambda s: ",".join(s.get("services") or []) or None),
    ("VERSION", lambda s: s.get("version")),
]


def register(config: Subparsers) -> None:
    limit = f"{ManagerSettings().max_config_bytes // 1024} KiB"
    create = add_command(config, "create", "create a config from a file or standard input",
                         f"Create a config: a file (up to {limit}) that the tasks of services created with\n"
                         "--config NAME get, read-only. Give FILE or '-' (standard input).",
                         epilog=CREATE_EPILOG)
    create.add_argument("name", metavar="NAME",
                        help="the config's name (lowercase letters, digits, '-'); a version in it "
                        "(app-conf-v2) is how a config changes")
    create.add_argument("file", metavar="FILE", help="file holding the content ('-' reads standard input)")
    create.set_defaults(client_handler=config_create)

    listing = add_command(config, "ls", "list the configs",
                          "List every config: its size and the services that use it.", aliases=("list",))
    listing.set_defaults(client_handler=config_list)

    inspect = add_command(config, "inspect", "show one config and its content",
                          "Show a config's ID, size, SHA-256, timestamps, the services that use it and its\n"
                          "content: UTF-8 text as it is, anything else in base64. With -o json or -o yaml,\n"
                          "the content is `data`, always base64.")
    inspect.add_argument("name", metavar="NAME", help="the config's name")
    inspect.set_defaults(client_handler=config_inspect)

    remove = add_command(config, "rm", "remove a config no service uses",
                         "Remove a config. Refused while a service's spec names it (take it out first with\n"
                         "'warren service update SERVICE --config-rm NAME').")
    remove.add_argument("name", metavar="NAME", help="the config's name")
    remove.set_defaults(client_handler=config_rm)


def read_content(file: str) -> bytes:
    """The content of FILE or of standard input ('-'); UsageError if it is empty or too large."""
    try:
        content = read_config_file(file)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not content:
        raise UsageError(f"the config's content is empty ({'standard input' if file == '-' else file} gave "
                         "no bytes)")
    return content


def config_create(args: argparse.Namespace, client: ManagerClient) -> int:
    answer = client.create_config(args.name, read_content(args.file))
    name, size = answer.get("name", args.name), answer.get("size")
    text = f"Config {name} created ({answer.get('id')}, {size} bytes)\n"
    print(render(answer, args.format, lambda: text), end="")
    return 0


def config_list(args: argparse.Namespace, client: ManagerClient) -> int:
    print(render_list(client.list_configs(), args.format, CONFIG_COLUMNS), end="")
    return 0


def config_inspect(args: argparse.Namespace, client: ManagerClient) -> int:
    config = client.get_config(args.name)
    if args.format != "table":
        print(render_object(config, args.format), end="")
        return 0
    meta = {k: v for k, v in config.items() if k != "data"}
    print(render_object(meta, args.format), end="")
    print(content_text(config.get("data")), end="")
    return 0


def content_text(data: object) -> str:
    """The content under a `CONTENT` heading: UTF-8 text as it is (control characters but TAB and LF
    escaped, so it cannot drive the terminal), anything else as the base64 it came in."""
    if not isinstance(data, str):
        return "CONTENT: -\n"
    try:
        text = base64.b64decode(data.encode("ascii"), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        return f"CONTENT (not UTF-8 text; base64):\n{safe(data)}\n"
    return "CONTENT:\n" + safe(text) + ("" if text.endswith("\n") else "\n")


def config_rm(args: argparse.Namespace, client: ManagerClient) -> int:
    answer = client.remove_config(args.name)
    print(render(answer, args.format, lambda: f"Config {answer.get('removed', args.name)} removed\n"), end="")
    return 0
