"""Full verification of a stored log: chain, bodies, Merkle nodes, checkpoints and their signatures.

:func:`audit` reads every entry once, in order, recomputing what the store claims. It stops at the first problem
and names it (:class:`LedgerTampered` carries the entry ``seq`` or checkpoint size and what is wrong). Checkpoints
the auditor kept from earlier (``trusted``) are checked against the recomputed roots too: a history that was
truncated and re-grown — even one re-signed with the node's own key — fails there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from ledger.entry import GENESIS_PREV, Entry, EntryError
from ledger.merkle import EMPTY_ROOT, CompactRange, leaf_hash
from ledger.note import Checkpoint, NoteError, NoteVerifier
from ledger.store import StoredCheckpoint, StoredEntry

__all__ = ["AuditReport", "LedgerTampered", "audit"]


class LedgerTampered(ValueError):
    """The log is not what was recorded. ``seq`` names the first bad entry, ``checkpoint`` a bad checkpoint."""

    def __init__(self, reason: str, *, seq: int | None = None, checkpoint: int | None = None) -> None:
        if seq is not None:
            where = f"entry {seq}"
        elif checkpoint is not None:
            where = f"checkpoint at size {checkpoint}"
        else:
            where = "tree state"
        super().__init__(f"{where}: {reason}")
        self.seq = seq
        self.checkpoint = checkpoint
        self.reason = reason


@dataclass(frozen=True, slots=True)
class AuditReport:
    size: int
    root: bytes
    checkpoints: int
    trusted: int


def _check_checkpoint(cp: StoredCheckpoint, root: bytes, verifier: NoteVerifier, origin: str) -> None:
    if cp.root != root:
        raise LedgerTampered("its root differs from the root of the stored entries", checkpoint=cp.size)
    try:
        signed = Checkpoint.open(cp.note, verifier, origin)
    except NoteError as exc:
        raise LedgerTampered(f"the signed head does not verify ({exc})", checkpoint=cp.size) from None
    if (signed.size, signed.root) != (cp.size, cp.root):
        raise LedgerTampered("the signed head names another size or root than its row", checkpoint=cp.size)


def audit(
    entries: Iterable[StoredEntry],
    checkpoints: Sequence[StoredCheckpoint],
    verifier: NoteVerifier,
    origin: str,
    *,
    trusted: Sequence[str] = (),
    state: tuple[int, bytes] | None = None,
    progress: Callable[[int], None] | None = None,
    anchored: Mapping[int, bytes] | None = None,
) -> AuditReport:
    """Verify the log; raise :class:`LedgerTampered` at the first problem.

    ``trusted`` are signed checkpoint notes kept by the auditor; ``state`` is the store's cached
    ``(size, compact range bytes)``, checked against the recomputed tree; ``progress`` is called with the number
    of entries verified so far, every 10,000 entries; ``anchored`` maps tree sizes to roots published elsewhere
    (on chain), each of which the stored entries must reproduce.
    """
    anchors = dict(anchored or {})
    due: dict[int, list[StoredCheckpoint]] = {}
    for cp in checkpoints:
        due.setdefault(cp.size, []).append(cp)
    for note in trusted:
        try:
            head = Checkpoint.open(note, verifier, origin)
        except NoteError as exc:
            raise ValueError(f"a trusted head does not verify: {exc}") from None
        due.setdefault(head.size, []).append(StoredCheckpoint(head.size, head.root, note))
    for cp in due.get(0, []):
        _check_checkpoint(cp, EMPTY_ROOT, verifier, origin)

    tree = CompactRange()
    prev = GENESIS_PREV
    expected = 0
    for row in entries:
        seq = row.seq
        if seq != expected:
            if seq > expected:
                raise LedgerTampered(f"missing (the next stored entry is {seq})", seq=expected)
            raise LedgerTampered("stored twice or out of order", seq=seq)
        try:
            entry = Entry.from_body(row.body)
        except EntryError as exc:
            raise LedgerTampered(f"malformed body: {exc}", seq=seq) from None
        if entry.seq != seq:
            raise LedgerTampered(f"its body says seq {entry.seq}: entries were moved", seq=seq)
        if (entry.kind, entry.actor, entry.subject) != (row.kind, row.actor, row.subject):
            raise LedgerTampered("its kind, actor or subject column differs from its body", seq=seq)
        h = leaf_hash(row.body)
        if h != row.entry_hash:
            raise LedgerTampered("its body does not match its stored hash (the entry was edited)", seq=seq)
        if entry.prev != prev:
            raise LedgerTampered(f"it does not chain to entry {seq - 1} (one of the two was altered)", seq=seq)
        completed = tree.append(h)
        if b"".join(node for _, node in completed) != row.nodes:
            raise LedgerTampered("its stored Merkle nodes differ from the recomputed ones", seq=seq)
        prev = h.hex()
        expected += 1
        for cp in due.get(expected, ()):
            _check_checkpoint(cp, tree.root(), verifier, origin)
        if expected in anchors and anchors[expected] != tree.root():
            raise LedgerTampered("the root anchored on chain for this size differs from the root of the stored "
                                 "entries: history was rewritten after it was anchored", checkpoint=expected)
        if progress is not None and expected % 10_000 == 0:
            progress(expected)

    beyond = sorted(size for size in (*due, *anchors) if size > expected)
    if beyond:
        raise LedgerTampered(f"a signed or anchored head covers {beyond[-1]} entries but only {expected} are stored: "
                             "history was truncated", checkpoint=beyond[-1])
    if state is not None and state != (tree.size, tree.to_bytes()):
        raise LedgerTampered(f"the stored size and right border ({state[0]} entries) differ from the entries "
                             f"({tree.size}): appends would fork from a wrong tree")
    if progress is not None:
        progress(expected)
    n_trusted = len(trusted)
    return AuditReport(expected, tree.root(), len(checkpoints), n_trusted)
