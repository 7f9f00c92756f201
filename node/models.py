"""Typed SQLAlchemy 2 models: the node's persistent state. Schema changes go through Alembic (``node/migrations``).

Times are timezone-aware UTC (stored naive-UTC on SQLite, ``timestamptz`` on PostgreSQL). API tokens are stored only
as keyed hashes (see ``node.identity``); nothing here holds a secret in clear.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "ROLES", "ApiToken", "Base", "CasbinRule", "ChainState", "Contribution", "Dataset", "HostedPartition",
    "LedgerCheckpoint", "LedgerEntry", "LedgerState", "License", "Listing", "Participant", "Partition", "Peer",
    "PrivacyBudget", "PrivacyCharge", "Quote", "Settlement", "utcnow",
]

ROLES = ("operator", "provider", "buyer", "exchange")
MODES = ("rows", "aggregate", "model")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A datetime that is always timezone-aware UTC in Python, whatever the backend keeps."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UtcDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Participant(Base):
    __tablename__ = "participants"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    address: Mapped[str | None] = mapped_column(String(42), default=None,
                                                doc="EVM address (checksummed) that on-chain payouts go to")


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    participant_id: Mapped[str] = mapped_column(ForeignKey("participants.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    owner_id: Mapped[str] = mapped_column(ForeignKey("participants.id"), index=True)
    listed: Mapped[bool] = mapped_column(Boolean, default=True)
    manifest: Mapped[dict[str, Any]] = mapped_column()
    schema_fields: Mapped[list[Any]] = mapped_column()
    arrow_schema: Mapped[str] = mapped_column(Text, doc="base64 of the serialized Arrow schema")
    location: Mapped[str] = mapped_column(String(500), doc="Parquet file, relative to the data dir")
    num_rows: Mapped[int] = mapped_column(BigInteger)
    num_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), doc="SHA-256 of the stored Parquet file")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    release_policy: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None,
                                                                   doc="privacy.policy.ReleasePolicy JSON")
    pii: Mapped[list[Any] | None] = mapped_column(JSON, default=None, doc="PII findings at publish")
    quality: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None, doc="pricing.quality report JSON")
    grade: Mapped[str | None] = mapped_column(String(1), default=None, doc="A-E; E is not tradable")


class License(Base):
    __tablename__ = "licenses"
    __table_args__ = (Index("ix_licenses_buyer_dataset", "buyer_id", "dataset_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    buyer_id: Mapped[str] = mapped_column(ForeignKey("participants.id"))
    granted_by: Mapped[str] = mapped_column(ForeignKey("participants.id"))
    mode: Mapped[str] = mapped_column(String(20))
    columns: Mapped[list[Any] | None] = mapped_column(JSON, default=None, doc="allowed columns; null = all")
    terms: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_by: Mapped[str | None] = mapped_column(String(40), default=None)
    revoke_reason: Mapped[str | None] = mapped_column(String(500), default=None)


class CasbinRule(Base):
    """Casbin policy rows (``p``, ``g``, ``g2`` …), persisted beside the state they govern."""

    __tablename__ = "casbin_rule"
    __table_args__ = (Index("ix_casbin_rule_lookup", "ptype", "v0", "v1", "v2"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ptype: Mapped[str] = mapped_column(String(8))
    v0: Mapped[str] = mapped_column(String(200), default="")
    v1: Mapped[str] = mapped_column(String(200), default="")
    v2: Mapped[str] = mapped_column(String(200), default="")
    v3: Mapped[str] = mapped_column(String(200), default="")
    v4: Mapped[str] = mapped_column(String(200), default="")
    v5: Mapped[str] = mapped_column(String(200), default="")


# SQLite makes an INTEGER PRIMARY KEY the rowid itself (no second index to maintain on every append).
_Seq = BigInteger().with_variant(Integer, "sqlite")


class LedgerEntry(Base):
    """One ledger entry as stored (see ``ledger.store``): ``body`` is the RFC 8785 entry, ``entry_hash`` its leaf
    hash, ``nodes`` the interior Merkle nodes its append completed. ``kind``/``actor``/``subject`` are copies
    of body fields for lookups; verification re-derives them."""

    __tablename__ = "ledger_entries"
    __table_args__ = (Index("ix_ledger_entries_subject", "subject", "kind"),)

    seq: Mapped[int] = mapped_column(_Seq, primary_key=True, autoincrement=False)
    entry_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    kind: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(64))
    nodes: Mapped[bytes] = mapped_column(LargeBinary)


class LedgerState(Base):
    """The single row (``id`` = 1) that serializes appends: entry count and the tree's right border."""

    __tablename__ = "ledger_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger)
    frontier: Mapped[bytes] = mapped_column(LargeBinary, doc="compact range: one hash per set bit of size")
    last_hash: Mapped[bytes] = mapped_column(LargeBinary, doc="hash of entry size-1 (empty before the first)")


class LedgerCheckpoint(Base):
    """A signed tree head the node issued (a C2SP checkpoint note)."""

    __tablename__ = "ledger_checkpoints"

    size: Mapped[int] = mapped_column(_Seq, primary_key=True, autoincrement=False)
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PrivacyBudget(Base):
    """An ε budget in exact integer units (``privacy.budget``): one per licence in a DP mode (``scope`` =
    ``license``) and one global cap per dataset (``scope`` = ``dataset``). ``spent`` only grows."""

    __tablename__ = "privacy_budgets"

    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    scope_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    total_units: Mapped[int] = mapped_column(BigInteger)
    spent_units: Mapped[int] = mapped_column(BigInteger, default=0)


class PrivacyCharge(Base):
    """One charge against the budgets, committed before the data it pays for is read."""

    __tablename__ = "privacy_charges"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    license_id: Mapped[str] = mapped_column(ForeignKey("licenses.id"), index=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"))
    mode: Mapped[str] = mapped_column(String(20))
    epsilon_units: Mapped[int] = mapped_column(BigInteger)
    delta: Mapped[float] = mapped_column(Float, default=0.0)
    query_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None,
                                                          doc="what was released: mechanism, accountant state")


class Quote(Base):
    """A signed price offer; accepting it (once) creates a licence."""

    __tablename__ = "quotes"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    buyer_id: Mapped[str] = mapped_column(ForeignKey("participants.id"), index=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON, doc="pricing.Quote JSON, exactly as signed")
    signature: Mapped[str] = mapped_column(String(200), doc="base64 Ed25519 over the RFC 8785 body")
    price_fen: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    license_id: Mapped[str | None] = mapped_column(ForeignKey("licenses.id"), index=True, default=None,
                                                   doc="the licence its acceptance created or extended")
    extends_id: Mapped[str | None] = mapped_column(ForeignKey("licenses.id"), default=None,
                                                   doc="the licence whose scope this quote extends")
    accepted_at: Mapped[datetime | None] = mapped_column(default=None)


class Contribution(Base):
    """One contributor's recorded work on a dataset (volume, annotation, measured value), with input hashes."""

    __tablename__ = "contributions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    contributor_id: Mapped[str] = mapped_column(ForeignKey("participants.id"))
    kind: Mapped[str] = mapped_column(String(20), doc="volume | annotation | value | valuation")
    amount: Mapped[str] = mapped_column(Text, doc="exact decimal (valuation: its JSON)")
    inputs_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Settlement(Base):
    """A sale paid out to the dataset's contributors; payouts sum exactly to the price."""

    __tablename__ = "settlements"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    quote_id: Mapped[str] = mapped_column(ForeignKey("quotes.id"), unique=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    price_fen: Mapped[int] = mapped_column(BigInteger)
    payouts: Mapped[dict[str, Any]] = mapped_column(JSON, doc="participant id -> fen")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChainState(Base):
    """What the node keeps about its chain: contract deployments per chain id, the mirroring cursor."""

    __tablename__ = "chain_state"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON)


class Peer(Base):
    """Another node of the data space: where it is, the key its catalogs and grants are signed with."""

    __tablename__ = "peers"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    http_url: Mapped[str] = mapped_column(String(500))
    flight_url: Mapped[str] = mapped_column(String(500))
    public_key: Mapped[str] = mapped_column(String(64), doc="Ed25519 public key, hex")
    follow: Mapped[bool] = mapped_column(Boolean, default=True, doc="pull its catalog into the listings")
    cursor: Mapped[int] = mapped_column(BigInteger, default=0, doc="its ledger size at the last catalog pull")
    synced_at: Mapped[datetime | None] = mapped_column(default=None)
    added_at: Mapped[datetime] = mapped_column(default=utcnow)


class Listing(Base):
    """A dataset listed by a followed peer, as its owner signed it."""

    __tablename__ = "listings"

    peer: Mapped[str] = mapped_column(ForeignKey("peers.name"), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Partition(Base):
    """A part of one of this node's datasets that a peer hosts (the owner's side)."""

    __tablename__ = "partitions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    peer: Mapped[str] = mapped_column(ForeignKey("peers.name"))
    num_rows: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    statement: Mapped[dict[str, Any]] = mapped_column(JSON, doc="the host's signed statement")
    added_at: Mapped[datetime] = mapped_column(default=utcnow)


class HostedPartition(Base):
    """A part of a peer's dataset stored and served here (the host's side)."""

    __tablename__ = "hosted_partitions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner_peer: Mapped[str] = mapped_column(ForeignKey("peers.name"))
    dataset_id: Mapped[str] = mapped_column(String(40))
    uploaded_by: Mapped[str] = mapped_column(ForeignKey("participants.id"))
    location: Mapped[str] = mapped_column(String(500))
    arrow_schema: Mapped[str] = mapped_column(Text)
    num_rows: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
