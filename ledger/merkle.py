"""RFC 9162 (Certificate Transparency v2) Merkle tree hashing, proofs and their verification.

Hashes are SHA-256: a leaf is ``SHA-256(0x00 ‖ data)``, an interior node ``SHA-256(0x01 ‖ left ‖ right)``, the
empty tree ``SHA-256("")``. A tree over ``n`` leaves splits at ``k``, the largest power of two below ``n``.

Nodes are named ``(level, index)``: the perfect subtree of ``2**level`` leaves starting at leaf
``index * 2**level``. Every hash a proof needs is such a perfect subtree (or combines several), so a store that
keeps each perfect subtree's hash answers any proof with O(log n) lookups and never rebuilds the tree. A perfect
subtree becomes known exactly when its last leaf, :func:`completing_leaf`, is appended; :class:`CompactRange`
reports the nodes each append completes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Mapping, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "NodeFetcher",
    "NodeId",
    "ProofError",
    "completing_leaf",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion",
    "tree_root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
NodeId = tuple[int, int]
NodeFetcher = Callable[[Collection[NodeId]], Mapping[NodeId, bytes]]
_sha256 = hashlib.sha256


class ProofError(ValueError):
    """A proof or the arguments given with it do not verify."""


def leaf_hash(data: bytes) -> bytes:
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def completing_leaf(level: int, index: int) -> int:
    """The leaf whose append completes node ``(level, index)``."""
    return ((index + 1) << level) - 1


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


class CompactRange:
    """The right border of a tree: one hash per set bit of ``size``, largest subtree first. Enough to append and
    to compute the root, in O(log n) space."""

    __slots__ = ("size", "hashes")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0 or len(hashes) != size.bit_count():
            raise ValueError("a compact range needs one hash per set bit of its size")
        self.size = size
        self.hashes = list(hashes)

    def append(self, leaf: bytes) -> list[tuple[NodeId, bytes]]:
        """Add a leaf hash; returns the interior nodes this completes, lowest level first."""
        completed: list[tuple[NodeId, bytes]] = []
        index, h, level = self.size, leaf, 0
        hashes = self.hashes
        while index & (1 << level):
            h = node_hash(hashes.pop(), h)
            level += 1
            completed.append(((level, index >> level), h))
        hashes.append(h)
        self.size += 1
        return completed

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        h = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            h = node_hash(left, h)
        return h

    def to_bytes(self) -> bytes:
        return b"".join(self.hashes)

    @classmethod
    def from_bytes(cls, size: int, blob: bytes) -> CompactRange:
        if len(blob) != HASH_SIZE * size.bit_count():
            raise ValueError("compact range blob does not match its size")
        return cls(size, [blob[i:i + HASH_SIZE] for i in range(0, len(blob), HASH_SIZE)])

    def copy(self) -> CompactRange:
        return CompactRange(self.size, self.hashes)


def tree_root(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf *hashes* (reference implementation, O(n))."""
    cr = CompactRange()
    for leaf in leaves:
        cr.append(leaf)
    return cr.root()


# ---- proofs from stored perfect subtrees ---------------------------------------------------------------------
def _perfect_cover(begin: int, end: int) -> list[NodeId]:
    """Perfect subtrees whose right fold is MTH(D[begin:end]), for ranges that arise in RFC 9162 recursion."""
    out: list[NodeId] = []
    while begin < end:
        n = end - begin
        size = n if n & (n - 1) == 0 else _split(n)
        level = size.bit_length() - 1
        out.append((level, begin >> level))
        begin += size
    return out


def _inclusion_ranges(index: int, begin: int, end: int) -> list[tuple[int, int]]:
    # RFC 9162 §2.1.3.1 PATH(m, D[n]), with ranges in absolute leaf positions; deepest sibling first.
    ranges: list[tuple[int, int]] = []
    while end - begin > 1:
        k = _split(end - begin)
        if index < begin + k:
            ranges.append((begin + k, end))
            end = begin + k
        else:
            ranges.append((begin, begin + k))
            begin += k
    ranges.reverse()
    return ranges


def _consistency_ranges(old: int, begin: int, end: int) -> list[tuple[int, int]]:
    # RFC 9162 §2.1.4.1 SUBPROOF(m, D[n], b), iteratively.
    ranges: list[tuple[int, int]] = []
    whole = True
    while old != end:
        k = _split(end - begin)
        if old <= begin + k:
            ranges.append((begin + k, end))
            end = begin + k
        else:
            ranges.append((begin, begin + k))
            begin += k
            whole = False
    if not whole:
        ranges.append((begin, end))
    ranges.reverse()
    return ranges


def _hashes_of(ranges: list[tuple[int, int]], fetch: NodeFetcher) -> list[bytes]:
    covers = [_perfect_cover(b, e) for b, e in ranges]
    wanted = {node for cover in covers for node in cover}
    found = fetch(wanted)
    missing = wanted - found.keys()
    if missing:
        raise LookupError(f"{len(missing)} Merkle node(s) are missing from the store")
    out = []
    for cover in covers:
        h = found[cover[-1]]
        for node in reversed(cover[:-1]):
            h = node_hash(found[node], h)
        out.append(h)
    return out


def inclusion_proof(index: int, size: int, fetch: NodeFetcher) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of ``size`` leaves (RFC 9162 §2.1.3.1)."""
    if not 0 <= index < size:
        raise ValueError("the leaf index must be below the tree size")
    return _hashes_of(_inclusion_ranges(index, 0, size), fetch)


def consistency_proof(old_size: int, new_size: int, fetch: NodeFetcher) -> list[bytes]:
    """Proof that the tree of ``old_size`` leaves is a prefix of the tree of ``new_size`` (RFC 9162 §2.1.4.1)."""
    if not 0 <= old_size <= new_size:
        raise ValueError("the first size must not exceed the second")
    if old_size in (0, new_size):
        return []
    return _hashes_of(_consistency_ranges(old_size, 0, new_size), fetch)


# ---- verification (RFC 9162 §2.1.3.2 and §2.1.4.2) -----------------------------------------------------------
def _check_hashes(*hashes: bytes) -> None:
    if any(len(h) != HASH_SIZE for h in hashes):
        raise ProofError("hashes must be 32 bytes")


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` implies for ``leaf`` at ``index`` in a tree of ``size`` leaves."""
    _check_hashes(leaf, *proof)
    if not 0 <= index < size:
        raise ProofError("the leaf index must be below the tree size")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("the proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the proof is too short")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Raise :class:`ProofError` unless ``leaf`` (a leaf hash) is at ``index`` of the tree with ``root``."""
    _check_hashes(root)
    if root_from_inclusion(index, size, leaf, proof) != root:
        raise ProofError("the inclusion proof does not lead to the root")


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> None:
    """Raise :class:`ProofError` unless the tree (``old_size``, ``old_root``) is a prefix of
    (``new_size``, ``new_root``)."""
    _check_hashes(old_root, new_root, *proof)
    if not 0 <= old_size <= new_size:
        raise ProofError("a log never shrinks: the old size exceeds the new size")
    if old_size == new_size:
        if proof or old_root != new_root:
            raise ProofError("equal sizes need equal roots and an empty proof")
        return
    if old_size == 0:
        if proof:
            raise ProofError("a proof from the empty tree must be empty")
        return
    if not proof:
        raise ProofError("the consistency proof is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the proof is too short")
    if fr != old_root:
        raise ProofError("the proof does not reproduce the old root: history was rewritten")
    if sr != new_root:
        raise ProofError("the proof does not lead to the new root")
