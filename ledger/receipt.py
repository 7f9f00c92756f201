"""Receipts: an entry with the proof that a signed tree head includes it, checkable by anyone with the node's
verifier key and nothing else.

Wire form (``docs/PROTOCOL.md``): ``{"v": 1, "entry": {...}, "leaf_hash": hex, "tree_size": n, "inclusion":
[hex, ...], "checkpoint": "<signed note>"}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ledger.entry import Entry, EntryError
from ledger.merkle import ProofError, verify_inclusion
from ledger.note import Checkpoint, NoteError, NoteVerifier

__all__ = ["Receipt", "ReceiptError", "verify_receipt"]


class ReceiptError(ValueError):
    """The receipt does not prove what it claims."""


@dataclass(frozen=True, slots=True)
class Receipt:
    entry: Entry
    tree_size: int
    inclusion: Sequence[bytes]
    checkpoint: str

    def to_json(self) -> dict[str, Any]:
        return {"v": 1, "entry": self.entry.to_json(), "leaf_hash": self.entry.hash.hex(),
                "tree_size": self.tree_size, "inclusion": [h.hex() for h in self.inclusion],
                "checkpoint": self.checkpoint}

    @classmethod
    def from_json(cls, obj: Any) -> Receipt:
        try:
            if obj["v"] != 1:
                raise ReceiptError("unsupported receipt version")
            entry = Entry.from_json(obj["entry"])
            if entry.hash.hex() != obj["leaf_hash"]:
                raise ReceiptError("the entry does not hash to the receipt's leaf hash")
            size = obj["tree_size"]
            if isinstance(size, bool) or not isinstance(size, int):
                raise ReceiptError("tree_size must be an integer")
            inclusion = [bytes.fromhex(h) for h in obj["inclusion"]]
            note = obj["checkpoint"]
            if not isinstance(note, str):
                raise ReceiptError("checkpoint must be a signed note")
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ReceiptError):
                raise
            raise ReceiptError(f"malformed receipt: {exc}") from None
        return cls(entry, size, inclusion, note)


def verify_receipt(receipt: Receipt, verifier: NoteVerifier, origin: str | None = None) -> Checkpoint:
    """Check the head's signature and the entry's inclusion under it; returns the verified head."""
    try:
        head = Checkpoint.open(receipt.checkpoint, verifier, origin)
    except NoteError as exc:
        raise ReceiptError(f"the signed head does not verify: {exc}") from None
    if head.size != receipt.tree_size:
        raise ReceiptError("the proof is for another tree size than the signed head")
    try:
        verify_inclusion(receipt.entry.seq, head.size, receipt.entry.hash, receipt.inclusion, head.root)
    except (ProofError, EntryError) as exc:
        raise ReceiptError(f"the entry is not in the signed tree: {exc}") from None
    return head
