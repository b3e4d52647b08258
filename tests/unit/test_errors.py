"""Warren's exception tree and the fold of warren_raft's exceptions into it."""

from __future__ import annotations

import asyncio
from types import ModuleType

import pytest

from warren.errors import (
    ConfigError,
    ConflictError,
    CorruptStateError,
    NotFoundError,
    NotLeaderError,
    StorageError,
    UnavailableError,
    WarrenError,
    from_raft,
    raft_errors,
)


@pytest.mark.parametrize(
    "cls",
    [
        NotFoundError,
        ConflictError,
        ConfigError,
        NotLeaderError,
        StorageError,
        CorruptStateError,
        UnavailableError,
    ],
)
def test_every_error_is_a_warren_error(cls: type[WarrenError]) -> None:
    assert issubclass(cls, WarrenError)


def test_tree_shape() -> None:
    assert issubclass(CorruptStateError, StorageError)
    assert issubclass(ConfigError, ValueError)  # so argparse reports it as a usage error
    assert not issubclass(UnavailableError, StorageError)


def test_not_leader_carries_the_leader() -> None:
    unknown = NotLeaderError()
    assert (unknown.leader_id, unknown.leader_addr) == (None, None)
    known = NotLeaderError("go there", leader_id=3, leader_addr="10.0.0.3:7946")
    assert str(known) == "go there"
    assert (known.leader_id, known.leader_addr) == (3, "10.0.0.3:7946")


def test_raft_errors_lets_other_exceptions_through_untouched() -> None:
    original = KeyError("k")
    with pytest.raises(KeyError) as info, raft_errors():
        raise original
    assert info.value is original


async def test_raft_errors_passes_results_through() -> None:
    @raft_errors()
    def plain(x: int) -> int:
        return x + 1

    @raft_errors()
    async def coro(x: int) -> int:
        await asyncio.sleep(0)  # suspends once, as a call into the core does
        return x * 2

    assert plain(1) == 2
    assert await coro(21) == 42
    assert plain.__name__ == "plain" and coro.__name__ == "coro"


# -- folding warren_raft's exceptions (needs the compiled core) -------------------------------------

FOLDS = [
    ("RaftError", WarrenError),
    ("ConfigError", ConfigError),
    ("NotLeaderError", NotLeaderError),
    ("StorageError", StorageError),
    ("CorruptLogError", CorruptStateError),
    ("MembershipError", ConflictError),
    ("RaftTimeoutError", UnavailableError),
    ("ShutdownError", UnavailableError),
]


@pytest.mark.parametrize(("raft_name", "warren_cls"), FOLDS)
def test_from_raft_folds_each_class_keeping_the_message(
    raft: ModuleType, raft_name: str, warren_cls: type[WarrenError]
) -> None:
    exc = getattr(raft, raft_name)(f"{raft_name} happened")
    folded = from_raft(exc)
    assert type(folded) is warren_cls
    assert str(folded) == f"{raft_name} happened"


def test_from_raft_keeps_the_leader(raft: ModuleType) -> None:
    exc = raft.NotLeaderError("not the leader; the leader is node 2 at 127.0.0.1:7002")
    exc.leader_id = 2
    exc.leader_addr = "127.0.0.1:7002"
    folded = from_raft(exc)
    assert isinstance(folded, NotLeaderError)
    assert (folded.leader_id, folded.leader_addr) == (2, "127.0.0.1:7002")
    assert str(folded) == str(exc)


def test_from_raft_without_leader_info(raft: ModuleType) -> None:
    folded = from_raft(raft.NotLeaderError("not the leader; no leader is known yet, retry shortly"))
    assert isinstance(folded, NotLeaderError)
    assert (folded.leader_id, folded.leader_addr) == (None, None)


@pytest.mark.parametrize(("raft_name", "warren_cls"), FOLDS)
def test_raft_errors_context_manager_reraises_from_the_original(
    raft: ModuleType, raft_name: str, warren_cls: type[WarrenError]
) -> None:
    original = getattr(raft, raft_name)("boom")
    with pytest.raises(warren_cls) as info, raft_errors():
        raise original
    assert type(info.value) is warren_cls
    assert info.value.__cause__ is original
    assert not isinstance(info.value, raft.RaftError)


async def test_raft_errors_decorates_sync_and_async_functions(raft: ModuleType) -> None:
    @raft_errors()
    def sync_call() -> None:
        raise raft.ShutdownError("node is shut down")

    @raft_errors()
    async def async_call() -> None:
        await asyncio.sleep(0)  # suspends once, as a call into the core does
        raise raft.StorageError("disk full")

    with pytest.raises(UnavailableError, match="shut down"):
        sync_call()
    with pytest.raises(StorageError, match="disk full") as info:
        await async_call()
    assert isinstance(info.value.__cause__, raft.StorageError)


def test_every_raft_exception_class_is_folded(raft: ModuleType) -> None:
    # A class added to the core must get a deliberate place in Warren's tree (and a row in FOLDS).
    raft_classes = {
        name for name, obj in vars(raft).items() if isinstance(obj, type) and issubclass(obj, raft.RaftError)
    }
    assert raft_classes == {name for name, _ in FOLDS}


def test_every_api_error_round_trips_through_its_answer() -> None:
    from warren.errors import (
        HTTP_ANSWERS,
        ConfigError,
        CorruptStateError,
        InvalidError,
        NotLeaderError,
        UnavailableError,
        error_class,
        http_answer,
    )

    assert http_answer(NotLeaderError()) == (503, "unavailable")
    assert http_answer(ConfigError("x")) == (400, "invalid")
    assert http_answer(CorruptStateError("x")) == (500, "storage")
    assert http_answer(WarrenError("x")) == (500, "internal")
    assert error_class("unavailable") is UnavailableError
    assert error_class("too_large") is InvalidError and error_class(None, 413) is InvalidError
    assert error_class("nonsense", 418) is WarrenError
    for _, status, code in HTTP_ANSWERS:
        # Every code and status the table answers with comes back as the class that owns it first.
        assert error_class(code) is next(c for c, _, k in HTTP_ANSWERS if k == code)
        assert error_class(None, status) is next(c for c, st, _ in HTTP_ANSWERS if st == status)
