"""The node on its chain: the embedded EVM's journal, anchoring, ``verify --chain``, licence mirroring and
on-chain payouts — on the real in-process EVM (eth-tester + py-evm), SQLite and PostgreSQL.

Attacks: a history rewritten by an insider holding the node key (local audit passes, the chain exposes it), a
truncated log, an edited journal, a torn journal write, a crash between a payment and its cursor (no double pay),
an address that holds another contract, an unauthorized anchorer.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from sqlalchemy import text

from contracts.chain import ChainError, ChainReverted, EmbeddedChain, RpcChain
from contracts.wrappers import LedgerAnchor, LicenseRegistry, RevenueSplitter
from ledger import LedgerTampered
from node.anchoring import ANCHOR_KIND, ChainLink, dataset_key
from node.runtime import Node
from node.settings import Settings
from tests.conftest import Clock, Harness, Party, open_privacy, rewrite_history, start_node
from tests.test_cli import dsnode
from tests.test_trading import DOCUMENTED, _accept, _quote

KEY_A = bytes.fromhex("11" * 32)
KEY_B = bytes.fromhex("22" * 32)


def _roots(n: int) -> list[bytes]:
    return [bytes([i + 1]) * 32 for i in range(n)]


# -- the embedded chain and its journal ---------------------------------------------------------------------


def test_a_new_process_replays_the_journal_to_the_same_chain(tmp_path: Path) -> None:
    journal = tmp_path / "chain.jsonl"
    first = EmbeddedChain(journal, KEY_A)
    anchor, _ = LedgerAnchor.deploy(first, first.account)
    for size, root in enumerate(_roots(3), start=1):
        anchor.anchor(size, root)
    before = anchor.anchors()

    again = EmbeddedChain(journal, KEY_A)  # what `dsnode ledger verify --chain` does in a new process
    replayed = LedgerAnchor(again, anchor.address)
    assert replayed.anchors() == before  # same sizes, roots, tx hashes, blocks and block timestamps
    assert replayed.latest() == anchor.latest() and again.transactions == first.transactions


def test_two_writers_share_one_journal_without_nonce_conflicts(tmp_path: Path) -> None:
    """Two processes (or two nodes) on one journal: each catches up under the lock before it sends."""
    journal = tmp_path / "chain.jsonl"
    a, b = EmbeddedChain(journal, KEY_A), EmbeddedChain(journal, KEY_A)
    anchor_a, _ = LedgerAnchor.deploy(a, a.account)
    anchor_b = LedgerAnchor(b, anchor_a.address)
    for size in range(1, 7):
        (anchor_a if size % 2 else anchor_b).anchor(size, bytes([size]) * 32)
    other = EmbeddedChain(journal, KEY_B)  # a second node's account on the same chain
    registry, _ = LicenseRegistry.deploy(other, other.account)
    assert [x.size for x in anchor_a.anchors()] == list(range(1, 7)) == [x.size for x in anchor_b.anchors()]
    assert LicenseRegistry(a, registry.address).address == registry.address  # a sees b's deployment
    assert len(a.transactions) == len(b.transactions) == len(other.transactions)
    assert EmbeddedChain(journal, KEY_A).transactions == a.transactions


def test_reverts_carry_the_reason_and_leave_the_journal_unchanged(tmp_path: Path) -> None:
    journal = tmp_path / "chain.jsonl"
    chain = EmbeddedChain(journal, KEY_A)
    anchor, _ = LedgerAnchor.deploy(chain, chain.account)
    anchor.anchor(5, _roots(1)[0])
    stranger = EmbeddedChain(journal, KEY_B)
    LicenseRegistry.deploy(stranger, stranger.account)  # the stranger's account is funded and active
    size = journal.stat().st_size
    with pytest.raises(ChainReverted, match="LedgerAnchor: tree size must grow"):
        anchor.anchor(5, _roots(2)[1])
    with pytest.raises(ChainReverted, match="caller is not the anchorer"):
        LedgerAnchor(stranger, anchor.address).anchor(6, _roots(1)[0])
    assert journal.stat().st_size == size and anchor.latest()[0] == 5


def test_a_torn_last_line_is_ignored_and_cut_by_the_next_writer(tmp_path: Path) -> None:
    journal = tmp_path / "chain.jsonl"
    chain = EmbeddedChain(journal, KEY_A)
    anchor, _ = LedgerAnchor.deploy(chain, chain.account)
    anchor.anchor(1, _roots(1)[0])
    with journal.open("ab") as fh:
        fh.write(b'{"hash":"0x12","raw":"0x02f8')  # a writer killed mid-line
    reader = EmbeddedChain(journal, KEY_A)
    assert LedgerAnchor(reader, anchor.address).latest()[0] == 1
    LedgerAnchor(reader, anchor.address).anchor(2, _roots(2)[1])
    lines = journal.read_bytes().split(b"\n")
    assert lines[-1] == b"" and all(json.loads(line) for line in lines[:-1])
    assert LedgerAnchor(EmbeddedChain(journal, KEY_A), anchor.address).latest()[0] == 2


def test_an_edited_journal_does_not_replay(tmp_path: Path) -> None:
    journal = tmp_path / "chain.jsonl"
    chain = EmbeddedChain(journal, KEY_A)
    anchor, _ = LedgerAnchor.deploy(chain, chain.account)
    anchor.anchor(1, _roots(1)[0])
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    last = records[-1]
    raw = bytearray.fromhex(last["raw"][2:])
    raw[-40] ^= 1  # one bit of the signed anchor transaction: another root, or an invalid signature
    last["raw"] = "0x" + raw.hex()
    journal.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(ChainError, match="does not replay|did not accept"):
        EmbeddedChain(journal, KEY_A)


def test_attaching_to_an_address_that_holds_another_contract_fails(tmp_path: Path) -> None:
    chain = EmbeddedChain(tmp_path / "chain.jsonl", KEY_A)
    registry, _ = LicenseRegistry.deploy(chain, chain.account)
    with pytest.raises(ChainError, match="is not dsnode's LedgerAnchor"):
        LedgerAnchor(chain, registry.address)
    with pytest.raises(ChainError, match="is not dsnode's RevenueSplitter"):
        RevenueSplitter(chain, chain.account)  # an account, no code at all


# -- the node: anchoring and verify --chain ------------------------------------------------------------------


def _busy(h: Harness, people: pa.Table) -> tuple[Party, Party, dict[str, Any], dict[str, Any]]:
    provider, buyer = h.party("prov", "provider"), h.party("buyer", "buyer")
    ds = h.publish(provider, people.slice(0, 500), "people")
    lic = h.grant(provider, ds["id"], buyer, columns=["city", "age"])
    return provider, buyer, ds, lic


def _link(h: Harness) -> ChainLink:
    link = h.node.chain
    assert link is not None
    return link


def _verify(h: Harness) -> Any:
    link = _link(h)
    anchors = link.anchors()
    report = h.node.ledger.audit(anchored={a.size: a.root for a in anchors})
    return link.check(report, anchors)


def test_anchoring_records_the_transaction_and_verify_chain_passes(harness: Harness, people: pa.Table) -> None:
    h = harness
    _busy(h, people)
    link = _link(h)
    size = h.node.ledger.size()
    done = link.anchor()
    assert done is not None and done.size == size and done.gas_used > 0
    entry = h.node.ledger.entry(size)  # the anchor record is the next entry
    assert entry.kind == ANCHOR_KIND and entry.payload["tx"] == done.tx_hash
    assert entry.payload["root"] == h.node.ledger.audit().root.hex() or entry.payload["size"] == size
    assert link.anchor() is None  # only the anchor record is new: nothing to anchor
    on_chain = link.deployment().anchor.root_at(size)
    assert on_chain == done.root
    checked = _verify(h)
    assert (checked.anchors, checked.records, checked.licences) == (1, 1, 0)  # licences not mirrored yet

    public = h.http.get("/v1/chain").json()  # no token: anyone may look
    assert public["latest_anchor"]["size"] == size and public["contracts"]["LedgerAnchor"] == done.entry.payload[
        "contract"]


def test_a_history_rewritten_after_anchoring_fails_verify_chain(harness: Harness, people: pa.Table) -> None:
    h = harness
    _, _, _, lic = _busy(h, people)
    link = _link(h)
    anchored = link.anchor()
    assert anchored is not None
    granted = h.node.ledger.find(lic["id"], "license.granted")
    assert granted is not None
    # Erase the grant and what followed, and grow a longer, different history signed with the node's own key.
    rewrite_history(h.node, granted, regrow=anchored.size)
    h.node.ledger.checkpoint()
    h.node.ledger.audit()  # self-consistent: a local audit cannot tell

    anchors = link.anchors()
    with pytest.raises(LedgerTampered, match="history was rewritten after it was anchored") as exc:
        h.node.ledger.audit(anchored={a.size: a.root for a in anchors})
    assert exc.value.checkpoint == anchored.size
    report = h.node.ledger.audit()  # the consistency proofs alone catch it too
    with pytest.raises(LedgerTampered, match="not an extension of the root anchored"):
        link.check(report, anchors)
    with pytest.raises(ChainReverted, match="tree size must grow"):  # and the rewrite cannot be re-anchored
        link.deployment().anchor.anchor(anchored.size, report.root)


def test_a_log_truncated_below_an_anchor_fails_verify_chain(harness: Harness, people: pa.Table) -> None:
    h = harness
    _busy(h, people)
    link = _link(h)
    anchored = link.anchor()
    assert anchored is not None
    rewrite_history(h.node, anchored.size - 2)
    anchors = link.anchors()
    with pytest.raises(LedgerTampered, match="history was truncated"):
        h.node.ledger.audit(anchored={a.size: a.root for a in anchors})
    with pytest.raises(LedgerTampered, match="history was truncated"):
        link.check(h.node.ledger.audit(), anchors)


def test_the_cadence_anchors_every_n_entries_or_t_seconds(tmp_path: Path, people: pa.Table) -> None:
    clock = Clock()
    h = start_node(tmp_path / "home", clock=clock, anchor_every_entries=5, anchor_every_seconds=3600)
    try:
        link = _link(h)
        assert link.due()  # init and the operator: fresh entries, never anchored
        assert link.tick() is not None and not link.due()
        for i in range(4):
            h.party(f"p{i}", "buyer")
        assert not link.due()  # 4 fresh entries < 5
        h.party("p4", "buyer")
        assert link.due()
        first = link.tick()
        assert first is not None and not link.due()
        h.party("p5", "buyer")
        assert not link.due()
        clock.now = clock.now.fromtimestamp(link.deployment().anchor.latest()[2] + 3600, clock.now.tzinfo)
        assert link.due()  # one fresh entry, but an hour since the last anchor
    finally:
        h.close()


def test_the_background_worker_anchors_while_the_node_serves(tmp_path: Path) -> None:
    h = start_node(tmp_path / "home", anchor_every_entries=3, anchor_every_seconds=0)
    try:
        h.node.start_chain(interval=0.05)
        for i in range(7):
            h.party(f"p{i}", "buyer")
        deadline = time.monotonic() + 60  # a bound on waiting, not a performance assertion
        while time.monotonic() < deadline and _link(h).deployment().anchor.latest()[0] < 8:
            time.sleep(0.05)
        _link(h).stop()
        anchors = _link(h).anchors()
        assert anchors and anchors[-1].size >= 8  # 1 + operator + 7 participants, in one or more anchors
        assert all(b.size > a.size for a, b in zip(anchors, anchors[1:], strict=False))
        assert _verify(h).anchors == len(anchors)
    finally:
        h.close()


# -- mirroring licences and paying settlements ---------------------------------------------------------------


def _party(h: Harness, name: str, role: str, address: str | None = None) -> Party:
    resp = h.http.post("/v1/participants", headers=h.operator.headers,
                       json={"name": name, "role": role, **({"address": address} if address else {})})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    return Party(body["id"], name, role, body["token"])


def test_licences_are_mirrored_and_revocations_follow(harness: Harness, people: pa.Table) -> None:
    h = harness
    provider, buyer, ds, lic = _busy(h, people)
    other = h.grant(provider, ds["id"], buyer, columns=["city"], days=7)
    h.http.post(f"/v1/licenses/{other['id']}/revoke", headers=provider.headers, json={"reason": "test"})
    link = _link(h)
    assert link.mirror() == 3  # two grants, one revocation
    registry = link.deployment().registry
    grant_seq = h.node.ledger.find(lic["id"], "license.granted")
    assert grant_seq is not None
    with h.node.db.reader() as session:
        grant_hash = bytes(session.execute(text("SELECT entry_hash FROM ledger_entries WHERE seq = :s"),
                                           {"s": grant_seq}).scalar_one())
    on_chain = registry.license_of(grant_hash)
    assert on_chain is not None and on_chain.dataset == dataset_key(ds["id"]) and not on_chain.revoked
    assert on_chain.buyer == link.buyer_address(buyer.id)  # a pseudonym: the buyer gave no address
    assert on_chain.buyer.lower()[2:] not in buyer.id
    assert registry.is_valid(grant_hash)
    revoked_seq = h.node.ledger.find(other["id"], "license.granted")
    assert revoked_seq is not None
    assert sum(1 for e in h.node.ledger.page(kind="license.granted")) == 2
    assert _verify(h).licences == 2

    journal = h.node.settings.journal_path
    sent = len(journal.read_text().splitlines())
    with h.node.db.transaction() as session:  # a crash right after the transactions, before the cursor moved
        session.execute(text("DELETE FROM chain_state WHERE name = 'mirror_cursor'"))
    assert link.mirror() == 3 and len(journal.read_text().splitlines()) == sent  # nothing sent twice


def test_a_licence_changed_on_chain_out_of_band_fails_verify_chain(harness: Harness, people: pa.Table) -> None:
    h = harness
    _, _, _, lic = _busy(h, people)
    link = _link(h)
    link.mirror()
    seq = h.node.ledger.find(lic["id"], "license.granted")
    assert seq is not None
    with h.node.db.reader() as session:
        grant_hash = bytes(session.execute(text("SELECT entry_hash FROM ledger_entries WHERE seq = :s"),
                                           {"s": seq}).scalar_one())
    link.deployment().registry.revoke(grant_hash)  # the chain now says revoked; the ledger never did
    with pytest.raises(LedgerTampered, match="differs from the one in the LicenseRegistry"):
        _verify(h)


def test_settlements_are_paid_on_chain_exactly_once(harness: Harness, people: pa.Table) -> None:
    h = harness
    addr_a, addr_b = "0x" + "a1" * 20, "0x" + "b2" * 20
    provider, partner = _party(h, "prov", "provider", addr_a), _party(h, "partner", "provider", addr_b)
    buyer = h.party("buy", "buyer")
    privacy = {**open_privacy(people), "bounds": {"income": [0, 400_000], "age": [18, 80]}}
    ds = h.publish(provider, people, "joint", privacy=privacy,
                   contributors={"column": "channel", "members": {"app": provider.id, "web": partner.id}},
                   **DOCUMENTED)
    for days in (30, 91):
        assert _accept(h, buyer, _quote(h, buyer, ds["id"], days=days)).status_code == 201
    settlements = h.http.get(f"/v1/datasets/{ds['id']}/settlements", headers=provider.headers).json()
    link = _link(h)
    link.mirror()
    splitter = link.deployment().splitter
    rate = h.node.settings.chain_wei_per_fen
    owed = {p: sum(s["payouts"].get(p, 0) for s in settlements) * rate for p in (provider.id, partner.id)}
    assert splitter.owed(addr_a) == owed[provider.id] and splitter.owed(addr_b) == owed[partner.id]
    assert splitter.total_owed() == sum(s["price_fen"] for s in settlements) * rate  # exact, to the wei

    # A crash after the last payment and before its cursor moved: the payment is found on chain, not repeated.
    cursor = link.status()["mirror"]["next_entry"]
    last = max(e.seq for e in h.node.ledger.page(kind="settlement"))
    with h.node.db.transaction() as session:
        session.execute(text("UPDATE chain_state SET value = :v WHERE name = 'mirror_cursor'"),
                        {"v": json.dumps({"next": last, "block": 0})})
    assert link.mirror() >= 1 and link.status()["mirror"]["next_entry"] == cursor
    assert splitter.total_owed() == sum(s["price_fen"] for s in settlements) * rate


def test_a_settlement_with_a_payee_without_address_is_not_paid(sqlite_harness: Harness, people: pa.Table) -> None:
    h = sqlite_harness
    provider, buyer = h.party("prov", "provider"), h.party("buy", "buyer")
    ds = h.publish(provider, people, "people", **DOCUMENTED)
    assert _accept(h, buyer, _quote(h, buyer, ds["id"])).status_code == 201
    link = _link(h)
    link.mirror()
    unpaid = link.status()["mirror"]["unpaid_settlements"]
    assert list(unpaid.values()) == [f"payees without an address: {provider.id}"]
    assert link.deployment().splitter.total_owed() == 0


@pytest.mark.parametrize("address", ["0x123", "0x" + "00" * 20, "a1" * 20, "0x" + "zz" * 20,
                                     "0xA1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"])
def test_bad_addresses_are_refused_and_nothing_is_created(sqlite_harness: Harness, address: str) -> None:
    h = sqlite_harness
    size = h.node.ledger.size()
    resp = h.http.post("/v1/participants", headers=h.operator.headers,
                       json={"name": "payee", "role": "provider", "address": address})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_address"
    assert h.node.ledger.size() == size
    assert all(p["name"] != "payee" for p in h.http.get("/v1/participants", headers=h.operator.headers).json())


def test_a_node_with_the_chain_off_has_no_chain(tmp_path: Path) -> None:
    h = start_node(tmp_path / "home", chain="off")
    try:
        assert h.node.chain is None
        resp = h.http.get("/v1/chain")
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "chain_off"
    finally:
        h.close()


# -- the CLI, in new processes --------------------------------------------------------------------------------


def test_verify_chain_in_a_new_process_sees_the_demo_anchors_and_catches_a_rewrite(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    out = dsnode("demo", "--home", str(home), "--rows", "500").stdout
    assert "11. chain" in out and "anchored the signed head" in out
    env = {"DSNODE_HOME": str(home)}
    ok = dsnode("ledger", "verify", "--chain", env=env).stdout
    assert "chain consistent: 1 anchors" in ok and "1 anchor records and 3 mirrored licences" in ok.replace("\n", " ")

    again = dsnode("ledger", "anchor", env=env).stdout
    assert "already anchored" in again
    with sqlite3.connect(home / "dsnode.db") as db:
        size = db.execute("SELECT size FROM ledger_state").fetchone()[0]

    # An insider with the node key rewrites the last entries and re-signs: plain verify passes, --chain fails.
    node = Node.open(Settings.load(home=home))
    try:
        rewrite_history(node, size - 3, regrow=6)
    finally:
        node.close()
    assert "ledger intact" in dsnode("ledger", "verify", env=env).stdout
    bad = dsnode("ledger", "verify", "--chain", env=env, check=False)
    assert bad.returncode == 3 and re.search(r"checkpoint at size \d+: the root anchored on chain", bad.stderr)


def test_two_processes_anchor_one_home_without_conflict(tmp_path: Path) -> None:
    """The serving node's worker and an operator's `dsnode ledger anchor` race on one home and one journal."""
    h = start_node(tmp_path / "home", anchor_every_entries=1, anchor_every_seconds=0)
    try:
        h.node.start_chain(interval=0.02)
        stop = threading.Event()

        def grow() -> None:
            i = 0
            while not stop.is_set():
                h.party(f"x{i}", "buyer")
                i += 1
                time.sleep(0.01)

        grower = threading.Thread(target=grow)
        grower.start()
        try:
            for _ in range(3):
                dsnode("ledger", "anchor", env={"DSNODE_HOME": str(h.home)})
        finally:
            stop.set()
            grower.join()
        _link(h).stop()  # no anchor between reading them and verifying
        anchors = _link(h).anchors()
        assert len(anchors) >= 2 and all(b.size > a.size for a, b in zip(anchors, anchors[1:], strict=False))
        assert _verify(h).anchors == len(anchors)
    finally:
        h.close()


# -- JSON-RPC: a real dev chain (Hardhat 2, from the npm registry) on loopback ----------------------------------

DEVCHAIN = Path(__file__).resolve().parents[1] / "deploy" / "devchain"
HARDHAT_FUNDER = bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")  # its account 0


@pytest.fixture(scope="session")
def devchain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``hardhat node`` on a free loopback port for the session; skipped (failed in CI) when not installed."""
    binary = DEVCHAIN / "node_modules" / ".bin" / "hardhat"
    if not binary.exists():
        if os.environ.get("DSNODE_TEST_REQUIRE_DEVCHAIN"):
            pytest.fail("the JSON-RPC dev chain is required but not installed: npm ci --prefix deploy/devchain")
        pytest.skip("no JSON-RPC dev chain installed (npm ci --prefix deploy/devchain)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = (tmp_path_factory.mktemp("devchain") / "hardhat.log").open("wb")
    proc = subprocess.Popen([str(binary), "node", "--hostname", "127.0.0.1", "--port", str(port)], cwd=DEVCHAIN,
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                reply = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
                if reply.json().get("result") == "0x539":
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, "hardhat node exited at start; see its log"
            assert time.monotonic() < deadline, "hardhat node did not answer within 60 s"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


def _funded_key(url: str) -> bytes:
    key = secrets.token_bytes(32)
    funder = RpcChain(url, HARDHAT_FUNDER)
    funder.transfer(RpcChain(url, key).account, 10**20)
    return key


def test_the_json_rpc_client_deploys_anchors_and_reports_reverts(devchain: str) -> None:
    chain = RpcChain(devchain, _funded_key(devchain))
    assert chain.chain_id == 1337
    anchor, sent = LedgerAnchor.deploy(chain, chain.account)
    assert sent.gas_used > 0 and anchor.anchorer() == chain.account
    for size, root in enumerate(_roots(3), start=1):
        anchor.anchor(size, root)
    assert [a.size for a in anchor.anchors()] == [1, 2, 3] and anchor.root_at(2) == _roots(3)[1]
    with pytest.raises(ChainReverted, match="LedgerAnchor: tree size must grow"):
        anchor.anchor(3, _roots(1)[0])
    stranger = RpcChain(devchain, _funded_key(devchain))
    with pytest.raises(ChainReverted, match="caller is not the anchorer"):
        LedgerAnchor(stranger, anchor.address).anchor(4, _roots(1)[0])
    with pytest.raises(ChainError, match="is not dsnode's LicenseRegistry"):
        LicenseRegistry(chain, anchor.address)


def test_a_node_on_json_rpc_anchors_mirrors_and_exposes_a_rewrite(tmp_path: Path, people: pa.Table,
                                                                   devchain: str) -> None:
    key = _funded_key(devchain)
    h = start_node(tmp_path / "home", chain="rpc", chain_rpc_url=devchain, chain_key=key.hex())
    try:
        _, _, _, lic = _busy(h, people)
        link = _link(h)
        assert link.mirror() == 1
        anchored = link.anchor()
        assert anchored is not None and link.chain.chain_id == 1337
        assert not h.node.settings.journal_path.exists()  # nothing embedded: the dev chain holds the state
        checked = _verify(h)
        assert (checked.anchors, checked.records, checked.licences) == (1, 1, 1)
        granted = h.node.ledger.find(lic["id"], "license.granted")
        assert granted is not None
        rewrite_history(h.node, granted, regrow=anchored.size)
        with pytest.raises(LedgerTampered, match="history was rewritten after it was anchored"):
            _verify(h)
    finally:
        h.close()


def test_an_unreachable_rpc_endpoint_is_a_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ChainError, match=f"no EVM JSON-RPC node answers at http://127.0.0.1:{port}"):
        RpcChain(f"http://127.0.0.1:{port}", KEY_A, timeout=2)
