"""The Arrow Flight data plane, exercised through a stock ``pyarrow.flight`` client (and the ADBC driver's handshake).

Most cases share ``world``: one SQLite node (module-scoped, so ~330 cases stay fast) with a few parties, datasets and
licences that the read-only tests never change. The core happy path and mid-stream revocation run on both backends
(``backend``); tests that break the node on purpose get their own (``sqlite_harness`` or a fresh ``start_node``).

pyarrow quirks worked around here, both upstream bugs rather than ours:
- the client's ``get_schema`` raises a plain ``OSError`` (``check_status`` instead of ``check_flight_status``,
  apache/arrow#43556), so on that call the Flight class and ``extra_info`` arrive only as text;
- the server's ``get_schema`` callback does not map Flight errors like the other callbacks do (a refusal raised by a
  handler would reach the client with a Python traceback naming our files), so the node does not implement
  ``get_schema``: ``get_flight_info`` carries the same schema. Authentication still refuses it first.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as fl
import pytest
from sqlalchemy import text

from node.runtime import Node
from node.settings import Settings
from tests.conftest import Clock, Harness, Party, start_node

ROOT = Path(__file__).resolve().parent.parent
# The licence ``World.cols_lic`` grants, deliberately not in schema order; segment, score and channel stay out.
LICENSED = ["income", "city", "age", "label", "gender"]
# Rows padded to ~8 KiB so that 100-row batches (~0.8 MB) fill gRPC's flow-control window (a few MB) long
# before the stream ends: the server cannot have sent the whole table by the time the test revokes.
WIDE_PAD = 8 * 1024


# ---- helpers --------------------------------------------------------------------------------------------------
def command(**body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def info_for(client: fl.FlightClient, party: Party, cmd: bytes) -> fl.FlightInfo:
    return client.get_flight_info(fl.FlightDescriptor.for_command(cmd), party.flight_options)


def fetch(client: fl.FlightClient, party: Party, cmd: bytes) -> pa.Table:
    """get_flight_info, then do_get on its one endpoint, as a client following the protocol would."""
    info = info_for(client, party, cmd)
    (endpoint,) = info.endpoints
    table = client.do_get(endpoint.ticket, party.flight_options).read_all()
    assert table.schema.equals(info.schema)
    return table


def assert_same_rows(got: pa.Table, expected: pa.Table) -> None:
    assert got.schema.equals(expected.schema), (got.schema, expected.schema)
    keys = [(name, "ascending") for name in expected.column_names]
    assert got.num_rows == expected.num_rows
    assert got.sort_by(keys).equals(expected.sort_by(keys))


def refused(exc_type: type[fl.FlightError], code: str, call: Callable[[], object]) -> fl.FlightError:
    """``call`` fails with exactly ``exc_type`` carrying ``code``, and the text shows no traceback."""
    with pytest.raises(fl.FlightError) as caught:
        call()
    exc = caught.value
    assert type(exc) is exc_type, f"{type(exc).__name__}: {exc}"
    assert exc.extra_info == code.encode(), (exc.extra_info, str(exc))
    assert "Traceback" not in str(exc) and 'File "' not in str(exc)
    return exc


_GRPC_DETAIL = {fl.FlightUnauthenticatedError: "Unauthenticated", fl.FlightUnauthorizedError: "Unauthorized",
                fl.FlightServerError: "Failed", fl.FlightInternalError: "Internal"}


def schema_refused(exc_type: type[fl.FlightError], code: str, call: Callable[[], object]) -> None:
    """:func:`refused` for ``get_schema``, whose pyarrow client raises ``OSError`` (apache/arrow#43556)."""
    with pytest.raises((fl.FlightError, pa.ArrowException, OSError)) as caught:
        call()
    exc = caught.value
    if isinstance(exc, fl.FlightError):  # a pyarrow that maps get_schema errors like the other calls
        assert type(exc) is exc_type and exc.extra_info == code.encode(), (type(exc), exc.extra_info)
    else:
        assert f"Detail: {_GRPC_DETAIL[exc_type]}" in str(exc), str(exc)
    assert "Traceback" not in str(exc)


def options(*headers: tuple[bytes, bytes]) -> fl.FlightCallOptions:
    return fl.FlightCallOptions(headers=list(headers))


def basic(user: str, password: str, *, pad: bool = True) -> tuple[bytes, bytes]:
    encoded = base64.b64encode(f"{user}:{password}".encode())
    return b"authorization", b"Basic " + (encoded if pad else encoded.rstrip(b"="))


def read_until_refused(reader: fl.FlightStreamReader, received: int) -> tuple[int, fl.FlightError]:
    """Read the rest of a stream that must be cut off; returns the rows received and the error."""
    while True:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            pytest.fail(f"the stream ended normally after {received} rows; it should have been stopped")
        except fl.FlightError as exc:
            return received, exc
        received += chunk.data.num_rows


# ---- the shared world -------------------------------------------------------------------------------------------
def typed_table() -> pa.Table:
    """One row per id ``i``; string, ints, float (with a null), bool, date, timestamps and decimal columns."""
    ts = [datetime(2024, 1, 1), datetime(2024, 1, 1, 12), datetime(2024, 1, 2),
          datetime(2024, 1, 2, 12, 30, 15, 123456), datetime(2024, 1, 3)]
    return pa.table({
        "i": pa.array([1, 2, 3, 4, 5], pa.int64()),
        "s": pa.array(["a", "b", "北京' OR '1'='1", "1; DROP TABLE datasets;--", "c"], pa.string()),
        "i32": pa.array([-10, 0, 10, 2**31 - 1, -(2**31)], pa.int32()),
        "f": pa.array([0.5, 1.5, 2.5, None, -1.0], pa.float64()),
        "b": pa.array([True, False, True, False, True], pa.bool_()),
        "d": pa.array([date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3), date(2024, 2, 29), date(1999, 12, 31)],
                      pa.date32()),
        "ts": pa.array(ts, pa.timestamp("us")),
        "tstz": pa.array([t.replace(tzinfo=UTC) for t in ts], pa.timestamp("us", tz="UTC")),
        "dec": pa.array([Decimal("1.00"), Decimal("1.50"), Decimal("2.25"), Decimal("-3.00"), Decimal("100.99")],
                        pa.decimal128(10, 2)),
    })


@dataclass
class World:
    h: Harness
    provider: Party
    buyer: Party
    other: Party
    people: str  # dataset ids
    typed: str
    small: str
    all_lic: str  # buyer: people, every column
    cols_lic: str  # buyer: people, LICENSED only
    typed_lic: str  # buyer: typed, every column
    small_lic: str  # buyer: small, every column
    agg_lic: str  # buyer: people, mode aggregate
    others_lic: str  # other buyer: people
    others_revoked: str  # other buyer: people, revoked

    def cmd(self, lic: str | None = None, ds: str | None = None, **body: Any) -> bytes:
        return command(license=lic or self.cols_lic, dataset=ds or self.people, **body)

    def client(self) -> fl.FlightClient:
        return self.h.flight()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, people: pa.Table) -> Iterator[World]:
    h = start_node(tmp_path_factory.mktemp("flight") / "home", batch_rows=1000)
    try:
        provider = h.party("prov", "provider")
        buyer = h.party("buyer", "buyer")
        other = h.party("other", "buyer")
        people_id = h.publish(provider, people, "people")["id"]
        typed_id = h.publish(provider, typed_table(), "typed")["id"]
        small_id = h.publish(provider, people.slice(0, 10), "small")["id"]
        revoked = h.grant(provider, people_id, other)["id"]
        assert h.http.post(f"/v1/licenses/{revoked}/revoke", headers=provider.headers).status_code == 200
        yield World(
            h, provider, buyer, other, people_id, typed_id, small_id,
            all_lic=h.grant(provider, people_id, buyer)["id"],
            cols_lic=h.grant(provider, people_id, buyer, columns=LICENSED)["id"],
            typed_lic=h.grant(provider, typed_id, buyer)["id"],
            small_lic=h.grant(provider, small_id, buyer)["id"],
            agg_lic=h.grant(provider, people_id, buyer, mode="aggregate", epsilon=1)["id"],
            others_lic=h.grant(provider, people_id, other)["id"],
            others_revoked=revoked,
        )
    finally:
        h.close()


# ---- authentication ---------------------------------------------------------------------------------------------
def _call(method: str, client: fl.FlightClient, cmd: bytes, opts: fl.FlightCallOptions) -> object:
    if method == "list_flights":
        return list(client.list_flights(options=opts))
    if method == "get_flight_info":
        return client.get_flight_info(fl.FlightDescriptor.for_command(cmd), opts)
    if method == "get_schema":
        return client.get_schema(fl.FlightDescriptor.for_command(cmd), opts)
    return client.do_get(fl.Ticket(cmd), opts).read_all()


METHODS = ["list_flights", "get_flight_info", "do_get"]
AUTH_METHODS = [*METHODS, "get_schema"]

BAD_CREDENTIALS: dict[str, Callable[[World], list[tuple[bytes, bytes]]]] = {
    "no-header": lambda w: [],
    "empty": lambda w: [(b"authorization", b"")],
    "garbage": lambda w: [(b"authorization", b"garbage")],
    "token-without-scheme": lambda w: [(b"authorization", w.buyer.token.encode())],
    "bearer-without-token": lambda w: [(b"authorization", b"Bearer")],
    "bearer-blank": lambda w: [(b"authorization", b"Bearer    ")],
    "forged-bearer": lambda w: [(b"authorization", b"Bearer dsn_" + b"A" * 43)],
    "foreign-token-format": lambda w: [(b"authorization", b"Bearer eyJhbGciOiJub25lIn0.e30.")],
    "oversized-bearer": lambda w: [(b"authorization", b"Bearer dsn_" + b"A" * 4000)],
    "token-with-suffix": lambda w: [(b"authorization", f"Bearer {w.buyer.token}x".encode())],
    "unknown-scheme": lambda w: [(b"authorization", f"Token {w.buyer.token}".encode())],
    "digest-scheme": lambda w: [(b"authorization", f'Digest username="{w.buyer.id}"'.encode())],
    "basic-not-base64": lambda w: [(b"authorization", b"Basic !!!not-base64!!!")],
    "basic-no-colon": lambda w: [(b"authorization", b"Basic " + base64.b64encode(w.buyer.token.encode()))],
    "basic-wrong-password": lambda w: [basic(w.buyer.id, "dsn_" + "B" * 43)],
    "basic-other-participants-token": lambda w: [basic(w.buyer.id, w.other.token)],
    "basic-unknown-user": lambda w: [basic("nobody", w.buyer.token)],
}


@pytest.mark.parametrize("method", AUTH_METHODS)
@pytest.mark.parametrize("credentials", list(BAD_CREDENTIALS))
def test_bad_credentials_are_unauthenticated_on_every_method(world: World, credentials: str, method: str) -> None:
    opts = options(*BAD_CREDENTIALS[credentials](world))
    client = world.client()
    check = schema_refused if method == "get_schema" else refused
    check(fl.FlightUnauthenticatedError, "unauthenticated", lambda: _call(method, client, world.cmd(), opts))


def test_valid_credentials_work_on_every_method(world: World) -> None:
    client = world.client()
    for opts in (world.buyer.flight_options,
                 options((b"authorization", f"bearer  {world.buyer.token} ".encode())),
                 options(basic(world.buyer.id, world.buyer.token)),
                 options(basic("buyer", world.buyer.token))):
        for method in METHODS:
            assert _call(method, client, world.cmd(), opts)


def test_revoked_token_is_refused(world: World) -> None:
    h = world.h
    party = h.party("token-revoked", "buyer")
    lic = h.grant(world.provider, world.people, party, columns=["city"])["id"]
    client = world.client()
    cmd = command(license=lic, dataset=world.people)
    for method in METHODS:
        assert _call(method, client, cmd, party.flight_options)
    operator = h.node.service.authenticate(h.operator.token)
    assert h.node.service.revoke_tokens(operator, party.id) == 1
    for method in AUTH_METHODS:
        check = schema_refused if method == "get_schema" else refused
        check(fl.FlightUnauthenticatedError, "unauthenticated",
              lambda m=method: _call(m, client, cmd, party.flight_options))
    refused(fl.FlightUnauthenticatedError, "unauthenticated",
            lambda: client.authenticate_basic_token(party.id, party.token))


def test_basic_to_bearer_handshake(world: World) -> None:
    client = world.client()
    pair = client.authenticate_basic_token(world.buyer.id, world.buyer.token)
    assert pair == (b"authorization", f"Bearer {world.buyer.token}".encode())
    assert client.authenticate_basic_token("buyer", world.buyer.token) == pair  # the name works as the user too
    opts = options(pair)
    (info,) = [i for i in client.list_flights(options=opts) if json.loads(i.descriptor.command)["license"]
               == world.small_lic]
    assert client.do_get(info.endpoints[0].ticket, opts).read_all().num_rows == 10


@pytest.mark.parametrize("who", ["wrong-password", "other-participants-token", "unknown-user", "empty-password",
                                 "other-participant-id"])
def test_handshake_with_wrong_credentials_is_refused(world: World, who: str) -> None:
    user, password = {
        "wrong-password": (world.buyer.id, "dsn_" + "C" * 43),
        "other-participants-token": (world.buyer.id, world.other.token),
        "unknown-user": ("nobody", world.buyer.token),
        "empty-password": (world.buyer.id, ""),
        "other-participant-id": (world.other.id, world.buyer.token),
    }[who]
    client = world.client()
    refused(fl.FlightUnauthenticatedError, "unauthenticated", lambda: client.authenticate_basic_token(user, password))


def test_unpadded_basic_credentials_as_go_clients_send_them(world: World) -> None:
    header = basic(world.buyer.id, world.buyer.token)
    assert header[1].endswith(b"=")  # the case that needs padding restored
    opts = options(basic(world.buyer.id, world.buyer.token, pad=False))
    table = world.client().do_get(fl.Ticket(world.cmd(world.small_lic, world.small)), opts).read_all()
    assert table.num_rows == 10


def test_adbc_flight_sql_driver_handshake(world: World) -> None:
    """Our server is not a Flight SQL server, so only the ADBC driver's Basic→Bearer handshake is meaningful: it
    connects with good credentials (its next call then reaches the node, which refuses SQL as a bad command) and is
    refused with bad ones."""
    dbapi = pytest.importorskip("adbc_driver_flightsql.dbapi")
    adbc = pytest.importorskip("adbc_driver_manager")
    uri = world.h.flight_uri
    conn = dbapi.connect(uri, db_kwargs={"username": world.buyer.id, "password": world.buyer.token}, autocommit=True)
    try:
        cur = conn.cursor()
        try:
            with pytest.raises(adbc.Error) as caught:
                cur.execute("SELECT * FROM people")
            assert "the command must be a UTF-8 JSON object" in str(caught.value)
            assert "UNAUTHENTICATED" not in str(caught.value)
        finally:
            cur.close()
    finally:
        conn.close()
    for user, password in ((world.buyer.id, "dsn_" + "D" * 43), ("nobody", world.buyer.token)):
        with pytest.raises(adbc.Error) as caught:
            dbapi.connect(uri, db_kwargs={"username": user, "password": password}, autocommit=True).close()
        assert "UNAUTHENTICATED" in str(caught.value)
        assert "missing or invalid credentials" in str(caught.value)


# ---- list_flights -----------------------------------------------------------------------------------------------
def test_list_flights_shows_exactly_the_callers_live_rows_licences(sqlite_harness: Harness, people: pa.Table) -> None:
    h = sqlite_harness
    provider, alice, bob = h.party("p", "provider"), h.party("alice", "buyer"), h.party("bob", "buyer")
    people_id = h.publish(provider, people, "people")["id"]
    small = people.slice(100, 25)
    small_id = h.publish(provider, small, "small")["id"]
    cols = h.grant(provider, people_id, alice, columns=["city", "age"])["id"]
    whole = h.grant(provider, small_id, alice)["id"]
    revoked = h.grant(provider, people_id, alice)["id"]
    assert h.http.post(f"/v1/licenses/{revoked}/revoke", headers=provider.headers).status_code == 200
    h.grant(provider, people_id, alice, mode="aggregate", epsilon=1)
    bobs = h.grant(provider, people_id, bob, columns=["segment"])["id"]
    client = h.flight()

    infos = {json.loads(i.descriptor.command)["license"]: i for i in client.list_flights(options=alice.flight_options)}
    assert set(infos) == {cols, whole}
    expected = {cols: people.select(["city", "age"]), whole: small}
    for lic, info in infos.items():
        assert info.descriptor.descriptor_type == fl.DescriptorType.CMD
        assert json.loads(info.descriptor.command)["dataset"] == (people_id if lic == cols else small_id)
        assert info.schema.equals(expected[lic].schema)
        (endpoint,) = info.endpoints
        assert endpoint.ticket.ticket == info.descriptor.command
        assert [loc.uri.decode() for loc in endpoint.locations] == [h.flight_uri]
        assert_same_rows(client.do_get(fl.Ticket(info.descriptor.command), alice.flight_options).read_all(),
                         expected[lic])
    assert [json.loads(i.descriptor.command)["license"] for i in client.list_flights(options=bob.flight_options)] \
        == [bobs]
    assert len(list(client.list_flights(b"any criteria", options=alice.flight_options))) == 2
    assert list(client.list_flights(options=provider.flight_options)) == []  # owners hold no licence
    operator = Party(h.operator.id, "operator", "operator", h.operator.token)
    assert list(client.list_flights(options=operator.flight_options)) == []


# ---- get_flight_info / get_schema / do_get: the happy path ------------------------------------------------------
def test_core_happy_path(harness: Harness, people: pa.Table) -> None:
    h = harness
    provider, buyer = h.party("prov", "provider"), h.party("buy", "buyer")
    ds = h.publish(provider, people, "people")["id"]
    lic = h.grant(provider, ds, buyer, columns=LICENSED)["id"]
    client = h.flight()
    cmd = command(license=lic, dataset=ds, columns=["city", "age", "income"],
                  where=[["age", ">=", 30], ["city", "in", ["北京", "上海"]]])
    info = info_for(client, buyer, cmd)
    projected = pa.schema([people.schema.field(c) for c in ["city", "age", "income"]])
    assert info.schema.equals(projected)
    assert info.total_records == -1
    (endpoint,) = info.endpoints
    assert endpoint.ticket.ticket == cmd
    assert [loc.uri.decode() for loc in endpoint.locations] == [h.flight_uri]
    got = client.do_get(endpoint.ticket, buyer.flight_options).read_all()
    mask = pc.and_(pc.greater_equal(people["age"], 30), pc.is_in(people["city"], pa.array(["北京", "上海"])))
    expected = people.filter(mask).select(["city", "age", "income"])
    assert expected.num_rows > 100
    assert_same_rows(got, expected)
    (listed,) = client.list_flights(options=buyer.flight_options)
    assert json.loads(listed.descriptor.command) == {"license": lic, "dataset": ds}
    assert fetch(client, buyer, listed.descriptor.command).num_rows == people.num_rows


def test_default_columns_are_the_licensed_ones_in_schema_order(world: World, people: pa.Table) -> None:
    client = world.client()
    names = [n for n in people.column_names if n in LICENSED]
    info = info_for(client, world.buyer, world.cmd())
    assert info.schema.names == names
    assert_same_rows(fetch(client, world.buyer, world.cmd()), people.select(names))
    assert_same_rows(fetch(client, world.buyer, world.cmd(world.all_lic)), people)


@pytest.mark.parametrize("columns", [["city"], ["income", "city"], ["label", "age", "gender", "city", "income"]])
def test_projection_keeps_the_requested_order(world: World, people: pa.Table, columns: list[str]) -> None:
    client = world.client()
    cmd = world.cmd(columns=columns)
    assert info_for(client, world.buyer, cmd).schema.names == columns
    got = fetch(client, world.buyer, cmd)
    assert got.column_names == columns
    assert_same_rows(got, people.select(columns))


PEOPLE_FILTERS: dict[str, tuple[list[list[Any]], Callable[[pa.Table], Any]]] = {
    "int =": ([["age", "=", 30]], lambda t: pc.equal(t["age"], 30)),
    "int !=": ([["age", "!=", 30]], lambda t: pc.not_equal(t["age"], 30)),
    "int <": ([["age", "<", 25]], lambda t: pc.less(t["age"], 25)),
    "int <=": ([["age", "<=", 25]], lambda t: pc.less_equal(t["age"], 25)),
    "int64 >": ([["income", ">", 150000]], lambda t: pc.greater(t["income"], 150000)),
    "int64 >=": ([["income", ">=", 150000]], lambda t: pc.greater_equal(t["income"], 150000)),
    "int in": ([["age", "in", [20, 30, 40, 999]]], lambda t: pc.is_in(t["age"], pa.array([20, 30, 40], pa.int32()))),
    "int8 =": ([["label", "=", 1]], lambda t: pc.equal(t["label"], 1)),
    "string =": ([["city", "=", "北京"]], lambda t: pc.equal(t["city"], "北京")),
    "string !=": ([["gender", "!=", "男"]], lambda t: pc.not_equal(t["gender"], "男")),
    "string <": ([["city", "<", "广州"]], lambda t: pc.less(t["city"], "广州")),
    "string >=": ([["channel", ">=", "m"]], lambda t: pc.greater_equal(t["channel"], "m")),
    "string in": ([["city", "in", ["北京", "上海", "纽约"]]],
                  lambda t: pc.is_in(t["city"], pa.array(["北京", "上海", "纽约"]))),
    "combined": ([["age", ">=", 30], ["age", "<", 50], ["gender", "=", "女"], ["city", "in", ["北京", "深圳", "成都"]],
                  ["income", "<=", 120000], ["label", "!=", 1]],
                 lambda t: pc.and_(pc.and_(pc.and_(pc.greater_equal(t["age"], 30), pc.less(t["age"], 50)),
                                           pc.and_(pc.equal(t["gender"], "女"),
                                                   pc.is_in(t["city"], pa.array(["北京", "深圳", "成都"])))),
                                   pc.and_(pc.less_equal(t["income"], 120000), pc.not_equal(t["label"], 1)))),
}
EMPTY_FILTERS = {
    "contradiction": [["age", ">", 60], ["age", "<", 20]],
    "no such value": [["city", "=", "纽约"]],
    "out of data range": [["age", ">", 2**31 - 1]],
}


@pytest.mark.parametrize("case", list(PEOPLE_FILTERS))
def test_filters_match_pyarrow_compute(world: World, people: pa.Table, case: str) -> None:
    where, mask = PEOPLE_FILTERS[case]
    columns = ["segment", "channel", "city", "gender", "age", "income", "label"]
    got = fetch(world.client(), world.buyer, world.cmd(world.all_lic, columns=columns, where=where))
    expected = people.filter(mask(people)).select(columns)
    assert 0 < expected.num_rows < people.num_rows
    assert_same_rows(got, expected)


@pytest.mark.parametrize("case", list(EMPTY_FILTERS))
def test_filters_matching_nothing_return_an_empty_table(world: World, people: pa.Table, case: str) -> None:
    got = fetch(world.client(), world.buyer, world.cmd(where=EMPTY_FILTERS[case]))
    assert got.num_rows == 0
    assert got.column_names == [n for n in people.column_names if n in LICENSED]


@pytest.mark.parametrize("limit", [0, 1, 10, 1500, 3000, 10_000])
def test_limit(world: World, people: pa.Table, limit: int) -> None:
    got = fetch(world.client(), world.buyer, world.cmd(columns=["city", "age", "income"], limit=limit))
    assert got.num_rows == min(limit, people.num_rows)  # 1500 spans batches (batch_rows=1000)
    everything = {tuple(r.values()) for r in people.select(["city", "age", "income"]).to_pylist()}
    assert {tuple(r.values()) for r in got.to_pylist()} <= everything


def test_limit_applies_after_the_filter(world: World, people: pa.Table) -> None:
    got = fetch(world.client(), world.buyer, world.cmd(where=[["city", "=", "北京"], ["age", ">", 40]], limit=7))
    assert got.num_rows == 7
    assert set(got["city"].to_pylist()) == {"北京"} and min(got["age"].to_pylist()) > 40


TYPED_FILTERS: dict[str, tuple[list[list[Any]], set[int]]] = {
    "string =": ([["s", "=", "b"]], {2}),
    "string !=": ([["s", "!=", "b"]], {1, 3, 4, 5}),
    "string >=": ([["s", ">=", "b"]], {2, 3, 5}),
    "string in": ([["s", "in", ["a", "c", "zz"]]], {1, 5}),
    "int64 in": ([["i", "in", [1, 3, 99]]], {1, 3}),
    "int32 <": ([["i32", "<", 0]], {1, 5}),
    "int32 max": ([["i32", "=", 2**31 - 1]], {4}),
    "int32 min": ([["i32", "<=", -(2**31)]], {5}),
    "float <": ([["f", "<", 2.5]], {1, 2, 5}),
    "float >= int": ([["f", ">=", 2]], {3}),
    "float != skips null": ([["f", "!=", 1.5]], {1, 3, 5}),
    "float in": ([["f", "in", [0.5, -1]]], {1, 5}),
    "bool =": ([["b", "=", True]], {1, 3, 5}),
    "bool !=": ([["b", "!=", True]], {2, 4}),
    "bool in": ([["b", "in", [False]]], {2, 4}),
    "date >=": ([["d", ">=", "2024-01-02"]], {2, 3, 4}),
    "date <": ([["d", "<", "2024-01-01"]], {5}),
    "date = leap day": ([["d", "=", "2024-02-29"]], {4}),
    "date in": ([["d", "in", ["2024-01-01", "1999-12-31"]]], {1, 5}),
    "timestamp <": ([["ts", "<", "2024-01-01T12:00:00"]], {1}),
    "timestamp <=": ([["ts", "<=", "2024-01-01T12:00:00"]], {1, 2}),
    "timestamp = micros": ([["ts", "=", "2024-01-02T12:30:15.123456"]], {4}),
    "timestamp > date-only": ([["ts", ">", "2024-01-02"]], {4, 5}),
    "timestamp aware value": ([["ts", "=", "2024-01-01T20:00:00+08:00"]], {2}),
    "timestamptz >=": ([["tstz", ">=", "2024-01-02T00:00:00+00:00"]], {3, 4, 5}),
    "timestamptz < offset": ([["tstz", "<", "2024-01-02T08:00:00+08:00"]], {1, 2}),
    "timestamptz naive is utc": ([["tstz", "=", "2024-01-01T12:00:00"]], {2}),
    "decimal >= float": ([["dec", ">=", 1.5]], {2, 3, 5}),
    "decimal = string": ([["dec", "=", "2.25"]], {3}),
    "decimal < int": ([["dec", "<", 0]], {4}),
    "combined": ([["b", "=", True], ["f", ">", 0], ["d", "<", "2024-01-03"]], {1}),
}


@pytest.mark.parametrize("case", list(TYPED_FILTERS))
def test_filters_on_every_type(world: World, case: str) -> None:
    where, ids = TYPED_FILTERS[case]
    got = fetch(world.client(), world.buyer, world.cmd(world.typed_lic, world.typed, where=where))
    assert set(got["i"].to_pylist()) == ids
    assert got.num_rows == len(ids)


def test_types_survive_publish_and_stream(world: World) -> None:
    got = fetch(world.client(), world.buyer, world.cmd(world.typed_lic, world.typed))
    assert got.schema.equals(typed_table().schema)
    assert got.sort_by("i").equals(typed_table())


# ---- bad input --------------------------------------------------------------------------------------------------
def _raw(w: World, tail: str) -> bytes:
    """A command whose end is written by hand (for tokens json.dumps would not produce)."""
    return f'{{"license":"{w.cols_lic}","dataset":"{w.people}",{tail}}}'.encode()


Case = tuple[Callable[[World], bytes], type[fl.FlightError], str]
S, U = fl.FlightServerError, fl.FlightUnauthorizedError
BAD_INPUT: dict[str, Case] = {
    # not a command at all
    "invalid json": (lambda w: b"{not json", S, "invalid_command"),
    "empty": (lambda w: b"", S, "invalid_command"),
    "not utf-8": (lambda w: b'{"license": "\xff\xfe"}', S, "invalid_command"),
    "json array": (lambda w: b"[]", S, "invalid_command"),
    "json string": (lambda w: b'"rows"', S, "invalid_command"),
    "json number": (lambda w: b"42", S, "invalid_command"),
    "json null": (lambda w: b"null", S, "invalid_command"),
    "unknown key": (lambda w: w.cmd(sql="SELECT * FROM people"), S, "invalid_command"),
    "misspelt key": (lambda w: command(license=w.cols_lic, dataset=w.people, column=["city"]), S, "invalid_command"),
    "version 2": (lambda w: w.cmd(version=2), S, "invalid_command"),
    "too large": (lambda w: w.cmd(where=[["city", "=", "x" * 70_000]]), S, "invalid_command"),
    "no licence": (lambda w: command(dataset=w.people), S, "invalid_command"),
    "licence not a string": (lambda w: command(license=1, dataset=w.people), S, "invalid_command"),
    "licence too long": (lambda w: command(license="l" * 65, dataset=w.people), S, "invalid_command"),
    "no dataset": (lambda w: command(license=w.cols_lic), S, "invalid_command"),
    "columns empty": (lambda w: w.cmd(columns=[]), S, "invalid_command"),
    "columns a string": (lambda w: w.cmd(columns="city"), S, "invalid_command"),
    "columns not strings": (lambda w: w.cmd(columns=[1]), S, "invalid_command"),
    "columns repeat": (lambda w: w.cmd(columns=["city", "city"]), S, "invalid_command"),
    "limit negative": (lambda w: w.cmd(limit=-1), S, "invalid_command"),
    "limit a string": (lambda w: w.cmd(limit="10"), S, "invalid_command"),
    "limit a bool": (lambda w: w.cmd(limit=True), S, "invalid_command"),
    "limit a float": (lambda w: w.cmd(limit=1.5), S, "invalid_command"),
    "limit NaN": (lambda w: _raw(w, '"limit":NaN'), S, "invalid_command"),
    # malformed filters
    "where not a list": (lambda w: w.cmd(where={"age": 30}), S, "invalid_filter"),
    "filter too short": (lambda w: w.cmd(where=[["age", ">"]]), S, "invalid_filter"),
    "filter too long": (lambda w: w.cmd(where=[["age", ">", 1, 2]]), S, "invalid_filter"),
    "filter not a list": (lambda w: w.cmd(where=["age > 30"]), S, "invalid_filter"),
    "filter column not a string": (lambda w: w.cmd(where=[[1, "=", 1]]), S, "invalid_filter"),
    "too many filters": (lambda w: w.cmd(where=[["age", ">", 1]] * 65), S, "invalid_filter"),
    "op LIKE": (lambda w: w.cmd(where=[["city", "LIKE", "%"]]), S, "invalid_filter"),
    "op ==": (lambda w: w.cmd(where=[["age", "==", 30]]), S, "invalid_filter"),
    "op <>": (lambda w: w.cmd(where=[["age", "<>", 30]]), S, "invalid_filter"),
    "op IN": (lambda w: w.cmd(where=[["age", "IN", [30]]]), S, "invalid_filter"),
    "op not in": (lambda w: w.cmd(where=[["age", "not in", [30]]]), S, "invalid_filter"),
    "op not a string": (lambda w: w.cmd(where=[["age", 1, 30]]), S, "invalid_filter"),
    # values of the wrong type
    "string for int": (lambda w: w.cmd(where=[["age", "=", "30"]]), S, "invalid_filter"),
    "float for int": (lambda w: w.cmd(where=[["age", "=", 30.5]]), S, "invalid_filter"),
    "integral float for int": (lambda w: w.cmd(where=[["age", "=", 30.0]]), S, "invalid_filter"),
    "bool for int": (lambda w: w.cmd(where=[["age", "=", True]]), S, "invalid_filter"),
    "bool for int8": (lambda w: w.cmd(where=[["label", "in", [True]]]), S, "invalid_filter"),
    "int for string": (lambda w: w.cmd(where=[["city", "=", 1]]), S, "invalid_filter"),
    "list for string": (lambda w: w.cmd(where=[["city", "=", ["北京"]]]), S, "invalid_filter"),
    "object for int": (lambda w: w.cmd(where=[["age", "=", {"$gt": 1}]]), S, "invalid_filter"),
    "null for int": (lambda w: w.cmd(where=[["age", "=", None]]), S, "invalid_filter"),
    "null for string": (lambda w: w.cmd(where=[["city", "!=", None]]), S, "invalid_filter"),
    "null in list": (lambda w: w.cmd(where=[["city", "in", ["北京", None]]]), S, "invalid_filter"),
    "NaN": (lambda w: _raw(w, '"where":[["income",">",NaN]]'), S, "invalid_filter"),
    "Infinity": (lambda w: _raw(w, '"where":[["age","<",Infinity]]'), S, "invalid_filter"),
    "-Infinity": (lambda w: _raw(w, '"where":[["age",">",-Infinity]]'), S, "invalid_filter"),
    "NaN in list": (lambda w: _raw(w, '"where":[["age","in",[1,NaN]]]'), S, "invalid_filter"),
    "1e400 (inf)": (lambda w: _raw(w, '"where":[["income","<",1e400]]'), S, "invalid_filter"),
    "int32 overflow": (lambda w: w.cmd(where=[["age", "=", 2**31]]), S, "invalid_filter"),
    "int32 underflow": (lambda w: w.cmd(where=[["age", ">", -(2**31) - 1]]), S, "invalid_filter"),
    "int8 overflow": (lambda w: w.cmd(where=[["label", "=", 128]]), S, "invalid_filter"),
    "int64 overflow": (lambda w: w.cmd(where=[["income", "<", 2**63]]), S, "invalid_filter"),
    "huge int": (lambda w: w.cmd(where=[["income", "<", 10**400]]), S, "invalid_filter"),
    "in empty": (lambda w: w.cmd(where=[["city", "in", []]]), S, "invalid_filter"),
    "in not a list": (lambda w: w.cmd(where=[["city", "in", "北京"]]), S, "invalid_filter"),
    "in mixed types": (lambda w: w.cmd(where=[["age", "in", [30, "31"]]]), S, "invalid_filter"),
    "in too many": (lambda w: w.cmd(where=[["age", "in", [1] * 10_001]]), S, "invalid_filter"),
    "= with a list": (lambda w: w.cmd(where=[["age", "=", [30]]]), S, "invalid_filter"),
    "int for bool": (lambda w: w.cmd(w.typed_lic, w.typed, where=[["b", "=", 1]]), S, "invalid_filter"),
    "string for bool": (lambda w: w.cmd(w.typed_lic, w.typed, where=[["b", "=", "true"]]), S, "invalid_filter"),
    "string for float": (lambda w: w.cmd(w.typed_lic, w.typed, where=[["f", "=", "1.5"]]), S, "invalid_filter"),
    "huge int for float": (lambda w: w.cmd(w.typed_lic, w.typed, where=[["f", "<", 10**400]]), S, "invalid_filter"),
    "Infinity for float": (lambda w: _raw(w, '"where":[["f","<",Infinity]]').replace(
        w.cols_lic.encode(), w.typed_lic.encode()).replace(w.people.encode(), w.typed.encode()),
        S, "invalid_filter"),
    "bad date": (lambda w: w.cmd(w.typed_lic, w.typed, where=[["d", "=", "2024-13-01"]]), S, "invalid_filter"),
    "not a leap day": (lambda w: w.cmd(w.typed_lic, w.typed, where=[["d", "=", "2023-02-29"]]), S, "invalid_filter"),
    "int for date": (lambda w: w.cmd(w.typed_lic, w.typed, where=[["d", "=", 20240101]]), S, "invalid_filter"),
    "bad timestamp": (lambda w: w.cmd(w.typed_lic, w.typed, where=[["ts", "<", "yesterday"]]), S, "invalid_filter"),
    "int for timestamp": (lambda w: w.cmd(w.typed_lic, w.typed, where=[["ts", "<", 1704067200]]),
                          S, "invalid_filter"),
    "decimal scale": (lambda w: w.cmd(w.typed_lic, w.typed, where=[["dec", "=", "1.234"]]), S, "invalid_filter"),
    "decimal precision": (lambda w: w.cmd(w.typed_lic, w.typed, where=[["dec", "<", "123456789012"]]),
                          S, "invalid_filter"),
    "decimal NaN string": (lambda w: w.cmd(w.typed_lic, w.typed, where=[["dec", "=", "NaN"]]), S, "invalid_filter"),
    "decimal not a number": (lambda w: w.cmd(w.typed_lic, w.typed, where=[["dec", "=", "abc"]]),
                             S, "invalid_filter"),
    "decimal bool": (lambda w: w.cmd(w.typed_lic, w.typed, where=[["dec", "=", True]]), S, "invalid_filter"),
    # columns
    "unknown column": (lambda w: w.cmd(columns=["city", "nope"]), S, "unknown_column"),
    "unknown column in where": (lambda w: w.cmd(where=[["nope", "=", 1]]), S, "unknown_column"),
    "column case differs": (lambda w: w.cmd(columns=["City"]), S, "unknown_column"),
    "column not licensed": (lambda w: w.cmd(columns=["city", "segment"]), U, "column_not_licensed"),
    "column not licensed in where only": (lambda w: w.cmd(columns=["city"], where=[["segment", "=", "x"]]),
                                          U, "column_not_licensed"),
    "column not licensed in where, default columns": (lambda w: w.cmd(where=[["channel", ">", "1"]]),
                                                      U, "column_not_licensed"),
    # licences
    "licence for another dataset": (lambda w: w.cmd(w.small_lic, w.people), U, "permission_denied"),
    "dataset of another licence": (lambda w: w.cmd(w.cols_lic, w.small), U, "permission_denied"),
    "another buyer's licence": (lambda w: w.cmd(w.others_lic), U, "permission_denied"),
    "another buyer's revoked licence": (lambda w: w.cmd(w.others_revoked), U, "permission_denied"),
    "unknown licence": (lambda w: w.cmd("lic_00000000000000000000"), U, "permission_denied"),
    "unknown dataset": (lambda w: w.cmd(w.cols_lic, "ds_00000000000000000000"), U, "permission_denied"),
    "aggregate licence": (lambda w: w.cmd(w.agg_lic), S, "mode_not_licensed"),
}


@pytest.mark.parametrize("method", ["get_flight_info", "do_get"])
@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_refused_with_its_code(world: World, case: str, method: str) -> None:
    build, exc_type, code = BAD_INPUT[case]
    exc = refused(exc_type, code, lambda: _call(method, world.client(), build(world), world.buyer.flight_options))
    assert "x" * 100 not in str(exc)  # values are never echoed back


def test_get_schema_is_not_offered_and_leaks_nothing(world: World) -> None:
    """get_schema is deliberately unimplemented (see the module docstring); its refusal names no node file."""
    with pytest.raises(pa.ArrowNotImplementedError) as caught:
        world.client().get_schema(fl.FlightDescriptor.for_command(world.cmd()), world.buyer.flight_options)
    assert "node/" not in str(caught.value) and "dsnode" not in str(caught.value)


def test_path_descriptor_is_refused(world: World) -> None:
    refused(fl.FlightServerError, "invalid_command",
            lambda: world.client().get_flight_info(fl.FlightDescriptor.for_path("people"), world.buyer.flight_options))


# ---- injection --------------------------------------------------------------------------------------------------
SQL_VALUES = ["北京' OR '1'='1", "1; DROP TABLE datasets;--", "' OR 1=1 --", '" OR ""="', "北京'--", "%", "_", "*",
              "北京\x00", "'; DELETE FROM licenses; --"]


@pytest.mark.parametrize("value", SQL_VALUES)
def test_sql_in_string_values_matches_only_the_literal(world: World, people: pa.Table, value: str) -> None:
    client = world.client()
    assert fetch(client, world.buyer, world.cmd(where=[["city", "=", value]])).num_rows == 0
    got = fetch(client, world.buyer, world.cmd(columns=["city"], where=[["city", "in", [value, "北京"]]]))
    assert got.num_rows == pc.sum(pc.equal(people["city"], "北京")).as_py() > 0
    assert set(got["city"].to_pylist()) == {"北京"}
    assert fetch(client, world.buyer, world.cmd(where=[["city", "!=", value]])).num_rows == people.num_rows


@pytest.mark.parametrize("value", ["北京' OR '1'='1", "1; DROP TABLE datasets;--"])
def test_sql_looking_values_are_matched_literally(world: World, value: str) -> None:
    got = fetch(world.client(), world.buyer, world.cmd(world.typed_lic, world.typed, where=[["s", "=", value]]))
    assert got["s"].to_pylist() == [value]


def test_the_database_is_intact_after_injection_attempts(world: World) -> None:
    for value in SQL_VALUES:
        for cmd in (world.cmd(where=[["city", "=", value]]), world.cmd(value[:64] or "x", value[:64] or "x")):
            with contextlib.suppress(fl.FlightError):
                world.client().do_get(fl.Ticket(cmd), world.buyer.flight_options).read_all()
    with world.h.node.db.reader() as session:
        for table in ("datasets", "licenses", "participants", "api_tokens"):
            assert session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() > 0, table
    resp = world.h.http.get(f"/v1/datasets/{world.people}", headers=world.provider.headers)
    assert resp.status_code == 200 and resp.json()["num_rows"] == 3000
    assert fetch(world.client(), world.buyer, world.cmd(columns=["city"])).num_rows == 3000


COLUMN_INJECTIONS = ["age; DROP TABLE x", "../../etc/passwd", 'city" OR 1=1 --', "city' --", "*", "age)", "",
                     " city", "city\x00", "data/datasets", "__dict__"]


@pytest.mark.parametrize("where", [False, True], ids=["columns", "where"])
@pytest.mark.parametrize("name", COLUMN_INJECTIONS)
def test_injection_in_column_names_is_unknown_column(world: World, name: str, where: bool) -> None:
    cmd = world.cmd(where=[[name, "=", 1]]) if where else world.cmd(columns=[name])
    refused(fl.FlightServerError, "unknown_column", lambda: info_for(world.client(), world.buyer, cmd))
    refused(fl.FlightServerError, "unknown_column",
            lambda: world.client().do_get(fl.Ticket(cmd), world.buyer.flight_options).read_all())


@pytest.mark.parametrize("lic, ds", [("lic_' OR '1'='1", None), (None, "../../etc/passwd"),
                                     (None, "ds_x' OR '1'='1"), ("' OR 1=1 --", "'; DROP TABLE datasets; --")])
def test_injection_in_ids_is_permission_denied(world: World, lic: str | None, ds: str | None) -> None:
    refused(fl.FlightUnauthorizedError, "permission_denied",
            lambda: info_for(world.client(), world.buyer, world.cmd(lic, ds)))


# ---- revocation and expiry stop streams ---------------------------------------------------------------------------
@pytest.fixture
def streaming(tmp_path: Path, backend: str | None) -> Iterator[tuple[Harness, str | None]]:
    """A node with 100-row batches, on SQLite and PostgreSQL."""
    home = tmp_path / "home"
    h = start_node(home, backend, batch_rows=100)
    try:
        yield h, backend
    finally:
        h.close()
        shutil.rmtree(home, ignore_errors=True)  # the serving copy of the wide table is ~25 MB


def wide(people: pa.Table) -> pa.Table:
    return people.append_column("pad", pa.array(["x" * WIDE_PAD] * people.num_rows, pa.string()))


def _revoke_over_http(h: Harness, owner: Party, lic: str, database_url: str | None) -> None:
    resp = h.http.post(f"/v1/licenses/{lic}/revoke", headers=owner.headers, json={"reason": "test"})
    assert resp.status_code == 200, resp.text


def _revoke_from_another_node(h: Harness, owner: Party, lic: str, database_url: str | None) -> None:
    other = Node.open(Settings.load(home=h.home, database_url=database_url))
    try:
        other.service.revoke_license(other.service.authenticate(h.operator.token), lic, "from another node")
    finally:
        other.close()


def _revoke_from_another_process(h: Harness, owner: Party, lic: str, database_url: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSNODE_")}
    if database_url:
        env["DSNODE_DATABASE_URL"] = database_url
    done = subprocess.run(
        [sys.executable, "-c", "from node.cli import main; main()", "license", "revoke", lic,
         "--token", owner.token, "--home", str(h.home), "--reason", "from the CLI"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr


REVOKERS = {"http": _revoke_over_http, "second-node": _revoke_from_another_node,
            "cli-process": _revoke_from_another_process}


@pytest.mark.parametrize("revoker", list(REVOKERS))
def test_revocation_stops_an_ongoing_stream(streaming: tuple[Harness, str | None], people: pa.Table,
                                            revoker: str) -> None:
    h, database_url = streaming
    provider, buyer = h.party("prov", "provider"), h.party("buy", "buyer")
    ds = h.publish(provider, wide(people), "wide")["id"]
    lic = h.grant(provider, ds, buyer)["id"]
    # gRPC's BDP probing may grow the flow-control window until the whole 24 MB stream sits in buffers before a
    # slow revoker (a new CLI process) commits; without it the window stays small and the server must re-check.
    client = fl.connect(h.flight_uri, generic_options=[("grpc.http2.bdp_probe", 0)])
    h._clients.append(client)
    reader = client.do_get(fl.Ticket(command(license=lic, dataset=ds)), buyer.flight_options)
    first = reader.read_chunk().data
    assert first.num_rows == 100

    REVOKERS[revoker](h, provider, lic, database_url)

    received, exc = read_until_refused(reader, first.num_rows)
    assert type(exc) is fl.FlightUnauthorizedError and exc.extra_info == b"license_revoked", exc
    assert received < people.num_rows
    refused(fl.FlightUnauthorizedError, "license_revoked",
            lambda: info_for(client, buyer, command(license=lic, dataset=ds, columns=["city"])))
    refused(fl.FlightUnauthorizedError, "license_revoked",
            lambda: client.do_get(fl.Ticket(command(license=lic, dataset=ds)), buyer.flight_options).read_all())
    assert list(client.list_flights(options=buyer.flight_options)) == []


def test_expired_licence_stops_a_stream_and_is_refused(tmp_path: Path, people: pa.Table) -> None:
    clock = Clock()
    home = tmp_path / "home"
    h = start_node(home, clock=clock, batch_rows=100)
    try:
        provider, buyer = h.party("prov", "provider"), h.party("buy", "buyer")
        ds = h.publish(provider, wide(people), "wide")["id"]
        expires = (clock.now + timedelta(hours=1)).replace(microsecond=0)
        lic = h.grant(provider, ds, buyer, expires_at=expires.isoformat())["id"]
        client = h.flight()
        cmd = command(license=lic, dataset=ds, columns=["city", "pad"])
        clock.now = expires - timedelta(seconds=1)
        assert len(list(client.list_flights(options=buyer.flight_options))) == 1
        reader = client.do_get(fl.Ticket(cmd), buyer.flight_options)
        first = reader.read_chunk().data
        assert first.num_rows == 100

        clock.now = expires  # expiry is exclusive: at expires_at the licence is no longer live
        received, exc = read_until_refused(reader, first.num_rows)
        assert type(exc) is fl.FlightUnauthorizedError and exc.extra_info == b"license_expired", exc
        assert received < people.num_rows
        refused(fl.FlightUnauthorizedError, "license_expired", lambda: info_for(client, buyer, cmd))
        assert list(client.list_flights(options=buyer.flight_options)) == []
        other = h.party("other", "buyer")
        refused(fl.FlightUnauthorizedError, "permission_denied", lambda: info_for(client, other, cmd))
    finally:
        h.close()
        shutil.rmtree(home, ignore_errors=True)


# ---- unknown errors never leak ------------------------------------------------------------------------------------
def _garbage_serving_copy(ds_dir: Path) -> None:
    (ds_dir / "serve.arrow").write_bytes(b"this is not an Arrow IPC file")


def _garbage_parquet_without_serving_copy(ds_dir: Path) -> None:
    (ds_dir / "serve.arrow").unlink()
    (ds_dir / "data.parquet").write_bytes(b"PAR1 not really parquet PAR1")


def _truncated_serving_copy(ds_dir: Path) -> None:
    path = ds_dir / "serve.arrow"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _files_deleted(ds_dir: Path) -> None:
    shutil.rmtree(ds_dir)


BREAKAGES = {"garbage-serving-copy": _garbage_serving_copy,
             "garbage-parquet": _garbage_parquet_without_serving_copy,
             "truncated-serving-copy": _truncated_serving_copy,
             "files-deleted": _files_deleted}
_LEAKS = ["Traceback", 'File "', "Python exception", "Errno", "No such file", "ArrowInvalid", "Parquet", "parquet",
          "magic", "IPC", "serve.arrow", "datasets", "/tmp", "/work", "home"]


_GRPC_DECORATION = {"Detail", "Internal", "gRPC", "client", "debug", "context", "INTERNAL", "Client", "IOError",
                    "Server", "never", "sent", "a", "data", "message", "OK"}


def assert_internal_without_detail(exc: fl.FlightError, h: Harness, ds: str, caplog: pytest.LogCaptureFixture) -> None:
    assert type(exc) is fl.FlightInternalError, f"{type(exc).__name__}: {exc}"
    assert exc.extra_info == b"internal"
    message = str(exc)
    ids = set(re.findall(r"internal error \(request id ([0-9a-f]{12})\)", message))
    assert len(ids) == 1, message
    for leak in [*_LEAKS, str(h.home), ds]:
        assert leak not in message, (leak, message)
    # Beyond our sentence only the gRPC client's own decoration may appear, never words from the failure itself.
    residue = re.sub(r"internal error \(request id [0-9a-f]{12}\)", "", message)
    assert set(re.findall(r"\w+", residue)) <= _GRPC_DECORATION, message
    (request_id,) = ids
    logged = [r for r in caplog.records if r.name == "dsnode.flight" and request_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the detail went to the server log only


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_unknown_errors_in_do_get_do_not_leak(sqlite_harness: Harness, people: pa.Table, breakage: str,
                                              caplog: pytest.LogCaptureFixture) -> None:
    h = sqlite_harness
    provider, buyer = h.party("prov", "provider"), h.party("buy", "buyer")
    ds = h.publish(provider, people, "people")["id"]
    healthy = h.publish(provider, people.slice(0, 5), "healthy")["id"]
    lic = h.grant(provider, ds, buyer)["id"]
    healthy_lic = h.grant(provider, healthy, buyer)["id"]
    client = h.flight()
    cmd = command(license=lic, dataset=ds)
    assert fetch(client, buyer, cmd).num_rows == people.num_rows
    client.close()  # a fresh connection, so nothing is served from an already open memory map

    BREAKAGES[breakage](h.home / "data" / "datasets" / ds)

    client = h.flight()
    fresh = h.grant(provider, ds, buyer)["id"]  # its release is built from the broken files
    with caplog.at_level(logging.ERROR, logger="dsnode.flight"), pytest.raises(fl.FlightError) as caught:
        fetch(client, buyer, command(license=fresh, dataset=ds))
    assert_internal_without_detail(caught.value, h, ds, caplog)
    assert fetch(client, buyer, command(license=healthy_lic, dataset=healthy)).num_rows == 5  # still serving


def test_unknown_errors_in_planning_do_not_leak(sqlite_harness: Harness, people: pa.Table,
                                                caplog: pytest.LogCaptureFixture) -> None:
    h = sqlite_harness
    provider, buyer = h.party("prov", "provider"), h.party("buy", "buyer")
    ds = h.publish(provider, people, "people")["id"]
    lic = h.grant(provider, ds, buyer)["id"]
    with h.node.db.transaction() as session:  # a stored schema that no longer parses
        session.execute(text("UPDATE datasets SET arrow_schema = :bad WHERE id = :id"),
                        {"bad": base64.b64encode(b"/etc/passwd is not a schema").decode(), "id": ds})
    client = h.flight()
    cmd = command(license=lic, dataset=ds)
    calls: list[Callable[[], object]] = [
        lambda: info_for(client, buyer, cmd),
        lambda: client.do_get(fl.Ticket(cmd), buyer.flight_options).read_all(),
        lambda: list(client.list_flights(options=buyer.flight_options)),
    ]
    for call in calls:
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="dsnode.flight"), pytest.raises(fl.FlightError) as caught:
            call()
        assert_internal_without_detail(caught.value, h, ds, caplog)
        assert "passwd" not in str(caught.value)


def test_unknown_error_mid_stream_does_not_leak(tmp_path: Path, people: pa.Table,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """The database fails between two batches (the per-batch licence re-check cannot read its table): the stream
    stops with ``internal`` and none of the SQL error text."""
    home = tmp_path / "home"
    h = start_node(home, batch_rows=100)
    try:
        provider, buyer = h.party("prov", "provider"), h.party("buy", "buyer")
        ds = h.publish(provider, wide(people), "wide")["id"]
        lic = h.grant(provider, ds, buyer)["id"]
        reader = h.flight().do_get(fl.Ticket(command(license=lic, dataset=ds)), buyer.flight_options)
        first = reader.read_chunk().data
        with h.node.db.transaction() as session:
            session.execute(text("ALTER TABLE licenses RENAME TO licenses_gone"))
        with caplog.at_level(logging.ERROR, logger="dsnode.flight"):
            received, exc = read_until_refused(reader, first.num_rows)
        assert received < people.num_rows
        assert_internal_without_detail(exc, h, ds, caplog)
        for leak in ("SELECT", "licenses", "sqlite", "OperationalError", "no such table", lic):
            assert leak not in str(exc), (leak, str(exc))
    finally:
        h.close()
        shutil.rmtree(home, ignore_errors=True)
