"""Shared fixtures: real servers on loopback, a real SQLite file and, when reachable, real PostgreSQL.

``backend`` runs a test on SQLite and on PostgreSQL (127.0.0.1:5432, trust auth). Without PostgreSQL the
PostgreSQL variants skip, unless ``DSNODE_TEST_REQUIRE_POSTGRES=1`` (set by ``.ci/run``) makes them fail.
Each PostgreSQL test gets a fresh database, dropped afterwards.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.flight as fl
import pyarrow.parquet as pq
import pytest
from sqlalchemy import text

from ledger import CompactRange
from node.runtime import Node, init_home
from node.sample import personal_records
from node.settings import Settings

PG_ADMIN = os.environ.get("DSNODE_TEST_PG_ADMIN", "host=127.0.0.1 port=5432 user=postgres dbname=test")
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/{db}"
REQUIRE_PG = os.environ.get("DSNODE_TEST_REQUIRE_POSTGRES") == "1"


def _pg_available() -> bool:
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


@pytest.fixture(scope="session")
def pg_available() -> bool:
    ok = _pg_available()
    if not ok and REQUIRE_PG:
        pytest.fail("PostgreSQL on 127.0.0.1:5432 is required (DSNODE_TEST_REQUIRE_POSTGRES=1) but unreachable")
    return ok


@pytest.fixture
def pg_database(pg_available: bool) -> Iterator[str]:
    """A fresh PostgreSQL database URL, dropped after the test."""
    if not pg_available:
        pytest.skip("PostgreSQL on 127.0.0.1:5432 is not reachable")
    name = f"dsnode_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_URL.format(db=name)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    """The database URL to use: ``None`` (SQLite in the home) or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_database")
    return url


@dataclass
class Party:
    id: str
    name: str
    role: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    @property
    def flight_options(self) -> fl.FlightCallOptions:
        return fl.FlightCallOptions(headers=[(b"authorization", f"Bearer {self.token}".encode())])


@dataclass
class Harness:
    """A running node (HTTP + Flight on loopback) plus helpers that talk to it like clients would."""

    node: Node
    home: Path
    http: httpx.Client
    flight_uri: str
    operator: Party
    _clients: list[fl.FlightClient] = field(default_factory=list)

    def party(self, name: str, role: str) -> Party:
        resp = self.http.post("/v1/participants", json={"name": name, "role": role},
                              headers=self.operator.headers)
        assert resp.status_code == 201, resp.text
        body = resp.json()
        return Party(body["id"], name, role, body["token"])

    def publish(self, owner: Party, table: pa.Table, name: str = "sample", privacy: Any = "open",
                **manifest: Any) -> dict[str, Any]:
        """Publish ``table``. ``privacy="open"`` (the default, for tests whose subject is not privacy) declares
        every column a plain attribute, so rows come back as stored; ``privacy=None`` takes the node's proposal
        from PII detection; a dict is sent as the manifest's ``privacy`` object."""
        buf = io.BytesIO()
        pq.write_table(table, buf)
        if privacy == "open":
            privacy = open_privacy(table)
        extra = {"privacy": privacy} if privacy is not None else {}
        resp = self.http.post(
            "/v1/datasets", headers=owner.headers,
            files={"file": ("data.parquet", buf.getvalue(), "application/octet-stream")},
            data={"manifest": json.dumps({"name": name, "title": name.title(), **extra, **manifest},
                                         ensure_ascii=False)},
        )
        assert resp.status_code == 201, resp.text
        body: dict[str, Any] = resp.json()
        return body

    def grant(self, owner: Party, dataset: str, buyer: Party, **extra: Any) -> dict[str, Any]:
        resp = self.http.post("/v1/licenses", headers=owner.headers,
                              json={"dataset": dataset, "buyer": buyer.id, **extra})
        assert resp.status_code == 201, resp.text
        body: dict[str, Any] = resp.json()
        return body

    def flight(self) -> fl.FlightClient:
        client = fl.connect(self.flight_uri)
        self._clients.append(client)
        return client

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self.http.close()
        self.node.close()


class Clock:
    """An injectable clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def start_node(home: Path, database_url: str | None = None, clock: Clock | None = None,
               **overrides: Any) -> Harness:
    """init + open + serve a node; ``overrides`` are Settings fields (e.g. ``max_upload_bytes=1000``)."""
    settings = Settings.load(home=home, database_url=database_url, http_port=0, flight_port=0, **overrides)
    result = init_home(settings)
    node = Node.open(settings, clock=clock) if clock else Node.open(settings)
    http_port = node.start_http()
    flight_port = node.start_flight()
    http = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=30)
    operator = Party(result.operator_id, "operator", "operator", result.operator_token)
    return Harness(node, home, http, f"grpc://127.0.0.1:{flight_port}", operator)


@pytest.fixture
def harness(tmp_path: Path, backend: str | None) -> Iterator[Harness]:
    """A running node on SQLite and on PostgreSQL."""
    h = start_node(tmp_path / "home", backend)
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def sqlite_harness(tmp_path: Path) -> Iterator[Harness]:
    """A running node on SQLite only (for tests whose subject is not the database)."""
    h = start_node(tmp_path / "home")
    try:
        yield h
    finally:
        h.close()


def rewrite_history(node: Node, keep: int, regrow: int = 0) -> None:
    """An insider with the database and the node key: cut history at ``keep`` entries, make the store
    self-consistent again (state row, signed heads), then append ``regrow`` different entries with the node key."""
    with node.db.reader() as session:
        hashes = [bytes(r[0]) for r in session.execute(
            text("SELECT entry_hash FROM ledger_entries WHERE seq < :k ORDER BY seq"), {"k": keep})]
    tree = CompactRange()
    for leaf in hashes:
        tree.append(leaf)
    with node.db.transaction() as session:
        session.execute(text("DELETE FROM ledger_entries WHERE seq >= :k"), {"k": keep})
        session.execute(text("DELETE FROM ledger_checkpoints WHERE size > :k"), {"k": keep})
        session.execute(text("UPDATE ledger_state SET size = :s, frontier = :f, last_hash = :l WHERE id = 1"),
                        {"s": keep, "f": tree.to_bytes(), "l": hashes[-1]})
    for i in range(regrow):
        node.ledger.record("participant.created", "node", f"p_fake{i}",
                           {"participant": f"p_fake{i}", "name": f"fake {i}", "role": "buyer"})


def open_privacy(table: pa.Table) -> dict[str, Any]:
    """A release policy keeping every column as a plain attribute (valid only for tables without direct
    identifiers: the node refuses to release a detected identifier in clear without a reason)."""
    return {"policy": {"columns": [{"column": n, "role": "attribute", "transform": "keep"}
                                   for n in table.column_names]}}


def transport_records(rows: int, seed: int) -> pa.Table:
    """The sample records with their direct identifiers replaced by harmless columns (segment, score, channel):
    what tests of transport, authorization and filtering query, so no test output holds an identifier."""
    people = personal_records(rows, seed=seed)
    rng = np.random.default_rng(seed)
    segment = pa.array(np.array(["retail", "sme", "private", "mass"])[rng.integers(0, 4, rows)])
    score = pa.array(np.round(rng.random(rows) * 1000, 2))
    channel = pa.array(np.array(["app", "branch", "mobile-web", "partner", "web"])[rng.integers(0, 5, rows)])
    rest = people.drop_columns(["name", "resident_id", "mobile"])
    return pa.table({"segment": segment, "score": score, "channel": channel,
                     **{n: rest[n] for n in rest.column_names}})


@pytest.fixture(scope="session")
def people() -> pa.Table:
    return transport_records(3000, seed=7)


@pytest.fixture(scope="session")
def records() -> pa.Table:
    """Synthetic personal records with names, resident IDs and mobiles, for the privacy tests."""
    return personal_records(3000, seed=7)
