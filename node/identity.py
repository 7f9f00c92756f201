"""Participants' API tokens: issued once, stored only as keyed hashes, checked on every call of both planes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from node.errors import Unauthenticated
from node.models import ApiToken, Participant

__all__ = ["TOKEN_PREFIX", "Principal", "authenticate", "hash_token", "new_id", "new_token"]

TOKEN_PREFIX = "dsn_"  # noqa: S105 - a public prefix, not a secret
_MAX_TOKEN_LEN = 200


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    id: str
    name: str
    role: str


def new_id(prefix: str) -> str:
    """A random identifier such as ``ds_3f9a…`` (80 bits; never derived from user input)."""
    return f"{prefix}_{secrets.token_hex(10)}"


def new_token() -> str:
    """A bearer token with 256 bits of entropy; shown to its owner once and never stored."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(pepper: bytes, token: str) -> str:
    """HMAC-SHA256(pepper, token) as hex: a stolen database alone does not let anyone test tokens."""
    return hmac.new(pepper, token.encode("utf-8"), hashlib.sha256).hexdigest()


def authenticate(session: Session, pepper: bytes, token: str | None, now: datetime) -> Principal:
    """Resolve a bearer token to its participant or raise :class:`Unauthenticated` (one message for every
    failure, so a caller cannot tell a forged token from an expired or revoked one)."""
    if not token or len(token) > _MAX_TOKEN_LEN or not token.startswith(TOKEN_PREFIX):
        raise Unauthenticated("missing or invalid credentials")
    row = session.execute(
        select(ApiToken, Participant)
        .join(Participant, Participant.id == ApiToken.participant_id)
        .where(ApiToken.token_hash == hash_token(pepper, token))
    ).first()
    if row is None:
        raise Unauthenticated("missing or invalid credentials")
    tok, participant = row
    if tok.revoked_at is not None or (tok.expires_at is not None and tok.expires_at <= now):
        raise Unauthenticated("missing or invalid credentials")
    return Principal(participant.id, participant.name, participant.role)
