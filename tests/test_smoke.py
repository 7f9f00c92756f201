"""End-to-end happy path on both backends: publish, grant, query through a stock Flight client."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.flight as fl

from tests.conftest import Harness


def test_publish_grant_query(harness: Harness, people: pa.Table) -> None:
    provider = harness.party("prov", "provider")
    buyer = harness.party("buy", "buyer")
    ds = harness.publish(provider, people)
    lic = harness.grant(provider, ds["id"], buyer, columns=["city", "age", "income"])
    client = harness.flight()
    cmd = {"license": lic["id"], "dataset": ds["id"], "columns": ["city", "age"], "where": [["age", ">=", 40]]}
    info = client.get_flight_info(fl.FlightDescriptor.for_command(json.dumps(cmd)), buyer.flight_options)
    got = client.do_get(info.endpoints[0].ticket, buyer.flight_options).read_all()
    expected = people.filter(pa.compute.greater_equal(people["age"], 40)).select(["city", "age"])
    assert got.num_rows == expected.num_rows > 0
    assert got.sort_by("age").equals(expected.sort_by("age")) or sorted(got.to_pylist(), key=str) == sorted(
        expected.to_pylist(), key=str)
