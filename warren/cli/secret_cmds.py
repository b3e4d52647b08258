"""`warren secret create | ls | inspect | rm`: values tasks get as files, stored encrypted (docs/secrets.md).

A value is read from a file, from standard input or (discouraged) from the command line, sent once in
base64 and never shown again: no command prints it.
"""

from __future__ import annotations

import argparse
import base64
import sys
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from warren.cli.output import Column, render, render_list, render_object
from warren.cli.parsing import Subparsers, UsageError, add_command
from warren.client import ManagerClient
from warren.config import ManagerSettings
from warren.errors import WarrenError

CREATE_EPILOG = """\
The value is stored encrypted with the cluster's data key and is never shown again. Tasks of services
created with --secret NAME find it in /run/secrets/NAME (containers) or in $WARREN_SECRETS_DIR/NAME
(processes). A secret cannot be changed: create a new one and switch the services to it.

examples:
  warren secret create db-password ./db-password.txt
  openssl rand -base64 32 | warren secret create api-key -
  warren service create api --image api:2 --secret db-password --secret api-key
"""

SECRET_COLUMNS: list[Column] = [
    ("NAME", lambda s: s.get("name")),
    ("ID", lambda s: s.get("id")),
    ("SERVICES", lambda s: ",".join(s.get("services") or []) or None),
    ("VERSION", lambda s: s.get("version")),
]


def register(secret: Subparsers) -> None:
    limit = f"{ManagerSettings().max_secret_bytes // 1024} KiB"
    create = add_command(secret, "create", "create a secret from a file, standard input or a value",
                         f"Create a secret: a value (up to {limit}) that the tasks of services created with\n"
                         "--secret NAME get as a file on tmpfs. Give FILE, '-' (standard input) or --value.",
                         epilog=CREATE_EPILOG)
    create.add_argument("name", metavar="NAME", help="the secret's name (lowercase letters, digits, '-')")
    create.add_argument("file", metavar="FILE", nargs="?",
                        help="file holding the value ('-' reads standard input)")
    create.add_argument("--value", metavar="TEXT",
                        help="the value itself. WARNING: it stays in your shell history and other users "
                        "of this machine may see it in the process list; prefer FILE or '-'")
    create.set_defaults(client_handler=secret_create)

    listing = add_command(secret, "ls", "list the secrets",
                          "List every secret (names and the services that use them; never values).",
                          aliases=("list",))
    listing.set_defaults(client_handler=secret_list)

    inspect = add_command(secret, "inspect", "show one secret (never its value)",
                          "Show a secret's ID, timestamps and the services that use it. Its value is never\n"
                          "shown by any command.")
    inspect.add_argument("name", metavar="NAME", help="the secret's name")
    inspect.set_defaults(client_handler=secret_inspect)

    remove = add_command(secret, "rm", "remove a secret no service uses",
                         "Remove a secret. Refused while a service's spec names it (take it out first with\n"
                         "'warren service update SERVICE --secret-rm NAME').")
    remove.add_argument("name", metavar="NAME", help="the secret's name")
    remove.set_defaults(client_handler=secret_rm)


def read_value(args: argparse.Namespace) -> bytes:
    """The value from FILE, standard input ('-') or --value (exactly one of them)."""
    if (args.file is None) == (args.value is None):
        raise UsageError("give the value as FILE, '-' (standard input) or --value TEXT, exactly one "
                         "(see 'warren secret create --help')")
    if args.value is not None:
        value: bytes = args.value.encode("utf-8")
    elif args.file == "-":
        value = sys.stdin.buffer.read()
    else:
        with open(args.file, "rb") as handle:
            value = handle.read()
    if not value:
        where = "--value" if args.value is not None else ("standard input" if args.file == "-" else args.file)
        raise UsageError(f"the secret's value is empty ({where} gave no bytes)")
    return value


def secret_create(args: argparse.Namespace, client: ManagerClient) -> int:
    value = read_value(args)
    body = {"name": args.name, "data": base64.b64encode(value).decode("ascii")}
    secret = _object(client, client.request("POST", "/v1/secrets", json=body))
    text = f"Secret {secret.get('name', args.name)} created ({secret.get('id')})\n"
    print(render(secret, args.format, lambda: text), end="")
    return 0


def secret_list(args: argparse.Namespace, client: ManagerClient) -> int:
    data = client.request("GET", "/v1/secrets")
    if not isinstance(data, list) or not all(isinstance(item, Mapping) for item in data):
        raise WarrenError(f"manager at {client.address} gave an unexpected answer: not a list of objects")
    print(render_list(data, args.format, SECRET_COLUMNS), end="")
    return 0


def secret_inspect(args: argparse.Namespace, client: ManagerClient) -> int:
    secret = _object(client, client.request("GET", f"/v1/secrets/{quote(args.name, safe='')}"))
    print(render_object(secret, args.format), end="")
    return 0


def secret_rm(args: argparse.Namespace, client: ManagerClient) -> int:
    answer = _object(client, client.request("DELETE", f"/v1/secrets/{quote(args.name, safe='')}"))
    print(render(answer, args.format, lambda: f"Secret {answer.get('removed', args.name)} removed\n"), end="")
    return 0


def _object(client: ManagerClient, data: object) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise WarrenError(f"manager at {client.address} gave an unexpected answer: {type(data).__name__}")
    return data
