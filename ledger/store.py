"""The boundary between the ledger core and wherever entries are kept (the node keeps them in its database).

A store keeps, per entry, its body and hash and the interior Merkle nodes its append completed (levels 1‥t,
concatenated, lowest first), so node ``(level, index)`` lives with entry :func:`~ledger.merkle.completing_leaf`
and every proof is a handful of point lookups. It also keeps the signed checkpoints it issued.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from ledger.merkle import HASH_SIZE, NodeId, completing_leaf

__all__ = ["LedgerStore", "StoredCheckpoint", "StoredEntry", "node_location"]


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """One row as kept: the body and the columns derived from it (which verification re-derives)."""

    seq: int
    entry_hash: bytes
    body: bytes
    kind: str
    actor: str
    subject: str
    nodes: bytes


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    size: int
    root: bytes
    note: str


def node_location(node: NodeId) -> tuple[int, int]:
    """Where an interior node is kept: ``(entry seq, byte offset in that entry's nodes)``."""
    level, index = node
    return completing_leaf(level, index), (level - 1) * HASH_SIZE


class LedgerStore(Protocol):
    def size(self) -> int:
        """Number of entries committed."""
        ...

    def entries(self, start: int, stop: int) -> Iterator[StoredEntry]:
        """Entries with ``start <= seq < stop`` in ``seq`` order, as stored (gaps and all)."""
        ...

    def nodes(self, ids: Collection[NodeId]) -> Mapping[NodeId, bytes]:
        """Hashes of the given perfect subtrees (level 0 = entry hashes); absent ones are left out."""
        ...

    def checkpoints(self) -> list[StoredCheckpoint]:
        """Every checkpoint issued, by size."""
        ...
