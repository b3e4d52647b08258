"""Request bodies of the API: strict pydantic models (unknown fields and wrong types are refused)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from warren.config import NAME_PATTERN

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=63)]
# host:port as a manager advertises it; checked by config.split_host_port in the handler.
Address = Annotated[str, StringConstraints(min_length=3, max_length=261)]
Token = Annotated[str, StringConstraints(min_length=1, max_length=200)]
EnvKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=256)]
LabelKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$", max_length=253)]
Text = Annotated[str, StringConstraints(max_length=4096)]

MAX_REPLICAS = 10_000


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class JoinTokenRequest(Strict):
    role: Literal["manager", "worker"]
    rotate: bool = False
    # Validity in seconds; None: the manager's join_token_ttl_s (24 h). At most 30 days.
    ttl_s: Annotated[float, Field(gt=0, le=30 * 86400)] | None = None


class ManagerJoinRequest(Strict):
    token: Token
    api_addr: Address
    raft_addr: Address


class PromoteRequest(Strict):
    token: Token


class ServiceSpec(Strict):
    """What a service should be; workers (next issue) turn it into tasks."""

    image: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    command: list[Text] | None = Field(default=None, max_length=256)
    replicas: Annotated[int, Field(ge=0, le=MAX_REPLICAS)] = 1
    mode: Literal["replicated", "global"] = "replicated"
    env: dict[EnvKey, Text] = Field(default_factory=dict, max_length=256)
    labels: dict[LabelKey, Text] = Field(default_factory=dict, max_length=256)


class ServiceCreate(ServiceSpec):
    name: Name


class ServiceUpdate(Strict):
    image: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = None
    command: list[Text] | None = Field(default=None, max_length=256)
    replicas: Annotated[int, Field(ge=0, le=MAX_REPLICAS)] | None = None
    env: dict[EnvKey, Text] | None = Field(default=None, max_length=256)
    labels: dict[LabelKey, Text] | None = Field(default=None, max_length=256)
