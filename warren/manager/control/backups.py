"""Backups of the replicated state, and their import when a cluster is restored (`cluster init --restore`)."""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time

from warren.errors import InvalidError
from warren.manager.consensus import Consensus
from warren.store import commands as c
from warren.store import queries, schema
from warren.store.machine import check_state_file

# Rows per import command during `cluster init --restore`: keeps each command far below max_entry_bytes.
IMPORT_BATCH_ROWS = 200


class Backups:
    def __init__(self, consensus: Consensus) -> None:
        self.consensus = consensus

    async def backup(self) -> str:
        """A consistent copy of the state (after the read barrier) in a temp file; the caller removes it."""
        await self.consensus.read_barrier()
        fd, path = tempfile.mkstemp(prefix="warren-backup-", suffix=".db")
        os.close(fd)
        os.unlink(path)  # sqlite creates it
        try:
            self.consensus.store.backup_to(path)
        except BaseException:
            if os.path.exists(path):
                os.unlink(path)
            raise
        return path

    async def restore(self, path: str, node_ca_pem: bytes, me: c.ManagerRecord) -> dict[str, int]:
        """Replay every row of a backup as import commands; then this manager (`me`) is the only one.

        `node_ca_pem`: the CA this manager's certificate chains to; a backup of the same CA (a restore
        with the old data key) also brings the CA's records and the sealed secrets."""
        check_state_file(path, versions=schema.IMPORTABLE_VERSIONS)
        counts: dict[str, int] = {}
        src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        src.row_factory = sqlite3.Row
        try:
            if src.execute("SELECT count(*) FROM cluster").fetchone()[0] != 1:
                raise InvalidError(f"{path}: the backup holds no cluster")
            tables = [t for t in schema.IMPORTED_TABLES if queries.has_table(src, t)]
            sealed = [t for t in schema.SEALED_TABLES if queries.has_table(src, t)]
            backup_ca = queries.cluster_ca(src) if "pki" in sealed else None
            if backup_ca is not None and backup_ca[0].encode("ascii") == node_ca_pem:
                tables += sealed  # restored with the old data key (--restore-key): the CA and secrets open
            elif "secrets" in sealed:
                counts["secrets_left"] = src.execute("SELECT count(*) FROM secrets").fetchone()[0]
            for table in tables:
                rows = queries.table_rows(src, table)
                if table == "nodes":
                    rows = [r for r in rows if r["role"] != "manager"]
                for start in range(0, len(rows), IMPORT_BATCH_ROWS):
                    await self.consensus.propose(c.ImportRows(table, rows[start : start + IMPORT_BATCH_ROWS]))
                counts[table] = len(rows)
        finally:
            src.close()
        await self.consensus.propose(c.ResetManagers(me, time.time()))
        return counts
