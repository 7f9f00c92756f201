"""What the chain costs: gas and latency per anchor, licence registration, revocation and settlement; the embedded
chain's restart cost (journal replay); entries covered per anchor at the default cadence.

1. **Operations** on the embedded EVM (eth-tester + py-evm, in process) and, when ``deploy/devchain`` is installed
   (``npm ci --prefix deploy/devchain``), on a Hardhat 2 JSON-RPC dev chain on loopback. Each row is the median and
   p90 of ``--repeats`` transactions, sent and mined (receipt awaited), signed locally by the node's client. The
   baseline in the same run is a plain 21,000-gas transfer through the same client: the ratio says what the
   contract adds over the cheapest possible transaction.
2. **Replay**: opening an embedded chain whose journal holds ``--journal`` transactions (what every new process,
   e.g. ``dsnode ledger verify --chain``, pays), per transaction and in total.
3. **Cadence**: a node with the default cadence (``anchor_every_entries`` 1000, ``anchor_every_seconds`` 600) and
   its chain worker on, while one thread appends ledger entries as fast as it can for ``--seconds``; entries
   covered per anchor, and append throughput with the worker on vs off (same run, same store).

    python bench/bench_chain.py --repeats 30 --journal 1000 --seconds 20
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import track
from rich.table import Table

from contracts.chain import Chain, EmbeddedChain, RpcChain, Sent
from contracts.wrappers import LedgerAnchor, LicenseRegistry, RevenueSplitter
from node.runtime import Node, init_home
from node.settings import Settings

console = Console(width=150)
DEVCHAIN = Path(__file__).resolve().parents[1] / "deploy" / "devchain"
HARDHAT_FUNDER = bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")


def _timed(fn: Callable[[], Sent]) -> tuple[float, int]:
    start = time.perf_counter()
    sent = fn()
    return (time.perf_counter() - start) * 1000, sent.gas_used


def operations(chain: Chain, repeats: int, label: str) -> list[tuple[str, int, float, float]]:
    """(operation, gas of the last run, median ms, p90 ms) for each operation."""
    anchor, _ = LedgerAnchor.deploy(chain, chain.account)
    registry, _ = LicenseRegistry.deploy(chain, chain.account)
    splitter, _ = RevenueSplitter.deploy(chain, chain.account)
    payees = [("0x" + secrets.token_hex(20)) for _ in range(32)]
    datasets = {n: secrets.token_bytes(32) for n in (1, 3, 32)}
    for n, ds in datasets.items():
        splitter.set_payees(ds, payees[:n], list(range(1, n + 1)))
    size = 0
    samples: dict[str, list[tuple[float, int]]] = {}

    def run(name: str, fn: Callable[[], Sent]) -> None:
        samples.setdefault(name, []).append(_timed(fn))

    for i in track(range(repeats), description=f"{label}: transactions", console=console, transient=True):
        size += 1000
        licence, buyer = secrets.token_bytes(32), payees[i % 32]
        run("transfer (baseline)", partial(chain.transfer, buyer, 1))
        run("anchor a signed head", partial(anchor.anchor, size, secrets.token_bytes(32)))
        run("register a licence", partial(registry.register, licence, datasets[1], buyer, 2_000_000_000))
        run("revoke a licence", partial(registry.revoke, licence))
        run("set payees (3)", partial(splitter.set_payees, datasets[3], payees[:3], [5, 3, 2]))
        for n, ds in datasets.items():
            run(f"pay a settlement, {n} payee{'s' if n > 1 else ''}", partial(splitter.pay, ds, 10**15 + 7))
    rows = []
    for name, pairs in samples.items():
        ms = sorted(p[0] for p in pairs)
        rows.append((name, pairs[-1][1], statistics.median(ms), ms[int(0.9 * (len(ms) - 1))]))
    return rows


@contextmanager
def hardhat() -> Iterator[str | None]:
    binary = DEVCHAIN / "node_modules" / ".bin" / "hardhat"
    if not binary.exists():
        yield None
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([str(binary), "node", "--hostname", "127.0.0.1", "--port", str(port)], cwd=DEVCHAIN,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId",
                                         "params": []}).json().get("result"):
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


def replay(n: int, tmp: Path) -> tuple[float, int]:
    journal = tmp / "replay.jsonl"
    chain = EmbeddedChain(journal, secrets.token_bytes(32))
    anchor, _ = LedgerAnchor.deploy(chain, chain.account)
    for size in track(range(1, n + 1), description="building a journal", console=console, transient=True):
        anchor.anchor(size, secrets.token_bytes(32))
    txs = len(chain.transactions)
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        EmbeddedChain(journal, secrets.token_bytes(32))
        runs.append(time.perf_counter() - start)
    return statistics.median(runs), txs


def cadence(seconds: float, tmp: Path) -> dict[str, float]:
    """Appends at full speed with the worker off, then on; anchors made and entries per anchor."""
    settings = Settings.load(home=tmp / "cadence")
    init_home(settings)
    node = Node.open(settings)
    try:
        link = node.chain
        assert link is not None
        link.anchor()  # deploy and anchor the init entries first, so both phases start alike

        def append_for(duration: float) -> int:
            n = 0
            end = time.perf_counter() + duration
            while time.perf_counter() < end:
                node.ledger.record("access", "p_bench", "lic_bench", {
                    "license": "lic_bench", "dataset": "ds_bench", "query": "0" * 64, "rows": n, "batches": 1,
                    "outcome": "complete"})
                n += 1
            return n

        off = append_for(seconds / 2)
        start_size = link.deployment().anchor.latest()[0]
        node.start_chain(interval=1.0)
        on = append_for(seconds / 2)
        time.sleep(2)  # let the worker finish its last round
        anchors = [a for a in link.anchors() if a.size > start_size]
        covered = [b.size - a.size for a, b in zip([*link.anchors()][:-1], link.anchors()[1:], strict=False)
                   if b.size > start_size]
        return {"appends_off": off / (seconds / 2), "appends_on": on / (seconds / 2), "anchors": len(anchors),
                "per_anchor_median": statistics.median(covered) if covered else 0.0,
                "per_anchor_min": min(covered) if covered else 0.0, "gas_per_1000": 1000 * 51_100 / (
                    statistics.median(covered) if covered else 1)}
    finally:
        node.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--journal", type=int, default=1000, help="transactions in the replayed journal")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the cadence run")
    args = parser.parse_args()
    console.print(f"chain benchmark: {os.cpu_count()} cores, repeats {args.repeats}")
    with tempfile.TemporaryDirectory(prefix="dsnode-bench-chain-") as tmpdir:
        tmp = Path(tmpdir)
        results: dict[str, list[tuple[str, int, float, float]]] = {
            "embedded (eth-tester + py-evm)": operations(EmbeddedChain(tmp / "ops.jsonl", secrets.token_bytes(32)),
                                                         args.repeats, "embedded")}
        with hardhat() as url:
            if url is None:
                console.print("[yellow]deploy/devchain not installed: JSON-RPC figures skipped "
                              "(npm ci --prefix deploy/devchain)")
            else:
                key = secrets.token_bytes(32)
                RpcChain(url, HARDHAT_FUNDER).transfer(RpcChain(url, key).account, 10**21)
                results["JSON-RPC (Hardhat 2 on loopback)"] = operations(RpcChain(url, key), args.repeats, "rpc")
        for label, rows in results.items():
            base = next(r[2] for r in rows if r[0].startswith("transfer"))
            table = Table("operation", "gas", "median ms", "p90 ms", "× transfer latency", title=label)
            for name, gas, med, p90 in rows:
                table.add_row(name, f"{gas:,}", f"{med:.1f}", f"{p90:.1f}", f"{med / base:.2f}")
            console.print(table)

        total, txs = replay(args.journal, tmp)
        console.print(f"replay: opening an embedded chain with {txs:,} journaled transactions takes {total:.2f} s "
                      f"(median of 3), {total / txs * 1000:.2f} ms per transaction")

        stats: dict[str, float] = {}
        thread = threading.Thread(target=lambda: stats.update(cadence(args.seconds, tmp)))
        thread.start()
        thread.join()
        console.print(
            f"cadence (defaults: 1000 entries or 600 s, worker every 1 s): {stats['anchors']:.0f} anchors while "
            f"appending {stats['appends_on']:,.0f} entries/s; entries per anchor median "
            f"{stats['per_anchor_median']:,.0f} (min {stats['per_anchor_min']:,.0f}), about "
            f"{stats['gas_per_1000']:,.0f} gas per 1,000 entries; appends with the worker on / off: "
            f"{stats['appends_on']:,.0f} / {stats['appends_off']:,.0f} per s = "
            f"{stats['appends_on'] / stats['appends_off']:.2f}")


if __name__ == "__main__":
    main()
