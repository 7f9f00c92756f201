"""A data space of three nodes, each its own ``dsnode serve`` process on loopback (node2 on PostgreSQL when it is
reachable), one shared embedded chain: federated catalogs, a dataset split over two nodes fetched in parallel with
a stock pyarrow client, revocation reaching every endpoint, nodes going down mid-stream.

Attacks: a catalog altered in transit, a grant altered or presented with another token or after its expiry, a
quote asked of a node that does not own the dataset, DP on a partitioned dataset.
"""

from __future__ import annotations

import base64
import http.server
import io
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as fl
import pyarrow.parquet as pq
import pytest

from ledger import canonical_json
from node.federation import GRANT_PREFIX, sign
from node.keys import load_key
from node.space import SpaceNode, load_space, space_down, space_up
from tests.conftest import PG_ADMIN, REQUIRE_PG, Harness, _pg_available, open_privacy, start_node, transport_records
from tests.test_cli import dsnode

SPACE_SETTINGS = {"batch_rows": 100, "remote_license_ttl_seconds": 0.0, "federation_refresh_seconds": 0.0}
_OPEN: list[Client] = []  # each closed when its space stops


class Client:
    """A participant of one node, talking to it as any HTTP client would."""

    def __init__(self, node: SpaceNode, token: str, pid: str = "") -> None:
        self.node, self.token, self.id = node, token, pid
        self.http = httpx.Client(base_url=node.http_url, timeout=60,
                                 headers={"authorization": f"Bearer {token}"})
        _OPEN.append(self)

    @property
    def flight_options(self) -> fl.FlightCallOptions:
        return fl.FlightCallOptions(headers=[(b"authorization", f"Bearer {self.token}".encode())])

    def party(self, name: str, role: str) -> Client:
        reply = self.http.post("/v1/participants", json={"name": name, "role": role})
        assert reply.status_code == 201, reply.text
        return Client(self.node, reply.json()["token"], reply.json()["id"])


def _start(directory: Path) -> list[SpaceNode]:
    admin = PG_ADMIN if (REQUIRE_PG or _pg_available()) else None
    return space_up(directory, 3, admin, extra=SPACE_SETTINGS)


def _stop(directory: Path, members: list[SpaceNode]) -> None:
    homes = {m.home for m in members}
    for client in [c for c in _OPEN if c.node.home in homes]:
        client.http.close()
        _OPEN.remove(client)
    running, killed = space_down(directory)
    assert killed == 0, "a node did not stop on SIGTERM within the grace period"
    for m in members:
        if m.database_url:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{m.database_url.rsplit("/", 1)[1]}" WITH (FORCE)')


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _split_dataset(nodes: list[SpaceNode], rows: int = 4000) -> dict[str, Any]:
    """A dataset owned by node1: the first half stored there, the second half hosted by node2."""
    node1, node2 = nodes[0], nodes[1]
    op1, op2 = Client(node1, node1.operator_token), Client(node2, node2.operator_token)
    provider, buyer = op1.party("provider", "provider"), op1.party("buyer", "buyer")
    host_provider = op2.party("provider-at-2", "provider")
    table = transport_records(rows, seed=11)
    half = rows // 2
    ds = provider.http.post("/v1/datasets", files={"file": ("a.parquet", _parquet(table.slice(0, half)))},
                            data={"manifest": json.dumps({"name": "split", "title": "Split", "tags": ["t"],
                                                          "privacy": open_privacy(table)})})
    assert ds.status_code == 201, ds.text
    dataset = ds.json()["id"]
    hosted = host_provider.http.post("/v1/partitions", files={"file": ("b.parquet", _parquet(table.slice(half)))},
                                     data={"owner": "node1", "dataset": dataset})
    assert hosted.status_code == 201, hosted.text
    attached = provider.http.post(f"/v1/datasets/{dataset}/partitions", json=hosted.json())
    assert attached.status_code == 201, attached.text
    lic = provider.http.post("/v1/licenses", json={"dataset": dataset, "buyer": buyer.id, "mode": "rows"})
    assert lic.status_code == 201, lic.text
    return {"table": table, "dataset": dataset, "license": lic.json()["id"], "provider": provider, "buyer": buyer,
            "statement": hosted.json()}


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[SpaceNode], dict[str, Any]]]:
    directory = tmp_path_factory.mktemp("space")
    members = _start(directory)
    try:
        yield members, _split_dataset(members)
    finally:
        _stop(directory, members)


def _info(nodes: list[SpaceNode], split: dict[str, Any], **command: Any) -> fl.FlightInfo:
    client = fl.connect(nodes[0].flight_url)
    cmd = json.dumps({"license": split["license"], "dataset": split["dataset"], **command}).encode()
    return client.get_flight_info(fl.FlightDescriptor.for_command(cmd), split["buyer"].flight_options)


def _fetch(endpoint: fl.FlightEndpoint, options: fl.FlightCallOptions) -> pa.Table:
    """What a stock client does with one endpoint: connect to its location, do_get its ticket."""
    location = endpoint.locations[0].uri
    with fl.connect(location.decode() if isinstance(location, bytes) else location) as client:
        table: pa.Table = client.do_get(endpoint.ticket, options).read_all()
        return table


def _sorted(table: pa.Table) -> pa.Table:
    return table.take(pc.sort_indices(table, [(name, "ascending") for name in table.column_names]))


def test_the_space_runs_every_node_in_its_own_process_on_one_chain(
        space: tuple[list[SpaceNode], dict[str, Any]]) -> None:
    nodes, _ = space
    assert len({m.pid for m in nodes}) == 3 and all(m.pid for m in nodes)
    assert (nodes[1].database_url is not None) == (REQUIRE_PG or _pg_available())
    infos = [httpx.get(f"{m.http_url}/v1/node").json() for m in nodes]
    assert [i["name"] for i in infos] == ["node1", "node2", "node3"]
    deadline = time.monotonic() + 60  # each serving node deploys its contracts on the shared chain at start
    while time.monotonic() < deadline:
        chains = [httpx.get(f"{m.http_url}/v1/chain").json() for m in nodes]
        if all("chain_id" in c for c in chains):
            break
        time.sleep(0.2)
    assert len({c["chain_id"] for c in chains}) == 1
    assert len({c["contracts"]["LedgerAnchor"] for c in chains}) == 3  # one journal, three nodes' contracts
    peers = httpx.get(f"{nodes[2].http_url}/v1/peers",
                      headers={"authorization": f"Bearer {nodes[2].operator_token}"}).json()
    assert {p["name"] for p in peers} == {"node1", "node2"}


def test_a_buyer_fetches_a_dataset_split_over_two_nodes_in_parallel(
        space: tuple[list[SpaceNode], dict[str, Any]]) -> None:
    nodes, split = space
    info = _info(nodes, split)
    locations = [e.locations[0].uri for e in info.endpoints]
    assert len(locations) == 2 and len(set(locations)) == 2  # one endpoint per node holding rows
    with ThreadPoolExecutor(2) as pool:
        parts = list(pool.map(lambda e: _fetch(e, split["buyer"].flight_options), info.endpoints))
    assert [p.num_rows for p in parts] == [2000, 2000]
    assert all(p.schema == info.schema for p in parts)
    got = pa.concat_tables(parts)
    assert _sorted(got).equals(_sorted(split["table"].select(got.column_names)))

    # A filtered, projected query is re-validated and applied by each node itself.
    info = _info(nodes, split, columns=["city", "income"], where=[["city", "=", "Beijing"]])
    parts = [_fetch(e, split["buyer"].flight_options) for e in info.endpoints]
    expected = split["table"].filter(pc.equal(split["table"]["city"], "Beijing")).num_rows
    assert sum(p.num_rows for p in parts) == expected and all(p.column_names == ["city", "income"] for p in parts)


def test_grants_are_bound_to_their_owner_token_and_content(space: tuple[list[SpaceNode], dict[str, Any]]) -> None:
    nodes, split = space
    remote = _info(nodes, split).endpoints[1]
    ticket = remote.ticket.ticket
    signed = json.loads(ticket[len(GRANT_PREFIX):])
    host = fl.connect(nodes[1].flight_url)

    def refused(ticket_bytes: bytes, options: fl.FlightCallOptions) -> fl.FlightError:
        with pytest.raises(fl.FlightError) as exc:
            host.do_get(fl.Ticket(ticket_bytes), options).read_all()
        return exc.value

    altered = dict(signed["grant"], columns=None, where=[], policy=signed["grant"]["policy"])
    altered["rows"] = 10**9
    forged = GRANT_PREFIX + canonical_json({"grant": altered, "signature": signed["signature"]})
    assert refused(forged, split["buyer"].flight_options).extra_info == b"invalid_grant"

    thief = Client(nodes[0], nodes[0].operator_token)  # a valid token of node1, but not the buyer's
    exc = refused(ticket, thief.flight_options)
    assert isinstance(exc, fl.FlightUnauthenticatedError)
    # Without credentials the grant is a capability: the buyer need not send its node1 token to node2.
    assert host.do_get(fl.Ticket(ticket), fl.FlightCallOptions()).read_all().num_rows == 2000

    key = load_key(Path(nodes[0].home) / "node_key.pem")  # node1's own key: a well-formed grant, but expired
    expired = dict(signed["grant"], expires=int(time.time()) - 1)
    stale = GRANT_PREFIX + canonical_json({"grant": expired, "signature": sign(key, expired)})
    assert refused(stale, split["buyer"].flight_options).extra_info == b"grant_expired"
    # Without a grant, node2 knows nothing of node1's buyer: its token is refused outright.
    plain = json.dumps({"license": split["license"], "dataset": split["dataset"]}).encode()
    assert isinstance(refused(plain, split["buyer"].flight_options), fl.FlightUnauthenticatedError)


def test_catalogs_are_followed_incrementally_and_quotes_stay_with_the_owner(
        space: tuple[list[SpaceNode], dict[str, Any]]) -> None:
    nodes, split = space
    exchange = Client(nodes[2], nodes[2].operator_token)
    taken = exchange.http.post("/v1/peers/sync").json()
    assert taken["node1"] >= 1
    listing = {item["id"]: item for item in exchange.http.get("/v1/listings").json()}[split["dataset"]]
    assert listing["owner_node"] == "node1" and listing["num_rows"] == 4000
    assert [p["node"] for p in listing["partitions"]] == ["node1", "node2"]
    assert listing["http_url"] == nodes[0].http_url

    again = exchange.http.post("/v1/peers/sync").json()
    assert again == {"node1": 0, "node2": 0}  # nothing changed since: the cursor moved, nothing is re-sent
    split["provider"].http.post("/v1/datasets", files={"file": ("c.parquet", _parquet(split["table"].slice(0, 50)))},
                                data={"manifest": json.dumps({"name": "later", "title": "Later", "privacy":
                                                              open_privacy(split["table"])})})
    assert exchange.http.post("/v1/peers/sync").json()["node1"] == 1

    buyer_at_exchange = exchange.party("shopper", "buyer")
    reply = buyer_at_exchange.http.post(f"/v1/datasets/{split['dataset']}/quotes", json={"mode": "rows", "days": 30})
    assert reply.status_code == 409 and reply.json()["error"]["code"] == "foreign_dataset"
    assert nodes[0].http_url in reply.json()["error"]["message"]


def test_a_catalog_altered_in_transit_is_refused(space: tuple[list[SpaceNode], dict[str, Any]],
                                                 tmp_path: Path) -> None:
    nodes, _ = space
    real = httpx.get(f"{nodes[0].http_url}/v1/federation/catalog").json()
    node_info = httpx.get(f"{nodes[0].http_url}/v1/node").json()
    real["catalog"]["datasets"][0]["title"] = "Something else"

    class Forger(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = json.dumps(node_info if self.path == "/v1/node" else real).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Forger)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    follower: Harness = start_node(tmp_path / "follower", node_name="follower")
    try:
        added = follower.http.post("/v1/peers", headers=follower.operator.headers,
                                   json={"http_url": f"http://127.0.0.1:{server.server_address[1]}",
                                         "public_key": node_info["public_key"]})
        assert added.status_code == 201, added.text
        reply = follower.http.post("/v1/peers/sync", headers=follower.operator.headers)
        assert reply.status_code == 403 and reply.json()["error"]["code"] == "catalog_unsigned"
        assert follower.http.get("/v1/listings", headers=follower.operator.headers).json() == []
    finally:
        follower.close()
        server.shutdown()
        server.server_close()


def test_dp_modes_refuse_a_partitioned_dataset(space: tuple[list[SpaceNode], dict[str, Any]]) -> None:
    nodes, split = space
    lic = split["provider"].http.post("/v1/licenses", json={"dataset": split["dataset"], "buyer": split["buyer"].id,
                                                            "mode": "aggregate", "epsilon": "1"})
    assert lic.status_code == 201, lic.text
    cmd = json.dumps({"license": lic.json()["id"], "dataset": split["dataset"], "epsilon": "0.1",
                      "aggregate": {"op": "count"}}).encode()
    with pytest.raises(fl.FlightError) as exc:
        fl.connect(nodes[0].flight_url).get_flight_info(fl.FlightDescriptor.for_command(cmd),
                                                        split["buyer"].flight_options)
    assert exc.value.extra_info == b"partitioned_dataset"


# -- revocation and failures (each on a space of its own: they stop nodes) ----------------------------------


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[tuple[Path, list[SpaceNode], dict[str, Any]]]:
    members = _start(tmp_path / "space")
    try:
        yield tmp_path / "space", members, _split_dataset(members, rows=20000)
    finally:
        _stop(tmp_path / "space", members)


def _host_stream(nodes: list[SpaceNode], split: dict[str, Any]) -> tuple[fl.FlightStreamReader, int]:
    remote = _info(nodes, split).endpoints[1]
    # Without BDP probing the flow-control window stays small: the host must keep producing (and re-checking).
    client = fl.connect(nodes[1].flight_url, generic_options=[("grpc.http2.bdp_probe", 0)])
    reader = client.do_get(remote.ticket, split["buyer"].flight_options)
    first = reader.read_chunk().data
    assert first.num_rows == 100
    return reader, first.num_rows


def _read_rest(reader: fl.FlightStreamReader) -> tuple[int, BaseException | None]:
    received = 0
    try:
        while True:
            received += reader.read_chunk().data.num_rows
    except StopIteration:
        return received, None
    except fl.FlightError as exc:
        return received, exc


def test_a_revocation_on_the_owner_stops_the_stream_on_the_other_node(
        fresh: tuple[Path, list[SpaceNode], dict[str, Any]]) -> None:
    _, nodes, split = fresh
    reader, received = _host_stream(nodes, split)
    revoked = split["provider"].http.post(f"/v1/licenses/{split['license']}/revoke", json={"reason": "test"})
    assert revoked.status_code == 200
    more, exc = _read_rest(reader)
    assert isinstance(exc, fl.FlightUnauthorizedError) and exc.extra_info == b"license_revoked", exc
    assert received + more < 10000
    with pytest.raises(fl.FlightError):  # and nothing is granted any more, on any node
        _info(nodes, split)


def test_a_host_going_down_mid_stream_fails_the_fetch_clearly(
        fresh: tuple[Path, list[SpaceNode], dict[str, Any]]) -> None:
    _, nodes, split = fresh
    info = _info(nodes, split)
    reader, received = _host_stream(nodes, split)
    assert nodes[1].pid is not None
    os.kill(nodes[1].pid, signal.SIGKILL)
    more, exc = _read_rest(reader)
    assert isinstance(exc, fl.FlightUnavailableError | fl.FlightInternalError), exc  # an error, not a short table
    assert received + more < 10000
    with ThreadPoolExecutor(2) as pool, pytest.raises(fl.FlightError):  # the parallel fetch fails as a whole
        list(pool.map(lambda e: _fetch(e, split["buyer"].flight_options), info.endpoints))


def test_an_owner_going_down_stops_its_partitions_elsewhere(
        fresh: tuple[Path, list[SpaceNode], dict[str, Any]]) -> None:
    _, nodes, split = fresh
    reader, _ = _host_stream(nodes, split)
    assert nodes[0].pid is not None
    os.kill(nodes[0].pid, signal.SIGKILL)
    _, exc = _read_rest(reader)
    assert isinstance(exc, fl.FlightUnavailableError) and exc.extra_info == b"owner_unreachable", exc


def test_the_space_cli_starts_reports_and_stops(tmp_path: Path) -> None:
    directory = tmp_path / "cli-space"
    up = dsnode("space", "up", "--dir", str(directory), "--nodes", "2")
    assert "node1" in up.stdout and "node2" in up.stdout
    members = load_space(directory)
    status = dsnode("space", "status", "--dir", str(directory)).stdout
    assert status.count("True") == 4  # both running and healthy
    down = dsnode("space", "down", "--dir", str(directory))
    assert "stopped 2 node(s), all cleanly" in down.stdout  # `dsnode serve` stops on SIGTERM
    for m in members:
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{m.http_url}/healthz", timeout=2)
    again = dsnode("space", "up", "--dir", str(directory), "--nodes", "2")  # the same nodes start again
    try:
        assert [m.name for m in load_space(directory)] == ["node1", "node2"] and "node2" in again.stdout
        assert httpx.get(f"{members[0].http_url}/healthz").status_code == 200
    finally:
        dsnode("space", "down", "--dir", str(directory))


def test_partition_statements_must_be_signed_by_the_host(space: tuple[list[SpaceNode], dict[str, Any]]) -> None:
    nodes, split = space
    statement = json.loads(json.dumps(split["statement"]))
    statement["statement"]["rows"] += 1
    reply = split["provider"].http.post(f"/v1/datasets/{split['dataset']}/partitions", json=statement)
    assert reply.status_code == 403 and reply.json()["error"]["code"] == "statement_unsigned"
    statement = json.loads(json.dumps(split["statement"]))
    statement["signature"] = base64.b64encode(b"\0" * 64).decode()
    reply = split["provider"].http.post(f"/v1/datasets/{split['dataset']}/partitions", json=statement)
    assert reply.status_code == 403
    again = split["provider"].http.post(f"/v1/datasets/{split['dataset']}/partitions", json=split["statement"])
    assert again.status_code == 409 and again.json()["error"]["code"] == "partition_exists"
