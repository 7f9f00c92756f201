"""The pure ledger core: known-answer tests (Certificate Transparency Merkle vectors, Go's signed-note example),
RFC 8785 agreement, and audits of an in-memory log that is attacked."""

from __future__ import annotations

import base64
import json
from collections.abc import Collection, Iterator, Mapping
from datetime import UTC, datetime

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import (
    EMPTY_ROOT,
    GENESIS_PREV,
    CanonicalError,
    Checkpoint,
    CompactRange,
    Entry,
    EntryError,
    LedgerTampered,
    NodeId,
    NoteError,
    NoteSigner,
    NoteVerifier,
    ProofError,
    Receipt,
    ReceiptError,
    StoredCheckpoint,
    StoredEntry,
    audit,
    canonical_json,
    consistency_proof,
    format_time,
    inclusion_proof,
    leaf_hash,
    node_hash,
    node_location,
    verify_consistency,
    verify_inclusion,
    verify_receipt,
)

# ---- Certificate Transparency vectors (RFC 6962 reference tests, as in transparency-dev/merkle) ------------
CT_LEAVES = [bytes.fromhex(h) for h in
             ("", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f")]
CT_ROOTS = [bytes.fromhex(h) for h in (
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]
# (leaf number, 1-based as in the CT tests; tree size; audit path)
CT_INCLUSION = [
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (2, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
CT_CONSISTENCY = [
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


class TreeNodes:
    """Every perfect subtree of a list of leaf hashes, answered the way a store answers proofs."""

    def __init__(self, leaves: list[bytes]) -> None:
        self.known: dict[NodeId, bytes] = {}
        cr = CompactRange()
        for i, leaf in enumerate(leaves):
            self.known[(0, i)] = leaf
            for node, h in cr.append(leaf):
                self.known[node] = h
        self.root = cr.root()

    def __call__(self, ids: Collection[NodeId]) -> Mapping[NodeId, bytes]:
        return {i: self.known[i] for i in ids if i in self.known}


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 MTH, written straight from the definition."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(_mth(leaves[:k]), _mth(leaves[k:]))


CT_HASHES = [leaf_hash(x) for x in CT_LEAVES]


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert CompactRange().root() == EMPTY_ROOT
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_match_the_ct_vectors(size: int) -> None:
    assert TreeNodes(CT_HASHES[:size]).root == CT_ROOTS[size - 1]


@pytest.mark.parametrize(("leaf", "size", "path"), CT_INCLUSION)
def test_inclusion_proofs_match_the_ct_vectors(leaf: int, size: int, path: list[str]) -> None:
    nodes = TreeNodes(CT_HASHES[:size])
    proof = inclusion_proof(leaf - 1, size, nodes)
    assert [h.hex() for h in proof] == path
    verify_inclusion(leaf - 1, size, CT_HASHES[leaf - 1], proof, CT_ROOTS[size - 1])


@pytest.mark.parametrize(("leaf", "size", "path"), CT_INCLUSION)
def test_corrupted_inclusion_proofs_fail(leaf: int, size: int, path: list[str]) -> None:
    """The probes of the CT/transparency-dev verifier tests: every one must be refused."""
    index, root, h = leaf - 1, CT_ROOTS[size - 1], CT_HASHES[leaf - 1]
    proof = [bytes.fromhex(p) for p in path]
    probes = [
        (index - 1, size, h, proof, root), (index + 1, size, h, proof, root), (index ^ 2, size, h, proof, root),
        (index, size * 2, h, proof, root), (index, size // 2, h, proof, root),
        (index, size, b"WrongLeaf", proof, root), (index, size, h, proof, EMPTY_ROOT),
        (index, size, h, proof, SOME_HASH), (index, size, h, [*proof, b""], root),
        (index, size, h, [*proof, root], root), (index, size, h, [b"", *proof], root),
        (index, size, h, [root, *proof], root), (index, size, h, proof[:-1], root),
    ]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ 8]) + flipped[i][1:]
        probes.append((index, size, h, flipped, root))
    if len(proof) > 1:
        probes.append((index, size, h, [proof[0], SOME_HASH, *proof[1:]], root))
    for probe in probes:
        if probe[0] < 0:
            continue
        with pytest.raises(ProofError):
            verify_inclusion(*probe)


@pytest.mark.parametrize(("old", "new", "path"), CT_CONSISTENCY)
def test_consistency_proofs_match_the_ct_vectors(old: int, new: int, path: list[str]) -> None:
    nodes = TreeNodes(CT_HASHES[:new])
    proof = consistency_proof(old, new, nodes)
    assert [h.hex() for h in proof] == path
    verify_consistency(old, new, CT_ROOTS[old - 1], CT_ROOTS[new - 1], proof)


@pytest.mark.parametrize(("old", "new", "path"), CT_CONSISTENCY)
def test_corrupted_consistency_proofs_fail(old: int, new: int, path: list[str]) -> None:
    r1, r2 = CT_ROOTS[old - 1], CT_ROOTS[new - 1]
    proof = [bytes.fromhex(p) for p in path]
    probes = [
        (old - 1, new, r1, r2, proof), (old + 1, new, r1, r2, proof), (old ^ 2, new, r1, r2, proof),
        (old, new * 2, r1, r2, proof), (old, new // 2, r1, r2, proof), (old, new, b"WrongRoot", r2, proof),
        (old, new, r1, b"WrongRoot", proof), (old, new, r2, r1, proof), (old, new, r1, r2, []),
        (old, new, r1, r2, [*proof, b""]), (old, new, r1, r2, [*proof, r1]), (old, new, r1, r2, [*proof, r2]),
        (old, new, r1, r2, [b"", *proof]), (old, new, r1, r2, [r1, *proof]), (old, new, r1, r2, [r2, *proof]),
        (old, new, r1, r2, [proof[0], *proof]), (old, new, r1, r2, proof[:-1]),
    ]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ 16]) + flipped[i][1:]
        probes.append((old, new, r1, r2, flipped))
    for probe in probes:
        with pytest.raises(ProofError):
            verify_consistency(*probe)


def test_consistency_edge_cases() -> None:
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(0, 5, EMPTY_ROOT, CT_ROOTS[4], [])  # anything extends the empty tree
    verify_consistency(3, 3, CT_ROOTS[2], CT_ROOTS[2], [])
    for bad in [(3, 3, CT_ROOTS[2], CT_ROOTS[3], []), (1, 0, CT_ROOTS[0], EMPTY_ROOT, []),
                (0, 1, EMPTY_ROOT, CT_ROOTS[0], [EMPTY_ROOT]), (1, 1, CT_ROOTS[0], CT_ROOTS[0], [EMPTY_ROOT]),
                (1, 2, CT_ROOTS[0], CT_ROOTS[1], [])]:
        with pytest.raises(ProofError):
            verify_consistency(*bad)


def test_single_leaf_tree_and_wrong_hash_sizes() -> None:
    h = leaf_hash(b"data")
    verify_inclusion(0, 1, h, [], h)
    for leaf, root in [(h, b""), (b"", h), (b"", b"")]:
        with pytest.raises(ProofError):
            verify_inclusion(0, 1, leaf, [], root)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=300), st.data())
def test_proofs_from_stored_nodes_verify_for_any_size(size: int, data: st.DataObject) -> None:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    nodes = TreeNodes(leaves)
    assert nodes.root == _mth(leaves)
    index = data.draw(st.integers(0, size - 1))
    verify_inclusion(index, size, leaves[index], inclusion_proof(index, size, nodes), nodes.root)
    old = data.draw(st.integers(0, size))
    old_root = _mth(leaves[:old])
    verify_consistency(old, size, old_root, nodes.root, consistency_proof(old, size, nodes))


def test_a_proof_needs_only_log_n_stored_nodes() -> None:
    size = 1_000_003
    asked: list[int] = []

    def fetch(ids: Collection[NodeId]) -> Mapping[NodeId, bytes]:
        asked.append(len(ids))
        return {i: SOME_HASH for i in ids}

    inclusion_proof(123_456, size, fetch)
    consistency_proof(999_999, size, fetch)
    assert len(asked) == 2 and max(asked) <= 2 * size.bit_length()


def test_compact_range_reports_each_completed_node_where_the_store_keeps_it() -> None:
    cr = CompactRange()
    for i in range(64):
        for (level, index), _h in cr.append(leaf_hash(bytes([i]))):
            seq, offset = node_location((level, index))
            assert seq == i and offset == (level - 1) * 32
    again = CompactRange.from_bytes(cr.size, cr.to_bytes())
    assert again.root() == cr.root()


# ---- signed notes: Go's sumdb/note example is a known answer (Ed25519 is deterministic) -------------------
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_NOTE = (PETER_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgK"
              "vqfqdngotpRZb6KE6RyyBwJnAM=\n")


def _peter() -> NoteSigner:
    seed = base64.b64decode(PETER_SKEY.split("+", 4)[4])[1:]
    return NoteSigner("PeterNeumann", Ed25519PrivateKey.from_private_bytes(seed))


def test_signed_note_known_answer() -> None:
    signer = _peter()
    assert signer.verifier.to_key() == PETER_VKEY
    assert signer.sign(PETER_TEXT) == PETER_NOTE
    assert NoteVerifier.from_key(PETER_VKEY).open(PETER_NOTE) == PETER_TEXT


def test_notes_signed_otherwise_are_refused() -> None:
    verifier = NoteVerifier.from_key(PETER_VKEY)
    impostor = NoteSigner("PeterNeumann", Ed25519PrivateKey.generate())
    with pytest.raises(NoteError, match="not signed by"):
        verifier.open(impostor.sign(PETER_TEXT))  # same name, other key: ignored, so nothing verifies
    with pytest.raises(NoteError, match="does not verify"):
        verifier.open(PETER_NOTE.replace("answer", "Answer"))
    # a signature by an unknown key beside the real one is ignored, as C2SP requires
    other = NoteSigner("other.example/log", Ed25519PrivateKey.generate()).sign(PETER_TEXT)
    both = PETER_NOTE + other.split("\n\n", 1)[1]
    assert verifier.open(both) == PETER_TEXT
    for bad in ("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "PeterNeumann", "x+y+z"):
        with pytest.raises(NoteError):
            NoteVerifier.from_key(bad)


def test_checkpoint_text_round_trip_and_origin() -> None:
    signer = _peter()
    cp = Checkpoint("dsnode.test/log", 8, CT_ROOTS[7], ("time 2026-11-25T00:00:00Z",))
    note = cp.sign(signer)
    assert note.startswith("dsnode.test/log\n8\n" + base64.b64encode(CT_ROOTS[7]).decode() + "\ntime ")
    assert Checkpoint.open(note, signer.verifier, "dsnode.test/log") == cp
    with pytest.raises(NoteError, match="another log"):
        Checkpoint.open(note, signer.verifier, "dsnode.test/other")
    for text in ("o\n08\nAAAA\n", "o\n1\n", "o\nx\n" + base64.b64encode(CT_ROOTS[0]).decode() + "\n"):
        with pytest.raises(NoteError):
            Checkpoint.from_text(text)


# ---- RFC 8785 ------------------------------------------------------------------------------------------------
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_canonical_json_agrees_with_the_rfc8785_library(value: object) -> None:
    try:
        expected = rfc8785.dumps(value)  # type: ignore[arg-type]
    except (ValueError, UnicodeError):
        with pytest.raises(CanonicalError):
            canonical_json(value)
        return
    assert canonical_json(value) == expected


def test_canonical_json_known_answers_and_refusals() -> None:
    assert canonical_json({"b": [1, True, None], "a": "é\n\u001f", "€": 1.5, "\U0001f600": 0, "\ue000": 2}) == (
        b'{"a":"\xc3\xa9\\n\\u001f","b":[1,true,null],"\xe2\x82\xac":1.5,"\xf0\x9f\x98\x80":0,'
        b'"\xee\x80\x80":2}')  # U+1F600 sorts before U+E000 by UTF-16 code units
    for bad in ({"x": float("nan")}, {"x": 2**53}, {1: 2}, {"x": b"bytes"}, "\ud800", {"x": datetime.now(UTC)}):
        with pytest.raises(CanonicalError):
            canonical_json(bad)


# ---- entries and a whole log ---------------------------------------------------------------------------------
def _entry(seq: int, prev: str, kind: str = "license.revoked", **payload: object) -> Entry:
    body = payload or {"license": f"lic_{seq}", "dataset": "ds_1", "reason": "测试"}
    return Entry(seq, format_time(datetime(2026, 11, 25, tzinfo=UTC)), kind, "p_actor", f"lic_{seq}", body, prev)


def test_entry_validation() -> None:
    e = _entry(0, GENESIS_PREV)
    assert Entry.from_body(e.body()) == e
    with pytest.raises(EntryError, match="unknown entry kind"):
        _entry(0, GENESIS_PREV, kind="license.stolen", x=1)
    with pytest.raises(EntryError, match="lacks"):
        _entry(0, GENESIS_PREV, kind="access", license="l")
    spaced = json.dumps(e.to_json()).encode()
    with pytest.raises(EntryError, match="canonical"):
        Entry.from_body(spaced)
    with pytest.raises(EntryError):
        Entry(0, "2026-11-25", "access", "a", "s", {}, GENESIS_PREV)


class MemoryLog:
    def __init__(self, n: int, signer: NoteSigner, origin: str) -> None:
        self.rows: list[StoredEntry] = []
        self.tree = CompactRange()
        self.checkpoints: list[StoredCheckpoint] = []
        self.signer, self.origin = signer, origin
        prev = GENESIS_PREV
        for seq in range(n):
            e = _entry(seq, prev)
            body = e.body()
            h = leaf_hash(body)
            nodes = b"".join(x for _, x in self.tree.append(h))
            self.rows.append(StoredEntry(seq, h, body, e.kind, e.actor, e.subject, nodes))
            prev = h.hex()
            if seq % 4 == 3:
                self.checkpoint()

    def checkpoint(self) -> str:
        note = Checkpoint(self.origin, self.tree.size, self.tree.root()).sign(self.signer)
        self.checkpoints.append(StoredCheckpoint(self.tree.size, self.tree.root(), note))
        return note

    def audit(self, **kw: object) -> object:
        def rows() -> Iterator[StoredEntry]:
            yield from self.rows
        return audit(rows(), self.checkpoints, self.signer.verifier, self.origin, **kw)  # type: ignore[arg-type]


@pytest.fixture()
def log() -> MemoryLog:
    return MemoryLog(10, NoteSigner("dsnode.test/log", Ed25519PrivateKey.generate()), "dsnode.test/log")


def test_an_intact_log_audits(log: MemoryLog) -> None:
    report = log.audit()
    assert report.size == 10 and report.checkpoints == 2  # type: ignore[attr-defined]


def test_audit_names_an_edited_entry(log: MemoryLog) -> None:
    row = log.rows[5]
    log.rows[5] = StoredEntry(row.seq, row.entry_hash, row.body.replace("测试".encode(), "测验".encode()),
                              row.kind, row.actor, row.subject, row.nodes)
    with pytest.raises(LedgerTampered, match="entry 5: its body does not match") as info:
        log.audit()
    assert info.value.seq == 5


def test_audit_catches_a_resigned_history(log: MemoryLog) -> None:
    thief = NoteSigner("dsnode.test/log", Ed25519PrivateKey.generate())
    cp = log.checkpoints[0]
    log.checkpoints[0] = StoredCheckpoint(cp.size, cp.root, Checkpoint(log.origin, cp.size, cp.root).sign(thief))
    with pytest.raises(LedgerTampered, match="checkpoint at size 4: the signed head does not verify"):
        log.audit()


def test_receipts_verify_and_refuse_lies(log: MemoryLog) -> None:
    note = log.checkpoint()
    nodes = TreeNodes([r.entry_hash for r in log.rows])
    entry = Entry.from_body(log.rows[7].body)
    receipt = Receipt(entry, 10, inclusion_proof(7, 10, nodes), note)
    again = Receipt.from_json(json.loads(json.dumps(receipt.to_json())))
    assert verify_receipt(again, log.signer.verifier, log.origin).size == 10
    other = Entry.from_body(log.rows[6].body)
    with pytest.raises(ReceiptError, match="not in the signed tree"):
        verify_receipt(Receipt(other, 10, receipt.inclusion, note), log.signer.verifier)
    forged = NoteSigner(log.origin, Ed25519PrivateKey.generate())
    with pytest.raises(ReceiptError, match="signed head"):
        verify_receipt(receipt, forged.verifier)
