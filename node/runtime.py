"""The node's lifecycle: create a home (``dsnode init``), open the shared objects once, serve both planes, close.

The CLI, the demo and the tests all build a node the same way: ``Node.open(settings)`` … ``node.close()``.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import uvicorn

from node.authz import Authorizer, seed_policy
from node.budget import BudgetStore
from node.db import Database
from node.errors import Unavailable
from node.federation import Federation
from node.keys import create_key, load_key, public_key_hex
from node.ledger_store import SqlLedger
from node.models import utcnow
from node.release import ReleaseStore
from node.service import NodeService
from node.settings import Settings
from node.storage import DatasetStore
from node.trading import Trading

if TYPE_CHECKING:
    from node.anchoring import ChainLink

__all__ = ["InitResult", "Node", "init_home", "is_initialized"]

log = logging.getLogger("dsnode")

_CONFIG_TEMPLATE = """\
# dsnode configuration. Every key can also be set as an environment variable DSNODE_<KEY>;
# see docs/CONFIGURATION.md for the full list.
[node]
environment = "dev"
http_host = "127.0.0.1"
http_port = 8000
flight_host = "127.0.0.1"
flight_port = 8815
# chain = "embedded"                  # or "rpc" with chain_rpc_url, or "off"
# anchor_every_entries = 1000
# anchor_every_seconds = 600
# database_url = "postgresql+psycopg://dsnode@127.0.0.1:5432/dsnode"
"""


@dataclass(frozen=True, slots=True)
class InitResult:
    operator_id: str
    operator_token: str
    public_key: str
    ledger_key: str


def is_initialized(settings: Settings) -> bool:
    """Whether the node's database already holds a ledger (``dsnode init`` ran against it)."""
    if not settings.key_path.exists():
        return False
    if settings.database_url is None and not (settings.home / "dsnode.db").exists():
        return False  # SQLite in a home not created yet
    from sqlalchemy import inspect, text

    db = Database(settings.db_url, settings.sqlite_synchronous)
    try:
        if "ledger_state" not in inspect(db.engine).get_table_names():
            return False
        with db.engine.connect() as conn:
            return bool(conn.execute(text("SELECT size FROM ledger_state WHERE id = 1")).scalar())
    finally:
        db.close()


def init_home(settings: Settings, operator_name: str = "operator") -> InitResult:
    """Create config, 0600 Ed25519 key, database (migrated, base policy seeded), data dir and the first
    operator. A key given with ``node_key_file`` (a mounted secret) is used, not created. Refuses a node that
    is already initialized, or a home that holds a key of its own, so an existing node is never overwritten."""
    home = settings.home
    own_key = settings.node_key_file is None
    if (own_key and settings.key_path.exists()) or is_initialized(settings):
        raise FileExistsError(f"{home} is already a node home; use another --home or remove it first")
    if not own_key and not settings.key_path.exists():
        raise FileNotFoundError(f"node_key_file {settings.key_path} does not exist; mount the key there or unset "
                                "it to create one in the home")
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    if not settings.config_path.exists():
        settings.config_path.write_text(_CONFIG_TEMPLATE, encoding="utf-8")
    if own_key:
        create_key(settings.key_path)
    DatasetStore(settings.data_dir).ensure_dirs()
    with Node(settings) as node:
        created = node.service.create_participant(None, operator_name, "operator")
        return InitResult(created.participant.id, created.token, node.public_key, node.ledger.verifier.to_key())


class Node:
    """One node: database, authorizer, store, key and services, opened once and shared by both planes."""

    def __init__(self, settings: Settings, clock: Callable[[], datetime] = utcnow) -> None:
        if not settings.key_path.exists():
            raise FileNotFoundError(f"{settings.home} is not a node home; run: dsnode init --home {settings.home}")
        self.settings = settings
        self.clock = clock
        self.key = load_key(settings.key_path)
        self.db = Database(settings.db_url, settings.sqlite_synchronous)
        self.db.migrate()
        with self.db.transaction() as session:
            seed_policy(session)
        self.store = DatasetStore(settings.data_dir, settings.batch_rows)
        self.store.ensure_dirs()
        self.authz = Authorizer(self.db.sessions, clock)
        self.authz.load()
        # The policy graph is large and long-lived: keep it out of the cyclic collector's full passes, which would
        # otherwise walk it again and again and stall requests (~100 ms per pass at 10k datasets).
        gc.freeze()
        self.ledger = SqlLedger(self.db, self.key, settings.ledger_origin, clock)
        self.budgets = BudgetStore(self.db, self.ledger, clock)
        self.releases = ReleaseStore(self.store, self.key)
        self.trading = Trading(self.db, self.authz, self.ledger, self.budgets, self.store, self.key, clock)
        self._chain: ChainLink | None = None
        self.federation = Federation(self, clock)
        self._http_port: int | None = None
        self._flight_url: str | None = None
        self.service = NodeService(self.db, self.authz, self.store, self.ledger, self.budgets, self.releases,
                                   self.trading, settings.token_pepper.get_secret_value().encode(), clock)
        self._servers: list[Callable[[], None]] = []

    @classmethod
    def open(cls, settings: Settings, clock: Callable[[], datetime] = utcnow) -> Node:
        return cls(settings, clock)

    @property
    def public_key(self) -> str:
        return public_key_hex(self.key)

    @property
    def chain(self) -> ChainLink | None:
        """The node's chain link, ``None`` when the chain is off; web3 is imported on first use only."""
        if self._chain is None and self.settings.chain != "off":
            from node.anchoring import ChainLink

            self._chain = ChainLink(self.settings, self.db, self.ledger, self.key, self.clock)
        return self._chain

    @property
    def public_http_url(self) -> str:
        """Where buyers and peers reach the HTTP plane (``public_url``, else the bound address)."""
        if self.settings.public_url:
            return self.settings.public_url.rstrip("/")
        scheme = "https" if self.settings.tls else "http"
        return f"{scheme}://{self.settings.http_host}:{self._http_port or self.settings.http_port}"

    @property
    def public_flight_url(self) -> str:
        """The Flight location put in endpoints (``flight_advertised_uri``, else the bound address)."""
        if self._flight_url:
            return self._flight_url
        scheme = "grpc+tls" if self.settings.tls else "grpc"
        return self.settings.flight_advertised_uri or f"{scheme}://{self.settings.flight_host}:" \
            f"{self.settings.flight_port}"

    # ---- serving -------------------------------------------------------------------------------------------
    def start_federation(self) -> None:
        """Pull the followed peers' catalogs every ``federation_refresh_seconds`` in a background thread."""
        self.federation.start()

    def start_chain(self, interval: float = 1.0) -> None:
        """Mirror licences and settlements and anchor on the configured cadence in a background thread."""
        if self.chain is not None:
            self.chain.start(interval)

    def start_flight(self) -> int:
        """Start the Flight plane in background threads; returns the bound port."""
        from node.flight import FlightServer

        server = FlightServer(self)
        self._servers.append(server.shutdown)
        self._flight_url = server.advertised
        port: int = server.port
        return port

    def start_http(self) -> int:
        """Start the HTTP plane (uvicorn) in a background thread; returns the bound port."""
        from node.http import create_app

        tls = self.settings.tls
        config = uvicorn.Config(create_app(self), host=self.settings.http_host, port=self.settings.http_port,
                                log_level="warning", lifespan="off", log_config=None,
                                ssl_certfile=str(self.settings.tls_cert_file) if tls else None,
                                ssl_keyfile=str(self.settings.tls_key_file) if tls else None)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="dsnode-http", daemon=True)
        thread.start()
        while not server.started:
            if not thread.is_alive():
                raise Unavailable("the HTTP server could not start (is the port taken?)")
            thread.join(0.01)
        port: int = server.servers[0].sockets[0].getsockname()[1]
        self._http_port = port

        def stop() -> None:
            server.should_exit = True
            thread.join(10)

        self._servers.append(stop)
        return port

    def close(self) -> None:
        for stop in reversed(self._servers):
            stop()
        self._servers.clear()
        self.federation.close()
        if self._chain is not None:
            self._chain.close()
        self.db.close()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
