"""Ledger entries: what is recorded, how it is encoded and how entries chain.

An entry is the JSON object ``{"v": 1, "seq", "time", "kind", "actor", "subject", "payload", "prev"}``; its
*body* is that object's RFC 8785 encoding and its *hash* is the RFC 9162 leaf hash of the body,
``SHA-256(0x00 ‖ body)``. ``prev`` is the hex hash of the entry before (64 zeros for entry 0), so the entries form
a hash chain and, as leaves, a Merkle tree. ``time`` is RFC 3339 UTC with microseconds; ``actor`` is the
participant (or ``node``) that caused the entry; ``subject`` the id of the resource it is about.

:data:`KINDS` lists every kind and the payload members it requires: adding a kind is one line there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ledger.canonical import CanonicalError, canonical_json
from ledger.merkle import leaf_hash

__all__ = ["ENTRY_VERSION", "GENESIS_PREV", "KINDS", "Entry", "EntryError", "format_time"]

ENTRY_VERSION = 1
GENESIS_PREV = "00" * 32

KINDS: Mapping[str, frozenset[str]] = {
    "participant.created": frozenset({"participant", "name", "role"}),
    "participant.tokens_revoked": frozenset({"participant", "tokens"}),
    "dataset.published": frozenset({"dataset", "name", "owner", "sha256", "rows", "bytes", "listed"}),
    "license.granted": frozenset({"license", "dataset", "buyer", "mode", "columns", "expires_at", "terms"}),
    "license.revoked": frozenset({"license", "dataset", "reason"}),
    "access": frozenset({"license", "dataset", "query", "rows", "batches", "outcome"}),
    "policy.loosened": frozenset({"dataset", "column", "detected", "before", "after", "reason"}),
    "quality.graded": frozenset({"dataset", "grade", "score", "tradable", "gates", "method", "policy_version",
                                 "input_sha256", "report_sha256"}),
    "quote.issued": frozenset({"quote", "dataset", "buyer", "charge_fen", "expires_at", "body_sha256"}),
    "quote.accepted": frozenset({"quote", "license", "dataset", "buyer", "charge_fen"}),
    "license.extended": frozenset({"license", "quote", "columns", "rows", "expires_at", "epsilon"}),
    "contribution.recorded": frozenset({"dataset", "contributor", "kind", "amount", "inputs_sha256"}),
    "settlement": frozenset({"settlement", "quote", "license", "dataset", "price_fen", "payouts", "shares_sha256"}),
    "peer.added": frozenset({"peer", "http_url", "flight_url", "public_key"}),
    "partition.hosted": frozenset({"partition", "owner", "dataset", "rows", "sha256"}),
    "dataset.partition_added": frozenset({"dataset", "partition", "peer", "rows", "sha256"}),
    "checkpoint.anchored": frozenset({"size", "root", "chain_id", "contract", "tx", "block"}),
    "budget.charged": frozenset({"license", "dataset", "mode", "charge", "epsilon", "delta", "query",
                                 "license_remaining", "dataset_remaining"}),
}

_FIELDS = frozenset({"v", "seq", "time", "kind", "actor", "subject", "payload", "prev"})
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")


class EntryError(ValueError):
    """An entry is malformed: unknown kind, missing payload member, bad field, or a non-canonical body."""


def format_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise EntryError("entry times must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    time: str
    kind: str
    actor: str
    subject: str
    payload: Mapping[str, Any]
    prev: str

    def __post_init__(self) -> None:
        if isinstance(self.seq, bool) or not isinstance(self.seq, int) or self.seq < 0:
            raise EntryError("seq must be a non-negative integer")
        if not isinstance(self.time, str) or not _TIME.fullmatch(self.time):
            raise EntryError("time must be RFC 3339 UTC with microseconds")
        required = KINDS.get(self.kind) if isinstance(self.kind, str) else None
        if required is None:
            raise EntryError(f"unknown entry kind {self.kind!r}")
        for name in ("actor", "subject"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _ID.fullmatch(value):
                raise EntryError(f"{name} must be an identifier of 1-64 characters")
        if not isinstance(self.payload, Mapping):
            raise EntryError("payload must be an object")
        missing = required - self.payload.keys()
        if missing:
            raise EntryError(f"{self.kind} payload lacks {', '.join(sorted(missing))}")
        if not isinstance(self.prev, str) or not _HEX64.fullmatch(self.prev):
            raise EntryError("prev must be 64 lowercase hex digits")

    def to_json(self) -> dict[str, Any]:
        return {"v": ENTRY_VERSION, "seq": self.seq, "time": self.time, "kind": self.kind, "actor": self.actor,
                "subject": self.subject, "payload": dict(self.payload), "prev": self.prev}

    def body(self) -> bytes:
        """The RFC 8785 bytes that are hashed and stored."""
        try:
            return canonical_json(self.to_json())
        except CanonicalError as exc:
            raise EntryError(f"payload is not canonical JSON: {exc}") from exc

    @property
    def hash(self) -> bytes:
        return leaf_hash(self.body())

    @classmethod
    def from_json(cls, obj: Any) -> Entry:
        if not isinstance(obj, dict) or obj.keys() != _FIELDS:
            raise EntryError("an entry has exactly the fields " + ", ".join(sorted(_FIELDS)))
        if obj["v"] != ENTRY_VERSION or isinstance(obj["v"], bool):
            raise EntryError(f"unsupported entry version {obj['v']!r}")
        return cls(seq=obj["seq"], time=obj["time"], kind=obj["kind"], actor=obj["actor"],
                   subject=obj["subject"], payload=obj["payload"], prev=obj["prev"])

    @classmethod
    def from_body(cls, body: bytes) -> Entry:
        """Parse stored bytes, refusing anything that is not exactly the canonical encoding of an entry."""
        try:
            obj = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise EntryError("the body is not JSON") from exc
        entry = cls.from_json(obj)
        if entry.body() != body:
            raise EntryError("the body is not in RFC 8785 canonical form")
        return entry
