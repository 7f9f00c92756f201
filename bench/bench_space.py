"""Two-node parallel fetch vs one-node fetch of the same rows, through a real local data space.

``dsnode space up`` starts two nodes, each its own ``dsnode serve`` process on loopback. The same generated table
is published twice on node1:
- *whole*: every row stored on node1 (one endpoint);
- *split*: the first half on node1, the second half hosted by node2 (two endpoints, the second with a grant
  signed by node1).

A stock pyarrow client fetches *whole* with one stream and *split* with one stream per endpoint, in parallel
threads. Each figure is the median of ``--repeats`` fetches after a warm-up that builds each licence's release.
The ratio is aggregate throughput, split over whole. Client and both servers share this machine's cores, so the
ratio shows what the data plane leaves on the table, not what two machines would reach.

    python bench/bench_space.py --rows 4000000 --repeats 5
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.flight as fl
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_flight_rows import mixed_table, open_privacy  # noqa: E402

from node.space import SpaceNode, space_down, space_up  # noqa: E402

console = Console(width=150)


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _post(node: SpaceNode, token: str, path: str, **kw: object) -> dict[str, object]:
    reply = httpx.post(f"{node.http_url}{path}", headers={"authorization": f"Bearer {token}"}, timeout=600,
                       **kw)  # type: ignore[arg-type]
    if reply.status_code >= 300:
        raise RuntimeError(f"{path}: {reply.status_code} {reply.text}")
    body: dict[str, object] = reply.json()
    return body


def _fetch(endpoint: fl.FlightEndpoint, options: fl.FlightCallOptions) -> tuple[int, int]:
    uri = endpoint.locations[0].uri
    with fl.connect(uri.decode() if isinstance(uri, bytes) else uri) as client:
        reader = client.do_get(endpoint.ticket, options)
        rows = nbytes = 0
        for chunk in reader:
            rows += chunk.data.num_rows
            nbytes += chunk.data.nbytes
        return rows, nbytes


def timed_fetch(nodes: list[SpaceNode], command: dict[str, str], options: fl.FlightCallOptions
                ) -> tuple[float, int, int, int]:
    """(seconds, rows, bytes, endpoints) of get_flight_info on node1 plus every endpoint fetched in parallel."""
    start = time.perf_counter()
    with fl.connect(nodes[0].flight_url) as client:
        info = client.get_flight_info(fl.FlightDescriptor.for_command(json.dumps(command).encode()), options)
    with ThreadPoolExecutor(len(info.endpoints)) as pool:
        parts = list(pool.map(lambda e: _fetch(e, options), info.endpoints))
    return time.perf_counter() - start, sum(p[0] for p in parts), sum(p[1] for p in parts), len(info.endpoints)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    console.print(f"space benchmark: {os.cpu_count()} cores, {args.rows:,} rows, median of {args.repeats}")
    with tempfile.TemporaryDirectory(prefix="dsnode-bench-space-") as tmpdir:
        directory = Path(tmpdir) / "space"
        with console.status("starting a two-node space"):
            nodes = space_up(directory, 2, None, extra={"federation_refresh_seconds": 0.0})
        try:
            n1, n2 = nodes
            table = mixed_table(args.rows)
            half = args.rows // 2
            with console.status("publishing the whole table and the split one"):
                provider = _post(n1, n1.operator_token, "/v1/participants", json={"name": "p", "role": "provider"})
                buyer = _post(n1, n1.operator_token, "/v1/participants", json={"name": "b", "role": "buyer"})
                host = _post(n2, n2.operator_token, "/v1/participants", json={"name": "h", "role": "provider"})
                privacy = json.dumps({"name": "{}", "title": "t", "privacy": open_privacy(table)})
                whole = _post(n1, str(provider["token"]), "/v1/datasets", files={"file": ("w.parquet", _parquet(
                    table))}, data={"manifest": privacy.replace("{}", "whole")})
                split = _post(n1, str(provider["token"]), "/v1/datasets", files={"file": ("a.parquet", _parquet(
                    table.slice(0, half)))}, data={"manifest": privacy.replace("{}", "split")})
                statement = _post(n2, str(host["token"]), "/v1/partitions", files={"file": ("b.parquet", _parquet(
                    table.slice(half)))}, data={"owner": "node1", "dataset": str(split["id"])})
                _post(n1, str(provider["token"]), f"/v1/datasets/{split['id']}/partitions", json=statement)
                licences = {name: _post(n1, str(provider["token"]), "/v1/licenses", json={
                    "dataset": str(ds["id"]), "buyer": str(buyer["id"]), "mode": "rows"})["id"]
                    for name, ds in (("whole", whole), ("split", split))}
            options = fl.FlightCallOptions(headers=[(b"authorization", f"Bearer {buyer['token']}".encode())])
            results: dict[str, list[tuple[float, int, int, int]]] = {}
            for name, ds in (("whole", whole), ("split", split)):
                command = {"license": str(licences[name]), "dataset": str(ds["id"])}
                timed_fetch(nodes, command, options)  # warm-up: builds the releases
                results[name] = [timed_fetch(nodes, command, options) for _ in range(args.repeats)]
            table_out = Table("fetch", "endpoints", "rows", "median s", "rows/s", "GB/s")
            rate = {}
            for name, runs in results.items():
                seconds = statistics.median(r[0] for r in runs)
                rows, nbytes, endpoints = runs[0][1], runs[0][2], runs[0][3]
                rate[name] = nbytes / seconds
                table_out.add_row("one node, one stream" if name == "whole" else "two nodes, parallel",
                                  str(endpoints), f"{rows:,}", f"{seconds:.3f}", f"{rows / seconds:,.0f}",
                                  f"{nbytes / seconds / 1e9:.2f}")
            console.print(table_out)
            console.print(f"aggregate throughput, two nodes in parallel / one node: "
                          f"[bold]{rate['split'] / rate['whole']:.2f}×[/]")
        finally:
            space_down(directory)


if __name__ == "__main__":
    main()
