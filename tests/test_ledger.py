"""The node's ledger on SQLite and PostgreSQL: every state change leaves an entry, receipts and proofs verify
with nothing but the published key, and each attack on the stored log is caught and named."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.flight as fl
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text

from ledger import (
    Checkpoint,
    Entry,
    LedgerTampered,
    NoteSigner,
    NoteVerifier,
    ProofError,
    Receipt,
    ReceiptError,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
    verify_receipt,
)
from node.manifest import LicenseRequest
from tests.conftest import Harness, rewrite_history, start_node

ROOT = Path(__file__).resolve().parent.parent


def _command(**kw: Any) -> bytes:
    return json.dumps(kw).encode()


def _verifier(h: Harness) -> NoteVerifier:
    return NoteVerifier.from_key(h.http.get("/v1/node").json()["ledger"]["verifier_key"])


def _entries(h: Harness, **params: Any) -> list[dict[str, Any]]:
    resp = h.http.get("/v1/ledger/entries", headers=h.operator.headers, params={"limit": 1000, **params})
    assert resp.status_code == 200, resp.text
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


def _activity(h: Harness, people: pa.Table) -> dict[str, Any]:
    provider, buyer = h.party("prov", "provider"), h.party("buy", "buyer")
    ds = h.publish(provider, people.slice(0, 500), "ledgered")["id"]
    lic = h.grant(provider, ds, buyer, columns=["city", "age"], terms={"purpose": "研究", "fee_fen": 1200})
    ticket = _command(license=lic["id"], dataset=ds, columns=["city", "age"], limit=123)
    rows = h.flight().do_get(fl.Ticket(ticket), buyer.flight_options).read_all().num_rows
    resp = h.http.post(f"/v1/licenses/{lic['id']}/revoke", headers=provider.headers, json={"reason": "done"})
    assert resp.status_code == 200, resp.text
    return {"provider": provider, "buyer": buyer, "dataset": ds, "license": lic, "revoke": resp.json(),
            "ticket": ticket, "rows": rows}


def _sql(h: Harness, statement: str, **params: Any) -> None:
    """What someone with write access to the database can do behind the node's back."""
    with h.node.db.engine.begin() as conn:
        conn.execute(text(statement), params)


# ---- what gets recorded --------------------------------------------------------------------------------------
def test_every_state_change_leaves_an_entry(harness: Harness, people: pa.Table) -> None:
    h = harness
    act = _activity(h, people)
    provider, buyer = act["provider"], act["buyer"]
    assert h.node.service.revoke_tokens(h.node.service.authenticate(h.operator.token), buyer.id) == 1
    entries = _entries(h)
    assert [e["kind"] for e in entries] == [
        "participant.created", "participant.created", "participant.created", "dataset.published",
        "quality.graded", "contribution.recorded", "license.granted", "access", "license.revoked",
        "participant.tokens_revoked"]
    assert [e["seq"] for e in entries] == list(range(10))
    first, prov, buy, published, graded, contributed, granted, access, revoked, tokens = entries
    assert first["actor"] == "node" and first["payload"]["role"] == "operator"
    assert prov["actor"] == h.operator.id and prov["subject"] == provider.id
    assert published["actor"] == provider.id and published["payload"]["dataset"] == act["dataset"]
    assert published["payload"]["rows"] == 500
    assert graded["subject"] == act["dataset"] and graded["payload"]["grade"] in "ABCDE"
    assert contributed["payload"]["contributor"] == provider.id and contributed["payload"]["kind"] == "volume"
    lic = act["license"]
    assert granted["subject"] == lic["id"] and granted["payload"] == {
        "license": lic["id"], "dataset": act["dataset"], "buyer": buyer.id, "mode": "rows",
        "columns": ["city", "age"], "expires_at": None, "terms": {"purpose": "研究", "fee_fen": 1200},
        "epsilon": None}
    assert access["actor"] == buyer.id and access["payload"] == {
        "license": lic["id"], "dataset": act["dataset"], "query": hashlib.sha256(act["ticket"]).hexdigest(),
        "rows": act["rows"], "batches": 1, "outcome": "complete"}
    assert act["rows"] == 123
    assert revoked["actor"] == provider.id and revoked["payload"]["reason"] == "done"
    assert tokens["payload"] == {"participant": buyer.id, "tokens": 1}
    for e in entries[1:]:
        assert e["prev"] == entries[e["seq"] - 1]["hash"]
    by_subject = _entries(h, subject=lic["id"])
    assert [e["kind"] for e in by_subject] == ["license.granted", "access", "license.revoked"]
    assert [e["seq"] for e in _entries(h, kind="access")] == [access["seq"]]


@pytest.fixture
def small_batches(tmp_path: Path) -> Iterator[Harness]:
    h = start_node(tmp_path / "home", batch_rows=100)
    try:
        yield h
    finally:
        h.close()


def test_a_refused_stream_records_what_left_and_why(small_batches: Harness, people: pa.Table) -> None:
    h = small_batches
    provider, buyer = h.party("prov", "provider"), h.party("buy", "buyer")
    padded = people.append_column("pad", pa.array(["x" * 4000] * people.num_rows))  # outruns gRPC buffers
    ds = h.publish(provider, padded, "wide")["id"]
    lic = h.grant(provider, ds, buyer)["id"]
    reader = h.flight().do_get(fl.Ticket(_command(license=lic, dataset=ds)), buyer.flight_options)
    got = reader.read_chunk().data.num_rows
    h.node.service.revoke_license(h.node.service.authenticate(provider.token), lic, "stop")
    with pytest.raises(fl.FlightUnauthorizedError):
        while True:
            got += reader.read_chunk().data.num_rows
    for _ in range(100):  # the stream's last step (its access entry) runs on the server's thread
        access = _entries(h, kind="access")
        if access:
            break
        time.sleep(0.05)
    [entry] = access
    assert entry["payload"]["outcome"] == "license_revoked"
    assert 0 < entry["payload"]["rows"] < people.num_rows
    assert entry["payload"]["rows"] >= got


def test_a_failed_state_change_leaves_no_entry(harness: Harness, people: pa.Table) -> None:
    """A licence and its entry commit together or not at all: an entry that cannot be written (an integer
    JSON cannot carry exactly) rolls the licence, its policy links and its entry back together."""
    h = harness
    provider, buyer = h.party("prov", "provider"), h.party("buy", "buyer")
    ds = h.publish(provider, people.slice(0, 10), "small")["id"]
    before = h.node.ledger.size()
    bad = LicenseRequest(ds, buyer.id, terms={"fee": 2**60})
    with pytest.raises(ValueError):
        h.node.service.grant_license(h.node.service.authenticate(provider.token), bad)
    assert h.node.ledger.size() == before
    with h.node.db.reader() as session:
        assert session.execute(text("SELECT count(*) FROM licenses")).scalar() == 0
        assert session.execute(text("SELECT count(*) FROM casbin_rule WHERE v1 = 'holder'")).scalar() == 0
    assert h.http.get("/v1/licenses", headers=buyer.headers).json() == []
    resp = h.http.post("/v1/licenses", headers=provider.headers,
                       json={"dataset": ds, "buyer": buyer.id, "terms": {"fee": 2**60}})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_license"
    assert h.node.ledger.size() == before
    h.node.ledger.audit()


# ---- receipts and proofs, checked with nothing but the published key -----------------------------------------
def test_licence_receipts_verify_with_the_published_key(harness: Harness, people: pa.Table) -> None:
    h = harness
    act = _activity(h, people)
    verifier = _verifier(h)
    receipt = Receipt.from_json(act["license"]["receipt"])
    head = verify_receipt(receipt, verifier, h.node.ledger.origin)
    assert receipt.entry.kind == "license.granted" and receipt.entry.subject == act["license"]["id"]
    assert head.size == receipt.entry.seq + 1  # signed right after the grant committed
    revoked = Receipt.from_json(act["revoke"]["receipt"])
    assert verify_receipt(revoked, verifier).size > head.size and revoked.entry.kind == "license.revoked"
    later = h.http.get(f"/v1/licenses/{act['license']['id']}", headers=act["provider"].headers).json()["receipt"]
    assert verify_receipt(Receipt.from_json(later), verifier).size == h.node.ledger.size()

    forged = json.loads(json.dumps(act["license"]["receipt"]))
    forged["entry"]["payload"]["columns"] = ["city", "age", "resident_id"]
    with pytest.raises(ReceiptError, match="leaf hash"):
        Receipt.from_json(forged)
    forged["leaf_hash"] = Entry.from_json(forged["entry"]).hash.hex()
    with pytest.raises(ReceiptError, match="not in the signed tree"):
        verify_receipt(Receipt.from_json(forged), verifier)
    impostor = NoteSigner(h.node.ledger.origin, Ed25519PrivateKey.generate())
    cp = Checkpoint.from_text(verifier.open(receipt.checkpoint))
    with pytest.raises(ReceiptError, match="signed head"):
        verify_receipt(Receipt(receipt.entry, receipt.tree_size, receipt.inclusion, cp.sign(impostor)), verifier)


def test_proofs_served_over_http_verify(harness: Harness, people: pa.Table) -> None:
    h = harness
    verifier = _verifier(h)
    h.party("early", "buyer")
    saved = [Checkpoint.open(h.http.get("/v1/ledger/head").json()["checkpoint"], verifier)]
    _activity(h, people)
    head_json = h.http.get("/v1/ledger/head").json()
    head = Checkpoint.open(head_json["checkpoint"], verifier, head_json["origin"])
    assert (head.size, head.root.hex()) == (head_json["size"], head_json["root"])
    assert head.size == len(_entries(h))
    for entry in _entries(h):
        proof = h.http.get(f"/v1/ledger/entries/{entry['seq']}/proof").json()  # public: no token
        assert proof["tree_size"] == head.size and proof["checkpoint"] == head_json["checkpoint"]
        leaf = Entry.from_json({k: v for k, v in entry.items() if k != "hash"}).hash
        assert proof["leaf_hash"] == leaf.hex() == entry["hash"]
        verify_inclusion(entry["seq"], head.size, leaf, [bytes.fromhex(x) for x in proof["inclusion"]], head.root)
        at_size = h.http.get(f"/v1/ledger/entries/{entry['seq']}/proof", params={"size": entry["seq"] + 1}).json()
        assert at_size["checkpoint"] is None and at_size["tree_size"] == entry["seq"] + 1
    for old in saved:
        resp = h.http.get("/v1/ledger/consistency", params={"first": old.size}).json()
        assert resp["second"] == head.size
        verify_consistency(old.size, head.size, old.root, head.root, [bytes.fromhex(x) for x in resp["proof"]])


@pytest.mark.parametrize(("path", "params", "status", "code"), [
    ("/v1/ledger/entries/99/proof", {}, 404, "entry_not_found"),
    ("/v1/ledger/entries/0/proof", {"size": 99}, 400, "invalid_proof_request"),
    ("/v1/ledger/entries/-1/proof", {}, 400, "invalid_argument"),
    ("/v1/ledger/entries/x/proof", {}, 400, "invalid_argument"),
    ("/v1/ledger/entries/0/proof", {"size": 2**70}, 400, "invalid_argument"),
    ("/v1/ledger/consistency", {"first": 3, "second": 2}, 400, "invalid_proof_request"),
    ("/v1/ledger/consistency", {"first": 1, "second": 99}, 400, "invalid_proof_request"),
    ("/v1/ledger/consistency", {}, 400, "invalid_argument"),
])
def test_bad_proof_requests_get_clear_errors(sqlite_harness: Harness, path: str, params: dict[str, Any],
                                             status: int, code: str) -> None:
    sqlite_harness.party("someone", "buyer")
    resp = sqlite_harness.http.get(path, params=params)
    assert resp.status_code == status and resp.json()["error"]["code"] == code, resp.text


def test_entries_are_for_operators_and_exchanges(sqlite_harness: Harness) -> None:
    h = sqlite_harness
    buyer, exchange = h.party("buy", "buyer"), h.party("xchg", "exchange")
    assert h.http.get("/v1/ledger/entries").status_code == 401
    refused = h.http.get("/v1/ledger/entries", headers=buyer.headers)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"
    assert h.http.get("/v1/ledger/entries/0", headers=buyer.headers).status_code == 403
    assert len(h.http.get("/v1/ledger/entries", headers=exchange.headers).json()["items"]) == 3
    page = h.http.get("/v1/ledger/entries", headers=h.operator.headers, params={"limit": 2}).json()
    assert [e["seq"] for e in page["items"]] == [0, 1] and page["next"] == 2
    assert h.http.get("/v1/ledger/entries/7", headers=h.operator.headers).json()["error"]["code"] == \
        "entry_not_found"


# ---- attacks on the stored log -------------------------------------------------------------------------------
@pytest.fixture
def recorded(harness: Harness, people: pa.Table) -> tuple[Harness, dict[str, Any]]:
    act = _activity(harness, people)
    harness.node.ledger.checkpoint()
    report = harness.node.ledger.audit()
    assert report.size == len(_entries(harness)) and report.checkpoints == 2
    return harness, act


def _tampered(h: Harness) -> LedgerTampered:
    with pytest.raises(LedgerTampered) as info:
        h.node.ledger.audit()
    return info.value


def test_editing_one_payload_byte_is_caught(recorded: tuple[Harness, dict[str, Any]]) -> None:
    h, act = recorded
    seq = h.node.ledger.find(act["license"]["id"], "license.granted")
    assert seq is not None
    with h.node.db.reader() as session:
        stored: bytes = session.execute(text("SELECT body FROM ledger_entries WHERE seq = :s"),
                                        {"s": seq}).scalar_one()
    edited = stored.replace(b'"age"', b'"agf"', 1)  # one byte: widen the licence on paper
    assert len(edited) == len(stored) and edited != stored
    _sql(h, "UPDATE ledger_entries SET body = :b WHERE seq = :s", b=edited, s=seq)
    exc = _tampered(h)
    assert exc.seq == seq and "does not match its stored hash" in str(exc)


def _access_seq(h: Harness, act: dict[str, Any]) -> int:
    seq = h.node.ledger.find(act["license"]["id"], "access")
    assert seq is not None
    return seq


def test_editing_an_entry_and_its_hash_breaks_the_chain(recorded: tuple[Harness, dict[str, Any]]) -> None:
    h, act = recorded
    a = _access_seq(h, act)
    with h.node.db.reader() as session:
        stored = session.execute(text("SELECT body FROM ledger_entries WHERE seq = :s"), {"s": a}).scalar_one()
    edited = json.loads(stored)
    edited["payload"]["rows"] = 1  # claim fewer rows left
    body = Entry.from_json(edited).body()
    _sql(h, "UPDATE ledger_entries SET body = :b, entry_hash = :eh WHERE seq = :s", b=body, eh=leaf_hash(body),
         s=a)
    exc = _tampered(h)
    assert exc.seq is not None and exc.seq in (a, a + 1)
    assert "chain" in str(exc) or "Merkle" in str(exc)


def test_deleting_an_entry_is_caught(recorded: tuple[Harness, dict[str, Any]]) -> None:
    h, act = recorded
    a = _access_seq(h, act)
    _sql(h, "DELETE FROM ledger_entries WHERE seq = :s", s=a)
    exc = _tampered(h)
    assert exc.seq == a and "missing" in str(exc)


def test_reordering_entries_is_caught(recorded: tuple[Harness, dict[str, Any]]) -> None:
    h, act = recorded
    a = _access_seq(h, act)
    _sql(h, "UPDATE ledger_entries SET seq = 1000 WHERE seq = :s", s=a)
    _sql(h, "UPDATE ledger_entries SET seq = :s WHERE seq = :n", s=a, n=a + 1)
    _sql(h, "UPDATE ledger_entries SET seq = :n WHERE seq = 1000", n=a + 1)
    exc = _tampered(h)
    assert exc.seq == a and f"says seq {a + 1}" in str(exc)


def test_heads_resigned_with_another_key_are_refused(recorded: tuple[Harness, dict[str, Any]]) -> None:
    h, _ = recorded
    thief = NoteSigner(h.node.ledger.origin, Ed25519PrivateKey.generate())
    with h.node.db.reader() as session:
        size, root = session.execute(text("SELECT size, root FROM ledger_checkpoints ORDER BY size")).first()
    _sql(h, "UPDATE ledger_checkpoints SET note = :n WHERE size = :s",
         n=Checkpoint(h.node.ledger.origin, size, bytes(root)).sign(thief), s=size)
    exc = _tampered(h)
    assert exc.checkpoint == size and "does not verify" in str(exc)


def test_dropping_the_tail_is_caught_by_the_heads_signed_over_it(recorded: tuple[Harness, dict[str, Any]]) -> None:
    h, _ = recorded
    size = h.node.ledger.size()
    _sql(h, "DELETE FROM ledger_entries WHERE seq >= :s", s=size - 1)
    exc = _tampered(h)
    assert exc.checkpoint == size and "history was truncated" in str(exc)


def test_a_tampered_state_row_is_caught_before_it_forks_the_log(recorded: tuple[Harness, dict[str, Any]]) -> None:
    h, _ = recorded
    _sql(h, "UPDATE ledger_state SET size = 6 WHERE id = 1")
    exc = _tampered(h)
    assert str(exc).startswith("tree state:")


def test_truncated_and_regrown_history_fails_against_an_earlier_head(
        recorded: tuple[Harness, dict[str, Any]], tmp_path: Path) -> None:
    h, act = recorded
    verifier = _verifier(h)
    kept = h.http.get("/v1/ledger/head").json()["checkpoint"]  # an auditor keeps this
    old = Checkpoint.open(kept, verifier)
    h.node.ledger.record("access", act["buyer"].id, act["license"]["id"], {
        "license": act["license"]["id"], "dataset": act["dataset"], "query": "0" * 64, "rows": 1, "batches": 1,
        "outcome": "complete"})
    honest = h.http.get("/v1/ledger/consistency", params={"first": old.size}).json()
    new = Checkpoint.open(honest["checkpoint"], verifier)
    verify_consistency(old.size, new.size, old.root, new.root, [bytes.fromhex(x) for x in honest["proof"]])

    granted = h.node.ledger.find(act["license"]["id"], "license.granted")
    assert granted is not None
    # Erase the grant and everything after it, and grow a different history, signed with the node's own key.
    rewrite_history(h.node, granted, regrow=8)
    h.node.ledger.audit()  # the rewritten store is self-consistent: only an earlier head can expose it

    resp = h.http.get("/v1/ledger/consistency", params={"first": old.size}).json()
    rewritten = Checkpoint.open(resp["checkpoint"], verifier)
    assert rewritten.size > old.size
    with pytest.raises(ProofError, match="history was rewritten|new root"):
        verify_consistency(old.size, rewritten.size, old.root, rewritten.root,
                           [bytes.fromhex(x) for x in resp["proof"]])
    with pytest.raises(LedgerTampered, match=f"checkpoint at size {old.size}: its root differs"):
        h.node.ledger.audit(trusted=[kept])


# ---- concurrency and crashes ---------------------------------------------------------------------------------
_APPENDER = """
import sys
from node.db import Database
from node.keys import load_key
from node.ledger_store import SqlLedger
url, key, n, tag = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
db = Database(url)
ledger = SqlLedger(db, load_key(__import__("pathlib").Path(key)))
print("ready", flush=True)
sys.stdin.readline()
for i in range(n):
    ledger.record("participant.created", "node", f"p_{tag}{i}", {"participant": f"p_{tag}{i}", "name": tag,
                                                                  "role": "buyer"})
db.close()
"""


def _child(args: list[str], **kw: Any) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSNODE_")}
    return subprocess.Popen([sys.executable, "-c", *args], cwd=ROOT, env=env, text=True, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_concurrent_appenders_in_threads_and_processes_never_fork(harness: Harness) -> None:
    h = harness
    start = h.node.ledger.size()
    key = str(h.home / "node_key.pem")
    url = h.node.db.url
    procs = [_child([_APPENDER, url, key, "60", f"proc{i}x"]) for i in range(2)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready", p.stderr.read() if p.stderr else ""
    errors: list[BaseException] = []
    go = threading.Barrier(7)

    def worker(t: int) -> None:
        try:
            go.wait()
            for i in range(40):
                h.node.ledger.record("participant.created", "node", f"p_t{t}x{i}",
                                     {"participant": f"p_t{t}x{i}", "name": "t", "role": "buyer"})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    go.wait()
    for t in threads:
        t.join(120)
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert not errors
    total = start + 6 * 40 + 2 * 60
    report = h.node.ledger.audit()
    assert report.size == total
    with h.node.db.reader() as session:
        assert session.execute(text("SELECT count(*), min(seq), max(seq) FROM ledger_entries")).one() == \
            (total, 0, total - 1)
    subjects = [e.subject for e in h.node.ledger.page(start, 1000)]
    assert len(set(subjects)) == len(subjects) == total - start  # every append landed exactly once


_GRANTER = """
import sys
from node.manifest import LicenseRequest
from node.runtime import Node
from node.settings import Settings
home, url, token, dataset, buyer = sys.argv[1:6]
node = Node.open(Settings.load(home=home, database_url=url or None))
me = node.service.authenticate(token)
print("ready", flush=True)
while True:
    node.service.grant_license(me, LicenseRequest(dataset, buyer, terms={"purpose": "crash test"}))
"""


def test_kill_9_during_heavy_appends_leaves_a_verifiable_log(harness: Harness, people: pa.Table) -> None:
    h = harness
    provider, buyer = h.party("prov", "provider"), h.party("buy", "buyer")
    ds = h.publish(provider, people.slice(0, 10), "crash")["id"]
    url = "" if h.node.db.is_sqlite else h.node.db.url
    child = _child([_GRANTER, str(h.home), url, provider.token, ds, buyer.id])
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    start = h.node.ledger.size()
    deadline = time.monotonic() + 60
    while h.node.ledger.size() < start + 200 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)  # mid-transaction, most likely
    child.communicate(timeout=30)
    assert h.node.ledger.size() >= start + 200, "the child did not get going"

    report = h.node.ledger.audit()
    with h.node.db.reader() as session:
        licences = set(session.execute(text("SELECT id FROM licenses")).scalars())
        granted = set(session.execute(
            text("SELECT subject FROM ledger_entries WHERE kind = 'license.granted'")).scalars())
        rows = session.execute(text("SELECT count(*) FROM ledger_entries")).scalar_one()
    assert licences == granted  # no licence without its entry, no entry without its licence
    assert rows == report.size
    h.node.ledger.record("participant.tokens_revoked", "node", buyer.id, {"participant": buyer.id, "tokens": 0})
    assert h.node.ledger.audit().size == report.size + 1  # and the log keeps growing from where it was
