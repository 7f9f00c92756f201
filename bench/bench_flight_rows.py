"""Governed ``rows`` do_get vs a raw pyarrow Flight server streaming the same table, measured in one run.

Two scenarios (``--scenario``):
- ``passthrough``: a mixed 7-column table published with an all-``keep`` release policy;
- ``release``: a 10-column table of personal records whose release policy transforms 3 columns (keyed
  pseudonyms of a customer id, masked mobiles, age bands) and enforces k = 5 over city, gender and age band.
  The first query builds the licence's release (reported apart as *cold*); later queries stream the verified,
  memory-mapped release (*warm*). The raw server streams the original table.

Both servers run in their own subprocess and the client (stock ``pyarrow.flight``) in this one, so each side
gets the same treatment:
- *raw*: a minimal ``FlightServerBase`` whose ``do_get`` returns ``RecordBatchStream`` of the table held in memory
  (no auth, no checks), re-chunked to the node's batch size;
- *governed*: ``dsnode serve`` on a node home where the table was published (stored as Parquet, served from the
  memory-mapped Arrow IPC copy), read with a bearer token under a ``rows`` licence covering every column
  (pass-through: no transform). Every batch is preceded by the licence re-check (DB read + authorize).

The client drains the stream without concatenating. Runs alternate raw / governed; medians are reported.

    python bench/bench_flight_rows.py                        # ~1 GB pass-through
    python bench/bench_flight_rows.py --scenario release     # ~1 GB, 3 of 10 columns transformed
    python bench/bench_flight_rows.py --gb 0.1               # quick
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.flight as fl
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from node.identity import Principal
from node.manifest import LicenseRequest, Manifest
from node.runtime import Node, init_home
from node.settings import Settings

console = Console(width=140)
BATCH_ROWS = 65_536

RAW_SERVER = """
import sys, pyarrow as pa, pyarrow.flight as fl, pyarrow.parquet as pq
table = pq.read_table(sys.argv[1])
batches = table.to_batches(max_chunksize=int(sys.argv[3]))
class Raw(fl.FlightServerBase):
    def do_get(self, context, ticket):
        return fl.RecordBatchStream(pa.RecordBatchReader.from_batches(table.schema, batches))
server = Raw(f"grpc://127.0.0.1:{sys.argv[2]}")
print("ready", flush=True)
server.serve()
"""


def mixed_table(rows: int, seed: int = 42) -> pa.Table:
    """A deterministic mixed table: ints, floats, timestamps, bools, a low- and a high-cardinality string."""
    rng = np.random.default_rng(seed)
    cities = pa.array(["北京", "上海", "广州", "深圳", "杭州", "成都", "武汉", "南京", "西安", "重庆"])
    notes = pa.array([f"order note {i:05d} " + "x" * int(rng.integers(10, 50)) for i in range(20_000)])
    return pa.table({
        "id": pa.array(np.arange(rows, dtype=np.int64)),
        "ts": pa.array(np.int64(1_700_000_000_000_000) + rng.integers(0, 10**13, rows), pa.timestamp("us")),
        "amount": pa.array(rng.lognormal(5, 1, rows)),
        "qty": pa.array(rng.integers(1, 100, rows, dtype=np.int32)),
        "flag": pa.array(rng.random(rows) < 0.3),
        "city": cities.take(pa.array(rng.integers(0, len(cities), rows))),
        "note": notes.take(pa.array(rng.integers(0, len(notes), rows))),
    })


def personal_table(rows: int, seed: int = 42) -> pa.Table:
    """10 columns: 2 direct identifiers (customer id, mobile), 3 quasi-identifiers (city, gender, age), 5 others."""
    rng = np.random.default_rng(seed)
    base = mixed_table(rows, seed)
    customers = rng.integers(0, max(rows // 3, 1), rows)  # returning customers: ids repeat
    return pa.table({
        "customer_id": pa.array(np.char.add("cust-", customers.astype("U10"))),
        "mobile": pa.array(np.char.add("1", rng.integers(3 * 10**9, 10**10 - 1, rows).astype("U10"))),
        "city": base["city"],
        "gender": pa.array(np.where(rng.random(rows) < 0.5, "男", "女")),
        "age": pa.array(rng.integers(18, 80, rows, dtype=np.int32)),
        "ts": base["ts"], "amount": base["amount"], "qty": base["qty"], "flag": base["flag"], "note": base["note"],
    })


def release_privacy(table: pa.Table) -> dict[str, object]:
    rules: list[dict[str, object]] = [
        {"column": "customer_id", "role": "direct_identifier", "transform": "pseudonymize"},
        {"column": "mobile", "role": "direct_identifier", "transform": "mask", "mask": {"keep_first": 0,
                                                                                        "keep_last": 4}},
        {"column": "city", "role": "quasi_identifier", "transform": "keep"},
        {"column": "gender", "role": "quasi_identifier", "transform": "keep"},
        {"column": "age", "role": "quasi_identifier", "transform": "generalize",
         "generalization": {"kind": "band", "width": 10}},
    ]
    named = {r["column"] for r in rules}
    rules += [{"column": c, "role": "attribute", "transform": "keep"} for c in table.column_names if c not in named]
    return {"k": 5, "policy": {"columns": rules}}


def open_privacy(table: pa.Table) -> dict[str, object]:
    return {"policy": {"columns": [{"column": c, "role": "attribute", "transform": "keep"}
                                   for c in table.column_names]}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_ready(proc: subprocess.Popen[str], port: int) -> None:
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError("server did not start")


def drain(client: fl.FlightClient, ticket: fl.Ticket, options: fl.FlightCallOptions) -> tuple[float, int, int]:
    """Seconds, rows and Arrow bytes of one full do_get, without concatenating the batches."""
    t0 = time.perf_counter()
    rows = nbytes = 0
    for chunk in client.do_get(ticket, options):
        rows += chunk.data.num_rows
        nbytes += chunk.data.nbytes
    return time.perf_counter() - t0, rows, nbytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=1.0, help="approximate in-memory size of the table")
    parser.add_argument("--repeat", type=int, default=5, help="measurements per server")
    parser.add_argument("--scenario", choices=["passthrough", "release"], default="passthrough")
    args = parser.parse_args()
    make = mixed_table if args.scenario == "passthrough" else personal_table
    privacy = open_privacy if args.scenario == "passthrough" else release_privacy

    with tempfile.TemporaryDirectory(prefix="dsnode-bench-rows-") as tmp:
        tmpdir = Path(tmp)
        with console.status("generating the table"):
            sample = make(100_000)
            rows = int(args.gb * 1e9 / (sample.nbytes / sample.num_rows))
            table = make(rows)
            parquet = tmpdir / "table.parquet"
            pq.write_table(table, parquet)
        console.print(f"table: {table.num_rows:,} rows, {table.nbytes / 1e9:.2f} GB in Arrow, "
                      f"{parquet.stat().st_size / 1e9:.2f} GB as Parquet")

        home = tmpdir / "home"
        settings = Settings.load(home=home, batch_rows=BATCH_ROWS)
        init_home(settings)
        with console.status("publishing through the node (Parquet + serving copy)"):
            node = Node.open(settings)
            try:
                svc = node.service
                provider = svc.create_participant(None, "provider", "provider").participant
                buyer = svc.create_participant(None, "buyer", "buyer")
                ds = svc.publish_dataset(Principal(provider.id, provider.name, "provider"), parquet, "parquet",
                                         Manifest(name="bench", title="bench",
                                                  extra={"privacy": privacy(table)}))
                lic = svc.grant_license(Principal(provider.id, provider.name, "provider"),
                                        LicenseRequest(dataset=ds.id, buyer=buyer.participant.id))
            finally:
                node.close()
        del table

        raw_port, node_port = _free_port(), _free_port()
        env = {**os.environ, "DSNODE_BATCH_ROWS": str(BATCH_ROWS)}
        raw = subprocess.Popen([sys.executable, "-c", RAW_SERVER, str(parquet), str(raw_port), str(BATCH_ROWS)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        governed = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "serve", "--home", str(home), "--http-port", "0",
             "--flight-port", str(node_port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        try:
            with console.status("starting both servers"):
                _wait_ready(raw, raw_port)
                _wait_ready(governed, node_port)
            raw_client = fl.connect(f"grpc://127.0.0.1:{raw_port}")
            node_client = fl.connect(f"grpc://127.0.0.1:{node_port}")
            bearer = fl.FlightCallOptions(headers=[(b"authorization", f"Bearer {buyer.token}".encode())])
            ticket = fl.Ticket(json.dumps({"license": lic.id, "dataset": ds.id}).encode())
            raw_times, node_times = [], []
            drain(raw_client, fl.Ticket(b"x"), fl.FlightCallOptions())  # warm page cache and both servers
            with console.status("first governed query (builds the licence's release)"):
                cold, cold_rows, _ = drain(node_client, ticket, bearer)
            for i in range(args.repeat):
                with console.status(f"round {i + 1}/{args.repeat}"):
                    t, raw_rows, raw_bytes = drain(raw_client, fl.Ticket(b"x"), fl.FlightCallOptions())
                    raw_times.append(t)
                    t, node_rows, node_bytes = drain(node_client, ticket, bearer)
                    node_times.append(t)
            if node_rows != cold_rows or (args.scenario == "passthrough" and node_rows != raw_rows):
                raise SystemExit(f"row counts differ: governed {node_rows} vs raw {raw_rows}")
        finally:
            for proc in (raw, governed):
                proc.terminate()
                proc.wait(30)

    raw_s, node_s = statistics.median(raw_times), statistics.median(node_times)
    out = Table(title=f"{args.scenario}: rows do_get, {raw_rows:,} rows / {raw_bytes / 1e9:.2f} GB, "
                      f"median of {args.repeat}")
    for col in ("server", "seconds", "GB/s", "M rows/s", "all runs (s)"):
        out.add_column(col, justify="right")
    out.add_row("raw pyarrow Flight (in memory)", f"{raw_s:.3f}", f"{raw_bytes / raw_s / 1e9:.2f}",
                f"{raw_rows / raw_s / 1e6:.1f}", " ".join(f"{t:.2f}" for t in raw_times))
    out.add_row("dsnode governed rows (warm)", f"{node_s:.3f}", f"{node_bytes / node_s / 1e9:.2f}",
                f"{node_rows / node_s / 1e6:.1f}", " ".join(f"{t:.2f}" for t in node_times))
    out.add_row("dsnode governed rows (cold: first query)", f"{cold:.3f}", "", f"{cold_rows / cold / 1e6:.1f}", "")
    console.print(out)
    # Throughput counts rows of the source per second: rows a release suppresses must not count as speed.
    target = "0.8" if args.scenario == "passthrough" else "0.5"
    console.print(f"ratio governed / raw throughput (source rows per second): [bold]{raw_s / node_s:.2f}[/]"
                  f" (target ≥ {target}); released rows {node_rows:,} of {raw_rows:,}")


if __name__ == "__main__":
    main()
