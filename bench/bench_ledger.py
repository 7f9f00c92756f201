"""Ledger at scale: durable append rate, full verification of a 1 M-entry log, and proof latency at 1 M.

Every figure comes from the real store (``node.ledger_store.SqlLedger`` on ``node.db.Database``, migrated schema)
with ``access`` entries shaped like the data plane's (actor ``p_…``, subject ``lic_…``, payload licence /
dataset / 64-hex query / rows / batches / outcome; ~400-byte canonical body).

1. *Durable appends/s*, one entry per committed transaction: ``SqlLedger.record`` (its own Core write
   transaction) and the services' path (``Database.transaction()`` ORM session + ``SqlLedger.append``), on SQLite
   with ``synchronous=NORMAL`` (survives a process crash; the node's default) and ``FULL`` (fsync per commit,
   survives power loss), and on PostgreSQL (``synchronous_commit=on``). *Group commit*: 100 appends per
   ``Database.writer()`` transaction. Baselines in the same run, same database file / engine, rounds alternated:
   a plain ``INSERT`` of a same-size row (seq, 32-byte hash, a body as long as the ledger's) into a scratch
   table, one per ``Database.writer()`` transaction through ``exec_driver_sql`` (and 100 per transaction for
   group commit), plus one with the ledger row's full shape (7 columns + its ``(subject, kind)`` index). The
   ratio ledger / plain is what the hash chain, the Merkle bookkeeping and the ``ledger_state`` row cost.
   (The ledger issues its statements on the raw DB-API cursor, ~6 µs cheaper each than ``exec_driver_sql``.)
   ``checkpoint()`` latency: a new signed head after each append (the log grew each time). Pure references
   (no DB): ``CompactRange.append`` and the whole in-memory part of an append (entry, RFC 8785 body, leaf hash,
   compact range load / append / dump).
2. Build a log of ``--entries`` (default 1,000,000) on SQLite (NORMAL): group commits of 10,000 appends, a signed
   head after each. ``--keep PATH`` keeps the file (and ``PATH.key``, its signing key) and reuses it next time.
3. ``SqlLedger.audit()`` over the whole log (wall clock): every body re-parsed and re-canonicalized, the chain,
   every stored Merkle node and every signed head re-verified.
4. Proof latency at that size, p50 / p99 over ``--samples`` random entries: ``inclusion(seq, size)``,
   ``verify_inclusion`` against the signed head's root, ``receipt(seq)`` and ``verify_receipt``,
   ``consistency(old, size)`` for a random ``old`` and ``verify_consistency``. Baseline: the same proofs from an
   in-memory dict of every Merkle node (no DB), so the ratio is the cost of the database lookups.
5. PostgreSQL: appends as in 1, then proof latency and audit on a ``--pg-entries`` log, in a fresh database
   ``dsnode_bench_<random>`` that the script creates and drops (skipped with a note if PostgreSQL is unreachable).

    python bench/bench_ledger.py                                     # 1 M entries, ~5 min
    python bench/bench_ledger.py --entries 20000 --pg-entries 20000  # quick
    python bench/bench_ledger.py --keep /tmp/ledger-1m.db            # reuse the 1 M log between runs
"""

from __future__ import annotations

import argparse
import gc
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy import Connection, make_url, select

from ledger import (
    GENESIS_PREV,
    CompactRange,
    Entry,
    NodeId,
    consistency_proof,
    format_time,
    inclusion_proof,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
    verify_receipt,
)
from node.db import Database
from node.ledger_store import SqlLedger
from node.models import LedgerEntry

console = Console(width=150)
TARGET_APPENDS = 5_000  # durable appends/s on SQLite
TARGET_AUDIT_S_PER_M = 60.0  # seconds to verify 1 M entries
TARGET_PROOF_S = 0.005  # proof latency, checked on p99
GROUP = 100  # appends per transaction, group commit
BUILD_BATCH = 10_000  # appends per transaction while building the SQLite log
# PostgreSQL appends slow down as one transaction re-updates the ledger_state row thousands of times (every
# version stays visible to the transaction until it commits): 1,000 per transaction builds fastest there.
PG_BUILD_BATCH = 1_000
POOL = 4096  # distinct access payloads, cycled


# ---- workload --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Access:
    actor: str
    subject: str
    payload: dict[str, Any]
    body: bytes  # a same-size body for the plain-INSERT baselines
    hash: bytes


def _hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


def access_pool(rng: random.Random, n: int = POOL) -> list[Access]:
    now = format_time(datetime.now(UTC))
    out = []
    for i in range(n):
        lic = "lic_" + _hex(rng, 16)
        payload = {"license": lic, "dataset": "ds_" + _hex(rng, 16), "query": _hex(rng, 64),
                   "rows": rng.randrange(1, 10_000_000), "batches": rng.randrange(1, 200), "outcome": "complete"}
        actor = "p_" + _hex(rng, 16)
        body = Entry(1_000_000 + i, now, "access", actor, lic, payload, GENESIS_PREV).body()
        out.append(Access(actor, lic, payload, body, leaf_hash(body)))
    return out


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(), console=console)


# ---- 1. appends ------------------------------------------------------------------------------------------------
MODES = ("plain", "plain_row", "record", "orm", "plain_group", "group")
MODE_LABELS = {
    "plain": "plain INSERT (seq, hash, body), 1 / txn",
    "plain_row": "plain INSERT, ledger row shape + index, 1 / txn",
    "record": "SqlLedger.record, 1 / txn",
    "orm": "ORM session + SqlLedger.append, 1 / txn",
    "plain_group": f"plain INSERT (seq, hash, body), {GROUP} / txn",
    "group": f"SqlLedger.append, {GROUP} / txn (group commit)",
}
BASELINE = {"record": "plain", "orm": "plain", "group": "plain_group"}

_DDL = {
    "sqlite": ("CREATE TABLE bench_plain (seq INTEGER PRIMARY KEY, h BLOB NOT NULL, body BLOB NOT NULL)",
               "CREATE TABLE bench_row (seq INTEGER PRIMARY KEY, entry_hash BLOB NOT NULL, body BLOB NOT NULL, "
               "kind VARCHAR(64) NOT NULL, actor VARCHAR(64) NOT NULL, subject VARCHAR(64) NOT NULL, "
               "nodes BLOB NOT NULL)"),
    "postgresql": ("CREATE TABLE bench_plain (seq BIGINT PRIMARY KEY, h BYTEA NOT NULL, body BYTEA NOT NULL)",
                   "CREATE TABLE bench_row (seq BIGINT PRIMARY KEY, entry_hash BYTEA NOT NULL, body BYTEA NOT NULL,"
                   " kind VARCHAR(64) NOT NULL, actor VARCHAR(64) NOT NULL, subject VARCHAR(64) NOT NULL, "
                   "nodes BYTEA NOT NULL)"),
}
_INSERT = {
    "sqlite": ("INSERT INTO bench_plain (seq, h, body) VALUES (:seq, :h, :body)",
               "INSERT INTO bench_row (seq, entry_hash, body, kind, actor, subject, nodes) "
               "VALUES (:seq, :h, :body, :kind, :actor, :subject, :nodes)"),
    "postgresql": ("INSERT INTO bench_plain (seq, h, body) VALUES (%(seq)s, %(h)s, %(body)s)",
                   "INSERT INTO bench_row (seq, entry_hash, body, kind, actor, subject, nodes) "
                   "VALUES (%(seq)s, %(h)s, %(body)s, %(kind)s, %(actor)s, %(subject)s, %(nodes)s)"),
}


@dataclass
class AppendResult:
    backend: str
    rates: dict[str, list[float]] = field(default_factory=dict)
    checkpoint: list[float] = field(default_factory=list)

    def rate(self, mode: str) -> float:
        return statistics.median(self.rates[mode])


def measure_appends(db: Database, backend: str, pool: list[Access], appends: int, repeats: int,
                    checkpoints: int) -> AppendResult:
    led = SqlLedger(db, Ed25519PrivateKey.generate())
    dialect = db.engine.dialect.name
    with db.writer() as conn:
        for ddl in _DDL[dialect]:
            conn.exec_driver_sql(ddl)
        conn.exec_driver_sql("CREATE INDEX ix_bench_row_subject ON bench_row (subject, kind)")
    ins_plain, ins_row = _INSERT[dialect]
    counter = {"plain": 0, "plain_row": 0, "ledger": 0}

    def plain_row(conn: Connection, table: str) -> None:
        k = counter[table]
        counter[table] = k + 1
        a = pool[k % POOL]
        if table == "plain":
            conn.exec_driver_sql(ins_plain, {"seq": k, "h": a.hash, "body": a.body})
        else:
            conn.exec_driver_sql(ins_row, {"seq": k, "h": a.hash, "body": a.body, "kind": "access",
                                           "actor": a.actor, "subject": a.subject, "nodes": a.hash})

    def next_access() -> Access:
        k = counter["ledger"]
        counter["ledger"] = k + 1
        return pool[k % POOL]

    def run(mode: str, n: int) -> float:
        t0 = time.perf_counter()
        if mode in ("plain", "plain_row"):
            for _ in range(n):
                with db.writer() as conn:
                    plain_row(conn, mode)
        elif mode == "record":
            for _ in range(n):
                a = next_access()
                led.record("access", a.actor, a.subject, a.payload)
        elif mode == "orm":
            for _ in range(n):
                a = next_access()
                with db.transaction() as session:
                    led.append(session, "access", a.actor, a.subject, a.payload)
        elif mode == "plain_group":
            for _ in range(n // GROUP):
                with db.writer() as conn:
                    for _ in range(GROUP):
                        plain_row(conn, "plain")
        else:
            for _ in range(n // GROUP):
                with db.writer() as conn:
                    for _ in range(GROUP):
                        a = next_access()
                        led.append(conn, "access", a.actor, a.subject, a.payload)
        return time.perf_counter() - t0

    for mode in MODES:  # warm-up: caches, prepared statements, pool connections
        run(mode, 2 * GROUP)
    result = AppendResult(backend, {mode: [] for mode in MODES})
    for r in range(repeats):
        order = MODES[r % len(MODES):] + MODES[:r % len(MODES)]
        with console.status(f"{backend}: appends, round {r + 1}/{repeats}"):
            for mode in order:
                n = appends - appends % GROUP if mode.endswith("group") else appends
                result.rates[mode].append(n / run(mode, n))
            for _ in range(checkpoints):
                a = next_access()
                led.record("access", a.actor, a.subject, a.payload)
                t0 = time.perf_counter()
                led.checkpoint()
                result.checkpoint.append(time.perf_counter() - t0)
    return result


def measure_pure(pool: list[Access], repeats: int) -> dict[str, float]:
    """Rates without any database: CompactRange.append, and everything SqlLedger.append computes."""
    leaves = [a.hash for a in pool]
    n = 200_000
    cr_rates = []
    for _ in range(repeats):
        cr = CompactRange()
        t0 = time.perf_counter()
        for i in range(n):
            cr.append(leaves[i % POOL])
        cr_rates.append(n / (time.perf_counter() - t0))
    m = 50_000
    work_rates = []
    for _ in range(repeats):
        size, frontier, prev = 0, b"", GENESIS_PREV
        t0 = time.perf_counter()
        for i in range(m):
            a = pool[i % POOL]
            entry = Entry(size, format_time(datetime.now(UTC)), "access", a.actor, a.subject, a.payload, prev)
            h = leaf_hash(entry.body())
            tree = CompactRange.from_bytes(size, frontier)
            b"".join(node for _, node in tree.append(h))
            size, frontier, prev = tree.size, tree.to_bytes(), h.hex()
        work_rates.append(m / (time.perf_counter() - t0))
    return {"compact_range": statistics.median(cr_rates), "append_work": statistics.median(work_rates)}


# ---- 2. build --------------------------------------------------------------------------------------------------
def build(db: Database, led: SqlLedger, pool: list[Access], entries: int, label: str, batch: int) -> float:
    """Grow the log to ``entries`` by group commits of ``batch``, a signed head after each; returns entries/s."""
    size = led.size()
    start, t0 = size, time.perf_counter()
    with _progress() as progress:
        task = progress.add_task(f"building {label}", total=entries, completed=size, rate="")
        while size < entries:
            k = min(batch, entries - size)
            with db.writer() as conn:
                for i in range(size, size + k):
                    a = pool[i % POOL]
                    led.append(conn, "access", a.actor, a.subject, a.payload)
            led.checkpoint()
            size += k
            rate = (size - start) / (time.perf_counter() - t0)
            progress.update(task, advance=k, rate=f"{rate:,.0f} entries/s")
    elapsed = time.perf_counter() - t0
    return (size - start) / elapsed if size > start else float("nan")


def audit(led: SqlLedger, entries: int, label: str) -> float:
    """Seconds for a full ``SqlLedger.audit()``."""
    gc.collect()
    with _progress() as progress:
        task = progress.add_task(f"auditing {label}", total=entries, rate="")
        t0 = time.perf_counter()

        def step(done: int) -> None:
            progress.update(task, completed=done, rate=f"{done / (time.perf_counter() - t0):,.0f} entries/s")

        report = led.audit(progress=step)
        elapsed = time.perf_counter() - t0
    if report.size != entries:
        raise SystemExit(f"audit saw {report.size} entries, expected {entries}")
    return elapsed


# ---- 4. proofs -------------------------------------------------------------------------------------------------
def memory_nodes(db: Database, size: int) -> dict[NodeId, bytes]:
    """Every Merkle node of the log (level 0 = entry hashes), read once from the store into a dict."""
    nodes: dict[NodeId, bytes] = {}
    with db.engine.connect() as conn:
        rows = conn.execution_options(yield_per=50_000).execute(
            select(LedgerEntry.seq, LedgerEntry.entry_hash, LedgerEntry.nodes)
            .where(LedgerEntry.seq < size).order_by(LedgerEntry.seq))
        for seq, entry_hash, completed in rows:
            nodes[(0, seq)] = bytes(entry_hash)
            for level in range(1, len(completed) // 32 + 1):
                nodes[(level, seq >> level)] = bytes(completed[(level - 1) * 32:level * 32])
    return nodes


def root_at(size: int, nodes: Mapping[NodeId, bytes]) -> bytes:
    """MTH of the first ``size`` leaves: fold the perfect subtrees of ``size``'s set bits, right to left."""
    cover, begin = [], 0
    for level in reversed(range(size.bit_length())):
        if size >> level & 1:
            cover.append((level, begin >> level))
            begin += 1 << level
    h = nodes[cover[-1]]
    for node in reversed(cover[:-1]):
        h = node_hash(nodes[node], h)
    return h


PROOF_OPS = ("inclusion", "inclusion_mem", "verify_inclusion", "receipt", "verify_receipt", "consistency",
             "consistency_mem", "verify_consistency")
PROOF_LABELS = {
    "inclusion": "(a) inclusion proof, SqlLedger.inclusion",
    "inclusion_mem": "(a) baseline: same proof from an in-memory dict",
    "verify_inclusion": "(b) verify_inclusion vs the signed root",
    "receipt": "(c) receipt, SqlLedger.receipt",
    "verify_receipt": "(c) verify_receipt (Ed25519 + inclusion)",
    "consistency": "(d) consistency proof, SqlLedger.consistency",
    "consistency_mem": "(d) baseline: same proof from an in-memory dict",
    "verify_consistency": "(d) verify_consistency",
}
PROOF_BASELINE = {"inclusion": "inclusion_mem", "consistency": "consistency_mem"}


def measure_proofs(db: Database, led: SqlLedger, samples: int, rng: random.Random,
                   label: str) -> dict[str, list[float]]:
    head = led.checkpoint()
    size, root = head.size, head.root
    with console.status(f"{label}: loading every Merkle node into memory (baseline)"):
        mem = memory_nodes(db, size)
    if root_at(size, mem) != root:
        raise SystemExit("the in-memory tree does not reproduce the signed root")

    def fetch(ids: Collection[NodeId]) -> dict[NodeId, bytes]:
        return {node: mem[node] for node in ids}

    times: dict[str, list[float]] = {op: [] for op in PROOF_OPS}
    clock = time.perf_counter
    warmup = min(200, samples)
    with _progress() as progress:
        task = progress.add_task(f"proofs at {size:,}", total=warmup + samples, rate="")
        for i in range(warmup + samples):
            seq, old = rng.randrange(size), rng.randrange(1, size)
            old_root = root_at(old, mem)
            t0 = clock()
            proof = led.inclusion(seq, size)
            t1 = clock()
            mem_proof = inclusion_proof(seq, size, fetch)
            t2 = clock()
            verify_inclusion(seq, size, mem[(0, seq)], proof, root)
            t3 = clock()
            receipt = led.receipt(seq)
            t4 = clock()
            verify_receipt(receipt, led.verifier, led.origin)
            t5 = clock()
            cproof = led.consistency(old, size)
            t6 = clock()
            mem_cproof = consistency_proof(old, size, fetch)
            t7 = clock()
            verify_consistency(old, size, old_root, root, cproof)
            t8 = clock()
            if proof != mem_proof or cproof != mem_cproof or receipt.tree_size != size:
                raise SystemExit(f"proofs from the store and from memory differ (seq {seq}, old {old})")
            if i >= warmup:
                for op, dt in zip(PROOF_OPS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5, t7 - t6, t8 - t7),
                                  strict=True):
                    times[op].append(dt)
            if i % 100 == 0:
                progress.update(task, completed=i + 1)
        progress.update(task, completed=warmup + samples)
    mem.clear()
    gc.collect()
    return times


# ---- backends --------------------------------------------------------------------------------------------------
@contextmanager
def sqlite_db(path: Path, synchronous: str) -> Iterator[Database]:
    db = Database(f"sqlite:///{path}", synchronous)
    try:
        db.migrate()
        yield db
    finally:
        db.close()


@contextmanager
def postgres_db(admin_url: str) -> Iterator[Database | None]:
    """A fresh database ``dsnode_bench_<random>``, dropped on exit; ``None`` if PostgreSQL is unreachable."""
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        console.print(f"[yellow]PostgreSQL unreachable at {admin_url} ({str(exc).strip()}): skipped[/]")
        yield None
        return
    name = f"dsnode_bench_{secrets.token_hex(6)}"
    db: Database | None = None
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
        url = make_url(admin_url).set(drivername="postgresql+psycopg", database=name)
        db = Database(url.render_as_string(hide_password=False))
        db.migrate()
        yield db
    finally:
        if db is not None:
            db.close()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def open_kept(path: Path, entries: int) -> tuple[Database, SqlLedger, bool]:
    """The kept log at ``path`` if it holds ``entries``; otherwise a new empty one there. Returns (db, ledger,
    reused)."""
    key_path = path.with_name(path.name + ".key")
    if path.exists():
        if not key_path.exists():
            raise SystemExit(f"{path} exists but has no {key_path.name}: not a log this bench built; refusing")
        key = Ed25519PrivateKey.from_private_bytes(key_path.read_bytes())
        db = Database(f"sqlite:///{path}", "NORMAL")
        led = SqlLedger(db, key)
        if led.size() == entries:
            return db, led, True
        console.print(f"{path} holds {led.size():,} entries, not {entries:,}: rebuilding")
        db.close()
        for suffix in ("", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
    key = Ed25519PrivateKey.generate()
    key_path.write_bytes(key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                           serialization.NoEncryption()))
    db = Database(f"sqlite:///{path}", "NORMAL")
    db.migrate()
    return db, SqlLedger(db, key), False


# ---- output ----------------------------------------------------------------------------------------------------
def append_table(results: list[AppendResult], appends: int, repeats: int) -> Table:
    table = Table(title=f"durable appends/s: median of {repeats} rounds × {appends:,} entries, rounds alternated; "
                        "ratio = ledger / plain baseline in the same database")
    for col in ("backend", "what", "entries/s", "all rounds", "ratio vs plain", "µs / entry"):
        table.add_column(col, justify="right")
    for res in results:
        for i, mode in enumerate(MODES):
            rate = res.rate(mode)
            ratio = f"{rate / res.rate(BASELINE[mode]):.2f}×" if mode in BASELINE else ""
            table.add_row(res.backend if i == 0 else "", MODE_LABELS[mode], f"{rate:,.0f}",
                          " ".join(f"{r / 1000:.1f}k" for r in res.rates[mode]), ratio, f"{1e6 / rate:,.0f}")
        p50, p99 = _percentiles(res.checkpoint)
        table.add_row("", "checkpoint() after an append: p50 / p99", f"{p50 * 1e3:.2f} / {p99 * 1e3:.2f} ms", "",
                      "", "", end_section=True)
    return table


def proof_table(times: dict[str, list[float]], size: int, backend: str) -> Table:
    n = len(times["inclusion"])
    table = Table(title=f"proof latency on {backend} at {size:,} entries, {n:,} random entries; "
                        "ratio = DB / in-memory")
    for col in ("what", "p50", "p99", "ratio (p50)"):
        table.add_column(col, justify="right")
    for op in PROOF_OPS:
        p50, p99 = _percentiles(times[op])
        ratio = ""
        if op in PROOF_BASELINE:
            ratio = f"{p50 / _percentiles(times[PROOF_BASELINE[op]])[0]:.1f}×"
        table.add_row(PROOF_LABELS[op], f"{p50 * 1e3:.3f} ms", f"{p99 * 1e3:.3f} ms", ratio)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000, help="size of the log to build, audit and prove")
    parser.add_argument("--keep", type=Path, help="keep the built SQLite log here (and PATH.key); reused when it "
                        "already holds --entries, rebuilt otherwise")
    parser.add_argument("--appends", type=int, default=2_000, help="entries per append measurement")
    parser.add_argument("--repeats", type=int, default=5, help="rounds per append measurement")
    parser.add_argument("--checkpoints", type=int, default=40, help="checkpoint() samples per round")
    parser.add_argument("--samples", type=int, default=2_000, help="random entries for proof latency")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="PostgreSQL admin URL (a scratch database is created and dropped next to it)")
    parser.add_argument("--no-pg", action="store_true", help="skip PostgreSQL")
    parser.add_argument("--pg-entries", type=int, default=100_000,
                        help="log size for proof latency and audit on PostgreSQL (0: skip)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.entries < 2 or args.appends < GROUP:
        parser.error(f"--entries must be at least 2 and --appends at least {GROUP}")
    if args.keep and args.keep.exists() and not args.keep.with_name(args.keep.name + ".key").exists():
        parser.error(f"{args.keep} exists but has no {args.keep.name}.key: not a log this bench built")
    rng = random.Random(args.seed)
    pool = access_pool(rng)
    console.print(f"access entry body: ~{statistics.mean(len(a.body) for a in pool):.0f} bytes (canonical JSON)")

    with console.status("pure references (no database)"):
        pure = measure_pure(pool, args.repeats)
    appends: list[AppendResult] = []
    pg_proofs: dict[str, list[float]] | None = None
    pg_audit_s, pg_build_rate, pg_size = 0.0, 0.0, 0
    pg: Database | None = None
    with tempfile.TemporaryDirectory(prefix="dsnode-bench-ledger-", dir="/tmp") as tmp:
        for sync in ("NORMAL", "FULL"):
            with sqlite_db(Path(tmp) / f"appends-{sync.lower()}.db", sync) as db:
                appends.append(measure_appends(db, f"SQLite {sync}", pool, args.appends, args.repeats,
                                               args.checkpoints))
        if not args.no_pg:
            with postgres_db(args.pg) as pg:
                if pg is not None:
                    appends.append(measure_appends(pg, "PostgreSQL", pool, args.appends, args.repeats,
                                                   args.checkpoints))
            if pg is not None and args.pg_entries > 1:
                with postgres_db(args.pg) as pg:
                    assert pg is not None
                    led = SqlLedger(pg, Ed25519PrivateKey.generate())
                    pg_size = args.pg_entries
                    pg_build_rate = build(pg, led, pool, pg_size, "PostgreSQL log", PG_BUILD_BATCH)
                    pg_audit_s = audit(led, pg_size, "PostgreSQL log")
                    pg_proofs = measure_proofs(pg, led, args.samples, rng, "PostgreSQL")
        console.print(append_table(appends, args.appends, args.repeats))

        path = args.keep or Path(tmp) / "log.db"
        db, led, reused = open_kept(path, args.entries)
        try:
            build_rate = float("nan") if reused else build(db, led, pool, args.entries, "SQLite log", BUILD_BATCH)
            db.checkpoint("TRUNCATE")
            file_mb = path.stat().st_size / 1e6
            audit_s = audit(led, args.entries, "SQLite log")
            proofs = measure_proofs(db, led, args.samples, rng, "SQLite")
        finally:
            db.close()

    size_label = f"{args.entries:,}"
    big = Table(title=f"log of {size_label} entries on SQLite (NORMAL)")
    for col in ("what", "figure"):
        big.add_column(col, justify="right")
    big.add_row("build (group commits of 10,000 + a signed head each)",
                "reused --keep file" if reused else f"{build_rate:,.0f} entries/s")
    big.add_row("database file", f"{file_mb:,.0f} MB ({file_mb * 1e6 / args.entries:,.0f} B / entry)")
    big.add_row("SqlLedger.audit(), wall clock", f"{audit_s:.1f} s = {args.entries / audit_s:,.0f} entries/s")
    console.print(big)
    console.print(proof_table(proofs, args.entries, "SQLite"))
    if pg_proofs is not None:
        console.print(f"PostgreSQL log of {pg_size:,} entries: built at {pg_build_rate:,.0f} entries/s "
                      f"(group commits of {PG_BUILD_BATCH:,}), audit {pg_audit_s:.1f} s = "
                      f"{pg_size / pg_audit_s:,.0f} entries/s")
        console.print(proof_table(pg_proofs, pg_size, "PostgreSQL"))

    summary = Table(title="summary")
    for col in ("figure", "value", "target", ""):
        summary.add_column(col, justify="right")

    def verdict(ok: bool) -> str:
        return "[green]PASS[/]" if ok else "[red]MISS[/]"

    summary.add_row("CompactRange.append (pure, in memory)", f"{pure['compact_range']:,.0f} /s", "", "")
    summary.add_row("append work without the DB (entry, body, hash, tree)", f"{pure['append_work']:,.0f} /s", "",
                    "", end_section=True)
    for res in appends:
        sqlite = res.backend.startswith("SQLite")
        for mode in ("record", "orm", "group"):
            rate = res.rate(mode)
            ratio = rate / res.rate(BASELINE[mode])
            summary.add_row(f"{res.backend}: {MODE_LABELS[mode]}",
                            f"{rate:,.0f} /s ({ratio:.2f}× plain)",
                            f"≥ {TARGET_APPENDS:,} /s" if sqlite else "",
                            verdict(rate >= TARGET_APPENDS) if sqlite else "")
        p50, p99 = _percentiles(res.checkpoint)
        summary.add_row(f"{res.backend}: checkpoint() p50 / p99", f"{p50 * 1e3:.2f} / {p99 * 1e3:.2f} ms", "", "",
                        end_section=True)
    audit_target = TARGET_AUDIT_S_PER_M * args.entries / 1e6
    summary.add_row(f"audit {size_label} entries (SQLite)", f"{audit_s:.1f} s ({args.entries / audit_s:,.0f} /s)",
                    f"≤ {audit_target:.1f} s (60 s / 1 M)", verdict(audit_s <= audit_target))
    if pg_proofs is not None:
        pg_target = TARGET_AUDIT_S_PER_M * pg_size / 1e6
        summary.add_row(f"audit {pg_size:,} entries (PostgreSQL)",
                        f"{pg_audit_s:.1f} s ({pg_size / pg_audit_s:,.0f} /s)", f"≤ {pg_target:.1f} s (60 s / 1 M)",
                        verdict(pg_audit_s <= pg_target))
    summary.add_section()
    for backend, size, times in (("SQLite", args.entries, proofs), ("PostgreSQL", pg_size, pg_proofs)):
        if times is None:
            continue
        for op in ("inclusion", "verify_inclusion", "receipt", "verify_receipt", "consistency",
                   "verify_consistency"):
            p50, p99 = _percentiles(times[op])
            summary.add_row(f"{backend} @ {size:,}: {PROOF_LABELS[op]}", f"{p50 * 1e3:.3f} / {p99 * 1e3:.3f} ms",
                            f"p99 ≤ {TARGET_PROOF_S * 1e3:.0f} ms", verdict(p99 <= TARGET_PROOF_S))
        summary.add_section()
    console.print(summary)
    console.print("Durable = committed before record()/the transaction returns: NORMAL survives a process crash, "
                  "FULL and PostgreSQL (synchronous_commit=on) also power loss. Proof figures are p50 / p99.")


if __name__ == "__main__":
    main()
