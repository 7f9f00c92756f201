"""The node on its chain: contracts deployed once, signed tree heads anchored, licences mirrored, payouts paid.

Nothing here runs inside a database transaction: chain transactions take tens of milliseconds to seconds. The
ledger itself is the outbox. :meth:`ChainLink.mirror` walks the ``license.granted``, ``license.revoked`` and
``settlement`` entries after a cursor kept in ``chain_state`` and mirrors each one. Every step is idempotent:
- a licence already registered or revoked on chain is skipped;
- a settlement whose ``Paid`` event is already on chain after the cursor's block is not paid twice.

A crash between a transaction and the cursor update therefore redoes nothing.

Anchoring puts ``(size, root)`` of a signed tree head into ``LedgerAnchor``, then appends a
``checkpoint.anchored`` entry naming the transaction. The chain's events, not those entries, are the source of
truth. :meth:`ChainLink.check` verifies every anchored root against the local log, so a history rewritten after
it was anchored fails, even when it was re-signed with the node key.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from web3 import Web3

from contracts.chain import Chain, ChainError, ChainReverted, EmbeddedChain, RpcChain
from contracts.wrappers import Anchor, LedgerAnchor, LicenseRegistry, RevenueSplitter
from ledger import Entry
from ledger.audit import AuditReport, LedgerTampered
from ledger.merkle import ProofError, verify_consistency
from node.db import Database
from node.keys import derive_secret
from node.ledger_store import SqlLedger
from node.models import ChainState, LedgerEntry, LedgerState, Participant, utcnow
from node.settings import Settings

__all__ = ["ANCHOR_KIND", "Anchored", "ChainCheck", "ChainLink", "Deployment", "dataset_key"]

log = logging.getLogger("dsnode.chain")

ANCHOR_KIND = "checkpoint.anchored"
_MIRRORED = ("license.granted", "license.revoked", "settlement")
_CURSOR = "mirror_cursor"
_UNPAID = "unpaid_settlements"
_NO_EXPIRY = 2**64 - 1


def dataset_key(dataset_id: str) -> bytes:
    """The ``bytes32`` a dataset is known by on chain: SHA-256 of its id."""
    return hashlib.sha256(dataset_id.encode()).digest()


@dataclass(frozen=True, slots=True)
class Deployment:
    chain_id: int
    anchor: LedgerAnchor
    registry: LicenseRegistry
    splitter: RevenueSplitter

    def addresses(self) -> dict[str, str]:
        return {"LedgerAnchor": self.anchor.address, "LicenseRegistry": self.registry.address,
                "RevenueSplitter": self.splitter.address}


@dataclass(frozen=True, slots=True)
class Anchored:
    """An anchor this node just made, and the ledger entry that records it."""

    size: int
    root: bytes
    tx_hash: str
    block: int
    gas_used: int
    seconds: float
    entry: Entry


@dataclass(frozen=True, slots=True)
class ChainCheck:
    """What ``ledger verify --chain`` established beyond the local audit."""

    anchors: int
    latest: Anchor | None
    records: int  # checkpoint.anchored entries matched to on-chain anchors
    licences: int  # mirrored licences found on chain as the ledger says
    chain_id: int
    contract: str


class ChainLink:
    """The node's side of the chain: one per node process, thread-safe, opened lazily on first use."""

    def __init__(self, settings: Settings, db: Database, ledger: SqlLedger, key: Ed25519PrivateKey,
                 clock: Callable[[], datetime] = utcnow) -> None:
        if settings.chain == "off":
            raise ValueError("the chain is off in this node's settings")
        self._settings = settings
        self._db = db
        self._ledger = ledger
        self._clock = clock
        secret = settings.chain_key.get_secret_value() if settings.chain_key else None
        self._account_key = bytes.fromhex(secret.removeprefix("0x")) if secret else derive_secret(
            key, "dsnode evm account v1")
        self._buyer_key = derive_secret(key, "dsnode chain buyer pseudonyms v1")
        self._lock = threading.RLock()
        self._chain: Chain | None = None
        self._deployment: Deployment | None = None
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None

    # ---- the chain and the contracts -----------------------------------------------------------------------
    @property
    def chain(self) -> Chain:
        with self._lock:
            if self._chain is None:
                if self._settings.chain == "rpc":
                    if not self._settings.chain_rpc_url:
                        raise ChainError("chain = rpc needs chain_rpc_url (DSNODE_CHAIN_RPC_URL)")
                    self._chain = RpcChain(self._settings.chain_rpc_url, self._account_key)
                else:
                    self._chain = EmbeddedChain(self._settings.journal_path, self._account_key)
            return self._chain

    def _state(self, name: str) -> dict[str, Any] | None:
        with self._db.reader() as session:
            row = session.get(ChainState, name)
            return None if row is None else dict(row.value)

    def _put_state(self, name: str, value: dict[str, Any]) -> None:
        with self._db.transaction() as session:
            row = session.get(ChainState, name)
            if row is None:
                session.add(ChainState(name=name, value=value))
            else:
                row.value = value

    def deployment(self, create: bool = True) -> Deployment:
        """The node's contracts on its chain, deployed on first use (``create``) and recorded in the database."""
        with self._lock:
            if self._deployment is not None:
                return self._deployment
            chain = self.chain
            name = f"deployment:{chain.chain_id}"
            recorded = self._state(name)
            if recorded is None:
                if not create:
                    raise ChainError(f"this node has no contracts on chain {chain.chain_id} yet; "
                                     "run: dsnode ledger anchor")
                recorded = {}
                for cls in (LedgerAnchor, LicenseRegistry, RevenueSplitter):
                    contract, sent = cls.deploy(chain, chain.account)
                    recorded[cls.NAME] = contract.address
                    log.info("deployed %s at %s (gas %d)", cls.NAME, contract.address, sent.gas_used)
                recorded["account"] = chain.account
                self._put_state(name, recorded)
            dep = Deployment(chain.chain_id, LedgerAnchor(chain, recorded["LedgerAnchor"]),
                             LicenseRegistry(chain, recorded["LicenseRegistry"]),
                             RevenueSplitter(chain, recorded["RevenueSplitter"]))
            if dep.anchor.anchorer() != chain.account:
                raise ChainError(f"the LedgerAnchor at {dep.anchor.address} belongs to another account than this "
                                 f"node's {chain.account}; was chain_key changed?")
            self._deployment = dep
            return dep

    # ---- anchoring -----------------------------------------------------------------------------------------
    def _unanchored(self, since: int) -> int:
        """Entries from ``since`` on, other than anchor records (anchoring those alone would never end)."""
        with self._db.reader() as session:
            return int(session.scalar(select(func.count()).select_from(LedgerEntry).where(
                LedgerEntry.seq >= since, LedgerEntry.kind != ANCHOR_KIND)) or 0)

    def due(self) -> bool:
        """Whether the automatic cadence asks for an anchor now."""
        every_n, every_s = self._settings.anchor_every_entries, self._settings.anchor_every_seconds
        if not every_n and not every_s:
            return False
        size, _, timestamp = self.deployment().anchor.latest()
        fresh = self._unanchored(size)
        if not fresh:
            return False
        if every_n and fresh >= every_n:
            return True
        return bool(every_s) and self._clock().timestamp() - timestamp >= every_s

    def anchor(self) -> Anchored | None:
        """Anchor the current signed tree head; ``None`` when the chain already covers every entry but anchor
        records (or another process anchored it meanwhile)."""
        with self._lock:
            dep = self.deployment()
            anchored_size = dep.anchor.latest()[0]
            if not self._unanchored(anchored_size):
                return None
            head = self._ledger.checkpoint()
            if head.size <= anchored_size:
                return None
            start = time.perf_counter()
            try:
                sent = dep.anchor.anchor(head.size, head.root)
            except ChainReverted as exc:
                if "tree size must grow" in exc.reason:
                    return None
                raise
            seconds = time.perf_counter() - start
            entry = self._ledger.record(ANCHOR_KIND, "node", f"anchor:{head.size}", {
                "size": head.size, "root": head.root.hex(), "chain_id": dep.chain_id,
                "contract": dep.anchor.address, "tx": sent.tx_hash, "block": sent.block})
            log.info("anchored %d entries (root %s) in tx %s, gas %d", head.size, head.root.hex()[:16],
                     sent.tx_hash, sent.gas_used)
            return Anchored(head.size, head.root, sent.tx_hash, sent.block, sent.gas_used, seconds, entry)

    def anchors(self) -> list[Anchor]:
        """Every anchor of this node's log on chain, oldest first."""
        return self.deployment(create=False).anchor.anchors()

    # ---- mirroring -----------------------------------------------------------------------------------------
    def buyer_address(self, participant_id: str) -> str:
        """The participant's own address, or a pseudonym only this node can link to it (HMAC of its id)."""
        with self._db.reader() as session:
            address = session.scalar(select(Participant.address).where(Participant.id == participant_id))
        if address:
            return str(address)
        digest = hmac.new(self._buyer_key, participant_id.encode(), hashlib.sha256).digest()
        return Web3.to_checksum_address(digest[:20])

    def addresses(self, participants: Iterable[str]) -> dict[str, str]:
        """The EVM addresses of those participants that gave one."""
        with self._db.reader() as session:
            rows = session.execute(select(Participant.id, Participant.address)
                                   .where(Participant.id.in_(list(participants)))).all()
        return {who: str(address) for who, address in rows if address}

    def _pending(self, start: int, limit: int) -> tuple[list[tuple[int, bytes, bytes]], int]:
        """Up to ``limit`` entries to mirror from ``start`` on, and the log size they were read at: entries below
        it that are not returned need no mirroring, so the cursor may skip to it (each tick then reads only what
        is new, not the whole log)."""
        with self._db.reader() as session:
            size = int(session.scalar(select(LedgerState.size)) or 0)  # every entry below it is committed
            rows = session.execute(select(LedgerEntry.seq, LedgerEntry.entry_hash, LedgerEntry.body).where(
                LedgerEntry.seq >= start, LedgerEntry.seq < size, LedgerEntry.kind.in_(_MIRRORED))
                .order_by(LedgerEntry.seq).limit(limit)).all()
        return [(int(seq), bytes(h), bytes(body)) for seq, h, body in rows], size

    def mirror(self, limit: int = 100) -> int:
        """Mirror up to ``limit`` pending licence and settlement entries; returns how many were processed."""
        if not (self._settings.chain_mirror_licenses or self._settings.chain_pay_settlements):
            return 0
        with self._lock:
            dep = self.deployment()
            cursor = self._state(_CURSOR) or {"next": 0, "block": 0}
            pending, size = self._pending(int(cursor["next"]), limit)
            for seq, entry_hash, body in pending:
                entry = Entry.from_body(body)
                block = self._mirror_one(dep, entry, entry_hash, int(cursor["block"]))
                cursor = {"next": seq + 1, "block": max(int(cursor["block"]), block)}
                self._put_state(_CURSOR, cursor)
            if len(pending) < limit and size > int(cursor["next"]):
                self._put_state(_CURSOR, {"next": size, "block": cursor["block"]})
            return len(pending)

    def _mirror_one(self, dep: Deployment, entry: Entry, entry_hash: bytes, after_block: int) -> int:
        """Mirror one entry; returns the block of the transaction it took (0 for none)."""
        p = entry.payload
        if entry.kind == "license.granted" and self._settings.chain_mirror_licenses:
            if dep.registry.license_of(entry_hash) is None:
                expires = _unix(p["expires_at"])
                sent = dep.registry.register(entry_hash, dataset_key(p["dataset"]), self.buyer_address(p["buyer"]),
                                             expires)
                return sent.block
        elif entry.kind == "license.revoked" and self._settings.chain_mirror_licenses:
            grant = self._grant_hash(p["license"])
            lic = dep.registry.license_of(grant) if grant else None
            if grant and lic is not None and not lic.revoked:
                return dep.registry.revoke(grant).block
        elif entry.kind == "settlement" and self._settings.chain_pay_settlements:
            return self._pay(dep, p, after_block)
        return 0

    def _grant_hash(self, license_id: str) -> bytes | None:
        seq = self._ledger.find(license_id, "license.granted")
        if seq is None:
            return None
        with self._db.reader() as session:
            h = session.scalar(select(LedgerEntry.entry_hash).where(LedgerEntry.seq == seq))
        return None if h is None else bytes(h)

    def _pay(self, dep: Deployment, p: Mapping[str, Any], after_block: int) -> int:
        payouts = {who: int(fen) for who, fen in p["payouts"].items() if int(fen) > 0}
        wei = int(p["price_fen"]) * self._settings.chain_wei_per_fen
        if not payouts or wei <= 0:
            return 0
        addresses = self.addresses(payouts)
        missing = sorted(who for who in payouts if who not in addresses)
        reason = (f"payees without an address: {', '.join(missing)}" if missing else
                  f"more than {RevenueSplitter.MAX_PAYEES} payees" if len(payouts) > RevenueSplitter.MAX_PAYEES
                  else None)
        if reason:
            unpaid = self._state(_UNPAID) or {}
            unpaid[p["settlement"]] = reason
            self._put_state(_UNPAID, unpaid)
            log.warning("settlement %s not paid on chain: %s", p["settlement"], reason)
            return 0
        ds = dataset_key(p["dataset"])
        if self._already_paid(dep, ds, wei, after_block):
            return 0
        order = sorted(payouts)
        g = math.gcd(*(payouts[w] for w in order))
        payees = [Web3.to_checksum_address(str(addresses[w])) for w in order]
        shares = [payouts[w] // g for w in order]
        if dep.splitter.payees_of(ds) != (payees, shares):
            dep.splitter.set_payees(ds, payees, shares)
        return dep.splitter.pay(ds, wei).block

    def _already_paid(self, dep: Deployment, ds: bytes, wei: int, after_block: int) -> bool:
        """A ``Paid`` event for this dataset and amount by this node after the cursor's block: a payment made
        just before a crash that kept the cursor from moving."""
        event = dep.splitter.contract.events.Paid
        return any(bytes(log_["args"]["dataset"]) == ds and int(log_["args"]["amount"]) == wei
                   and log_["args"]["payer"] == self.chain.account
                   for log_ in self.chain.logs(event, after_block + 1))

    # ---- verification --------------------------------------------------------------------------------------
    def check(self, report: AuditReport, anchors: list[Anchor]) -> ChainCheck:
        """After ``ledger.audit(anchored=…)`` passed, prove each anchor consistent with the audited head, match
        the node's anchor records to the chain, and check mirrored licences. Raises :class:`LedgerTampered`.
        Read ``anchors`` before the audit: the log only grows, so each must then be within the audited size."""
        dep = self.deployment(create=False)
        for a in anchors:
            if a.size > report.size:
                raise LedgerTampered(f"the chain anchors {a.size} entries (tx {a.tx_hash}) but the log holds only "
                                     f"{report.size}: history was truncated", checkpoint=a.size)
            try:
                verify_consistency(a.size, report.size, a.root, report.root,
                                   self._ledger.consistency(a.size, report.size))
            except ProofError as exc:
                raise LedgerTampered(f"the log is not an extension of the root anchored in tx {a.tx_hash} ({exc})",
                                     checkpoint=a.size) from None
        on_chain = {a.size: a for a in anchors}
        records = 0
        for seq, entry in self._entries_of(ANCHOR_KIND):
            if seq >= report.size:
                break  # appended after the audit
            p = entry.payload
            if int(p["size"]) not in on_chain:  # anchored after ``anchors`` were read, by a node still running
                on_chain.update((a.size, a) for a in dep.anchor.anchors())
            match = on_chain.get(int(p["size"]))
            if p["contract"] != dep.anchor.address:
                continue  # an anchor on another chain or an earlier deployment
            if match is None or match.root.hex() != p["root"] or match.tx_hash != p["tx"]:
                raise LedgerTampered(f"it records an anchor of size {p['size']} in tx {p['tx']} that the chain does "
                                     "not hold", seq=seq)
            records += 1
        licences = self._check_licences(dep)
        return ChainCheck(len(anchors), anchors[-1] if anchors else None, records, licences, dep.chain_id,
                          dep.anchor.address)

    def _entries_of(self, kind: str) -> Iterator[tuple[int, Entry]]:
        start = 0
        while batch := self._ledger.page(start, 1000, kind=kind):
            yield from ((e.seq, e) for e in batch)
            start = batch[-1].seq + 1

    def _check_licences(self, dep: Deployment) -> int:
        """Every licence mirrored so far (before the cursor) is on chain with the ledger's dataset, buyer and
        expiry, and revoked there iff the ledger revoked it."""
        if not self._settings.chain_mirror_licenses:
            return 0
        upto = int((self._state(_CURSOR) or {"next": 0})["next"])
        revoked = {e.payload["license"] for seq, e in self._entries_of("license.revoked") if seq < upto}
        checked = 0
        with self._db.reader() as session:
            rows = session.execute(select(LedgerEntry.seq, LedgerEntry.entry_hash, LedgerEntry.body).where(
                LedgerEntry.seq < upto, LedgerEntry.kind == "license.granted").order_by(LedgerEntry.seq)).all()
        for seq, entry_hash, body in rows:
            p = Entry.from_body(bytes(body)).payload
            lic = dep.registry.license_of(bytes(entry_hash))
            if lic is None:
                raise LedgerTampered("its licence was mirrored but is not in the LicenseRegistry", seq=int(seq))
            expected = (dataset_key(p["dataset"]), self.buyer_address(p["buyer"]), _unix(p["expires_at"]),
                        p["license"] in revoked)
            if (lic.dataset, lic.buyer, lic.expires_at, lic.revoked) != expected:
                raise LedgerTampered("its licence differs from the one in the LicenseRegistry (dataset, buyer, "
                                     "expiry or revocation)", seq=int(seq))
            checked += 1
        return checked

    def status(self) -> dict[str, Any]:
        """What ``GET /v1/chain`` and ``dsnode chain status`` show."""
        dep = self.deployment(create=False)
        size, root, timestamp = dep.anchor.latest()
        return {"chain": self._settings.chain, "chain_id": dep.chain_id, "account": self.chain.account,
                "contracts": dep.addresses(),
                "latest_anchor": {"size": size, "root": root.hex(), "timestamp": timestamp} if size else None,
                "unanchored_entries": self._unanchored(size),
                "cadence": {"entries": self._settings.anchor_every_entries,
                            "seconds": self._settings.anchor_every_seconds},
                "mirror": {"licenses": self._settings.chain_mirror_licenses,
                           "settlements": self._settings.chain_pay_settlements,
                           "next_entry": int((self._state(_CURSOR) or {"next": 0})["next"]),
                           "unpaid_settlements": self._state(_UNPAID) or {}}}

    # ---- the background worker -----------------------------------------------------------------------------
    def tick(self) -> Anchored | None:
        """One round of the worker: mirror what is pending, then anchor if the cadence says so."""
        while self.mirror() == 100:
            pass
        return self.anchor() if self.due() else None

    def start(self, interval: float = 1.0) -> None:
        """Run :meth:`tick` every ``interval`` seconds in a daemon thread until :meth:`close`."""
        if self._worker is not None:
            return

        def run() -> None:
            failures = 0
            while not self._stop.wait(min(interval * 2**failures, 60.0)):
                try:
                    self.tick()
                    failures = 0
                except Exception as exc:  # keep serving; the next tick retries with backoff
                    failures = min(failures + 1, 6)
                    log.warning("chain worker: %s (retrying)", exc)

        self._worker = threading.Thread(target=run, name="dsnode-chain", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        """Stop the background worker (after its current round); the link stays usable."""
        self._stop.set()
        if self._worker is not None:
            self._worker.join(30)
            self._worker = None

    def close(self) -> None:
        self.stop()
        with self._lock:
            if self._chain is not None:
                self._chain.close()


def _unix(value: str | None) -> int:
    """Seconds since the epoch of an ISO time from a ledger payload (naive means UTC); none = never expires."""
    if not value:
        return _NO_EXPIRY
    when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp())
