"""Database engine, sessions and migrations. SQLite (default, WAL) and PostgreSQL share one code path."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

__all__ = ["SYNCHRONOUS", "Database", "alembic_config"]

_MIGRATIONS = Path(__file__).parent / "migrations"
_CHECKPOINT_EVERY_S = 0.5
_WRITE = "dsnode_write"
SYNCHRONOUS = ("NORMAL", "FULL")
log = logging.getLogger("dsnode.db")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _sqlite_pragmas(synchronous: str) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Transactions are begun explicitly in _sqlite_begin (pysqlite would otherwise start them only at the
        # first write, so a transaction's reads could see an older state than its writes commit on top of).
        dbapi_conn.isolation_level = None
        _pragmas(dbapi_conn, synchronous)

    return on_connect


def _sqlite_begin(conn: Connection) -> None:
    """``BEGIN IMMEDIATE`` for write transactions (the write lock is taken before the first read, so a
    read-then-write unit of work is serialized against writers in every process), plain ``BEGIN`` for readers."""
    options = conn.get_execution_options()
    if options.get("isolation_level") == "AUTOCOMMIT":
        return
    conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get(_WRITE) else "BEGIN")


def _pragmas(dbapi_conn: Any, synchronous: str) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # NORMAL: a commit survives a crash of the process (kill -9) but not of the machine; FULL: it also survives
    # power loss, at one fsync per commit (see docs/CONFIGURATION.md, sqlite_synchronous).
    cur.execute(f"PRAGMA synchronous={synchronous}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    # Checkpoints run on the background thread of Database, not inside whichever commit crosses the
    # threshold: otherwise every ~100th write pays ~10 ms copying the WAL into a large database file.
    cur.execute("PRAGMA wal_autocheckpoint=0")
    cur.close()


class Database:
    """Owns the engine and the session factory; ``close()`` disposes the pool."""

    def __init__(self, url: str, sqlite_synchronous: str = "NORMAL") -> None:
        if sqlite_synchronous.upper() not in SYNCHRONOUS:
            raise ValueError("sqlite_synchronous must be NORMAL or FULL")
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"future": True}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=20)
        self.engine: Engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas(sqlite_synchronous.upper()))
            event.listen(self.engine, "begin", _sqlite_begin)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if self.is_sqlite:
            self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="dsnode-wal", daemon=True)
            self._checkpointer.start()

    def _checkpoint_loop(self) -> None:
        while not self._stop.wait(_CHECKPOINT_EVERY_S):
            self.checkpoint("PASSIVE")

    def checkpoint(self, mode: str = "PASSIVE") -> None:
        """Copy the SQLite WAL into the database file (PASSIVE never blocks writers)."""
        if not self.is_sqlite:
            return
        try:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql(f"PRAGMA wal_checkpoint({mode})")
        except Exception:  # a busy or closing database: the next round retries
            log.debug("WAL checkpoint skipped", exc_info=True)

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (idempotent)."""
        cfg = alembic_config(self.url)
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: commits on success, rolls back on any exception. On SQLite it holds the database's
        write lock from its first statement (``BEGIN IMMEDIATE``); on PostgreSQL rows are locked as needed."""
        with self.sessions() as session, session.begin():
            session.connection(execution_options={_WRITE: True})
            yield session

    @contextmanager
    def writer(self) -> Iterator[Connection]:
        """A Core-level write transaction, lighter than :meth:`transaction` for a few plain statements."""
        with self.engine.connect().execution_options(**{_WRITE: True}) as conn, conn.begin():
            yield conn

    @contextmanager
    def reader(self) -> Iterator[Session]:
        with self.sessions() as session:
            yield session

    def close(self) -> None:
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join(5)
            self.checkpoint("TRUNCATE")
        self.engine.dispose()
