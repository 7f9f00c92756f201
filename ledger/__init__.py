"""Tamper-evident ledger core: a pure library (no framework imports).

Entries (:mod:`ledger.entry`) are RFC 8785 canonical JSON (:mod:`ledger.canonical`), hash-chained, and the leaves
of an RFC 9162 Merkle tree (:mod:`ledger.merkle`). Tree heads are C2SP checkpoints signed with Ed25519
(:mod:`ledger.note`). :mod:`ledger.audit` verifies a whole stored log, :mod:`ledger.receipt` one entry's
inclusion. Storage is behind :class:`ledger.store.LedgerStore`; the node implements it on its database.
"""

from ledger.audit import AuditReport, LedgerTampered, audit
from ledger.canonical import CanonicalError, canonical_json
from ledger.entry import GENESIS_PREV, KINDS, Entry, EntryError, format_time
from ledger.merkle import (
    EMPTY_ROOT,
    CompactRange,
    NodeId,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_inclusion,
    verify_consistency,
    verify_inclusion,
)
from ledger.note import Checkpoint, NoteError, NoteSigner, NoteVerifier
from ledger.receipt import Receipt, ReceiptError, verify_receipt
from ledger.store import LedgerStore, StoredCheckpoint, StoredEntry, node_location

__all__ = [
    "EMPTY_ROOT",
    "GENESIS_PREV",
    "KINDS",
    "AuditReport",
    "CanonicalError",
    "Checkpoint",
    "CompactRange",
    "Entry",
    "EntryError",
    "LedgerStore",
    "LedgerTampered",
    "NodeId",
    "NoteError",
    "NoteSigner",
    "NoteVerifier",
    "ProofError",
    "Receipt",
    "ReceiptError",
    "StoredCheckpoint",
    "StoredEntry",
    "audit",
    "canonical_json",
    "consistency_proof",
    "format_time",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "node_location",
    "root_from_inclusion",
    "verify_consistency",
    "verify_inclusion",
    "verify_receipt",
]
