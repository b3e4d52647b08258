"""A task's reported host ports: where its node reaches each of the task's ingress publishes
(docs/networking.md), `{"P": hostport}` with P the published port as a decimal string.

A worker reports them with a task's `running` status update; the manager stores them with the task
(tasks.ports) and lists them in the endpoints' `ingress` section. One shape, checked the same way at the
API (a clear 400) and when a replicated command is decoded (msgspec refuses it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Final

from msgspec import Meta

# At most this many entries: a spec publishes at most 64 ports (warren.spec.service.TaskSpec.publish).
MAX_TASK_PORTS: Final = 64
# A decimal port number from 1 to 65535, no sign, no leading zero.
PORT_KEY_PATTERN: Final = (
    r"^([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$"
)

# Bounds of the endpoints' `ingress` section (docs/worker-protocol.md), which a worker's parser holds
# the manager to: ports in the table, backends per port.
MAX_INGRESS_PORTS: Final = 1024
MAX_INGRESS_BACKENDS: Final = 1024
# Bound of each service in the endpoints' `services` section: tasks listed, and distinct healthy
# addresses. The leader cuts past it (a bigger service is still answered, from the tasks listed).
MAX_SERVICE_TASKS: Final = 1024

PortKey = Annotated[str, Meta(pattern=PORT_KEY_PATTERN)]
PortNumber = Annotated[int, Meta(ge=1, le=65535)]
TaskPorts = Annotated[dict[PortKey, PortNumber], Meta(max_length=MAX_TASK_PORTS)]


def port_key(port: int) -> str:
    """The key of published port `port`."""
    return str(port)


def task_ports_problem(ports: Mapping[Any, Any]) -> str | None:
    """What is wrong with reported `ports` (None: nothing), in a user's words; never repeats more than
    a few characters of a bad key."""
    if len(ports) > MAX_TASK_PORTS:
        return f"at most {MAX_TASK_PORTS} ports, not {len(ports)}"
    for key, value in ports.items():
        if not _is_port_text(key):
            shown = repr(key[:8] + "..." if isinstance(key, str) and len(key) > 8 else key)
            return f"key {shown} is not a published port (a decimal number from 1 to 65535)"
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            return f"{key}: the host port must be a number from 1 to 65535"
    return None


def _is_port_text(key: object) -> bool:
    return (
        isinstance(key, str)
        and 1 <= len(key) <= 5
        and key.isascii()
        and key.isdigit()
        and key[0] != "0"
        and int(key) <= 65535
    )
