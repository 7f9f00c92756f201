"""Signed quotes that become licences, contribution shares, and settlements that pay contributors exactly.

A quote is priced by ``pricing`` from the dataset's listing (manifest ``pricing``: ``base_fen``,
``column_weights``, ``tariff``), its quality grade and catalog scarcity (M near-substitutes, D distinct paying
buyers in the last 90 days — frozen into the quote), signed with the node's Ed25519 key over its RFC 8785 body and
kept. Accepting checks the signature, that the presented quote is the one issued, that it still recomputes, that it
has not expired and that the caller is its buyer; then, in one transaction: the licence (policy links, budget),
``quote.accepted``, ``license.granted``, the settlement of the sale among the dataset's contributors and
``settlement``. Accepting twice returns the same licence.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger import canonical_json
from node.authz import Authorizer
from node.budget import BudgetStore
from node.db import Database
from node.errors import Conflict, InvalidArgument, NotFound, PermissionDenied
from node.identity import Principal, new_id
from node.ledger_store import SqlLedger
from node.models import Contribution, Dataset, License, Participant, Quote, Settlement
from node.storage import DatasetStore
from pricing import DEFAULT_TARIFF, Fen, Listing, PricingError, Tariff, Terms, make_quote, price_basis, recompute
from pricing import Quote as PricedQuote
from pricing.contribution import (
    Contributor,
    ShareInputs,
    Valuation,
    contribution_shares,
    count_by_contributor,
    inputs_digest,
    value_by_contributor,
)
from pricing.profile import row_hashes
from pricing.scarcity import CatalogProfile, count_substitutes
from pricing.settlement import settle
from pricing.shapley import knn_shapley
from privacy.budget import BudgetError, parse_epsilon

__all__ = ["Measures", "QuoteRequest", "Trading"]

QUOTE_TTL = timedelta(minutes=15)
_BUYERS_WINDOW = timedelta(days=90)
_DEFAULT_BASE_FEN = 100_000


@dataclass(frozen=True, slots=True)
class QuoteRequest:
    """``{"mode", "columns"?, "rows"?, "epsilon"?, "days", "purpose"?}``: columns default to all, rows to all."""

    mode: str
    days: int
    columns: tuple[str, ...] | None = None
    rows: int | None = None
    epsilon: int = 0
    purpose: str | None = None
    license: str | None = None  # extend this licence: charge price(held ∪ requested) − price(held)

    @classmethod
    def from_json(cls, obj: Any) -> QuoteRequest:
        if not isinstance(obj, dict) or not set(obj) <= {"mode", "columns", "rows", "epsilon", "days", "purpose",
                                                         "license"}:
            raise InvalidArgument("a quote request has mode, days, and optionally columns, rows, epsilon, purpose",
                                  code="invalid_quote_request")
        mode, days, rows = obj.get("mode"), obj.get("days"), obj.get("rows")
        if mode not in ("rows", "aggregate", "model"):
            raise InvalidArgument("mode must be rows, aggregate or model", code="invalid_quote_request")
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3650:
            raise InvalidArgument("days must be an integer 1-3650", code="invalid_quote_request")
        if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 1):
            raise InvalidArgument("rows must be a positive integer", code="invalid_quote_request")
        columns = obj.get("columns")
        if columns is not None and (not isinstance(columns, list) or not columns
                                    or not all(isinstance(c, str) and c for c in columns)):
            raise InvalidArgument("columns must be a non-empty list of names", code="invalid_quote_request")
        epsilon = 0
        if mode != "rows":
            try:
                epsilon = int(parse_epsilon(obj.get("epsilon")))
            except BudgetError as exc:
                raise InvalidArgument(str(exc), code=exc.code) from exc
        elif obj.get("epsilon") is not None:
            raise InvalidArgument("rows quotes carry no epsilon", code="invalid_quote_request")
        purpose = obj.get("purpose")
        if purpose is not None and not isinstance(purpose, str):
            raise InvalidArgument("purpose must be a string", code="invalid_quote_request")
        license_id = obj.get("license")
        if license_id is not None and (not isinstance(license_id, str) or not 0 < len(license_id) <= 64):
            raise InvalidArgument("license must be a licence id", code="invalid_quote_request")
        return cls(mode, days, tuple(columns) if columns else None, rows, epsilon, purpose, license_id)


def _pricing_error(exc: PricingError) -> Exception:
    if exc.code == "not_tradable":
        return PermissionDenied("datasets graded E are not tradable", code="not_tradable")
    return InvalidArgument(str(exc), code=exc.code)


class Trading:
    def __init__(self, db: Database, authz: Authorizer, ledger: SqlLedger, budgets: BudgetStore,
                 store: DatasetStore, key: Ed25519PrivateKey, clock: Callable[[], datetime]) -> None:
        self.db, self.authz, self.ledger, self.budgets, self.store = db, authz, ledger, budgets, store
        self._key = key
        self._clock = clock
        self._catalog: tuple[int, list[CatalogProfile]] = (-1, [])

    # ---- quotes --------------------------------------------------------------------------------------------
    def _profiles(self, session: Session) -> list[CatalogProfile]:
        count = session.scalar(select(func.count()).select_from(Dataset)) or 0
        if self._catalog[0] != count:  # datasets are only ever added: the count is a version
            rows = session.execute(select(Dataset.id, Dataset.schema_fields, Dataset.manifest)).all()
            self._catalog = (count, [CatalogProfile(i, frozenset(f["name"] for f in fields),
                                                    frozenset(m.get("tags", []))) for i, fields, m in rows])
        return self._catalog[1]

    def quote(self, actor: Principal, ds: Dataset, request: QuoteRequest) -> dict[str, Any]:
        """Price ``request`` on ``ds`` (which the caller may see) and return the signed quote."""
        if actor.role != "buyer":
            raise PermissionDenied("only buyers ask for quotes")
        cfg = ds.manifest.get("pricing", {}) if isinstance(ds.manifest.get("pricing", {}), dict) else {}
        names = [f["name"] for f in ds.schema_fields]
        now = self._clock()
        try:
            tariff = Tariff.from_json(cfg["tariff"]) if "tariff" in cfg else DEFAULT_TARIFF
            weights = {n: int(cfg.get("column_weights", {}).get(n, 1)) for n in names}
            listing = Listing(ds.id, Fen(int(cfg.get("base_fen", _DEFAULT_BASE_FEN))), ds.grade or "E",
                              max(ds.num_rows, 1), weights)
            with self.db.reader() as session:
                profiles = self._profiles(session)
                target = next(p for p in profiles if p.dataset == ds.id)
                buyers = session.scalar(select(func.count(func.distinct(Quote.buyer_id))).where(
                    Quote.dataset_id == ds.id, Quote.license_id.is_not(None),
                    Quote.accepted_at >= now - _BUYERS_WINDOW)) or 0
            basis = price_basis(listing, tariff, mode=request.mode, purpose=request.purpose,
                                substitutes=count_substitutes(target, profiles), buyers=buyers)
            terms = Terms(request.rows or ds.num_rows, frozenset(request.columns or names), request.epsilon,
                          request.days)
            held = self._held(actor, ds, request) if request.license else None
            priced = make_quote(basis, terms, id=new_id("q"), buyer=actor.id, issued_at=now.isoformat(),
                                expires_at=(now + QUOTE_TTL).isoformat(), held=held)
        except PricingError as exc:
            raise _pricing_error(exc) from exc
        body = priced.to_json()
        signature = base64.b64encode(self._key.sign(canonical_json(body))).decode("ascii")
        with self.db.transaction() as session:
            session.add(Quote(id=priced.id, dataset_id=ds.id, buyer_id=actor.id, body=body, signature=signature,
                              price_fen=priced.charge, created_at=now, expires_at=now + QUOTE_TTL,
                              extends_id=request.license))
            self.ledger.append(session, "quote.issued", actor.id, priced.id, {
                "quote": priced.id, "dataset": ds.id, "buyer": actor.id, "charge_fen": priced.charge,
                "expires_at": body["expires_at"], "body_sha256": hashlib.sha256(canonical_json(body)).hexdigest()})
        return {"quote": body, "signature": signature}

    def _held(self, actor: Principal, ds: Dataset, request: QuoteRequest) -> Terms:
        """The scope a licence holds: the terms of the quote that last created or extended it."""
        with self.db.reader() as session:
            lic = session.get(License, request.license)
            last = session.get(Quote, lic.terms.get("quote")) if lic is not None else None
        if lic is None or lic.buyer_id != actor.id or lic.dataset_id != ds.id:
            raise NotFound("no such licence", code="license_not_found")
        if lic.revoked_at is not None or last is None or lic.mode != request.mode:
            raise InvalidArgument("only a live licence bought through a quote, in the same mode, can be extended",
                                  code="invalid_quote_request")
        return Terms.from_json(last.body["scope"]["terms"])

    def accept(self, actor: Principal, quote_id: str, presented: Any) -> tuple[License, bool]:
        """Turn a quote into a licence; returns the licence and whether this call created it."""
        with self.db.reader() as session:
            row = session.get(Quote, quote_id)
        if row is None or row.buyer_id != actor.id:
            raise NotFound("no such quote", code="quote_not_found")
        body, signature = _presented(presented)
        try:
            self._key.public_key().verify(base64.b64decode(signature, validate=True), canonical_json(body))
        except (InvalidSignature, binascii.Error, ValueError) as exc:
            raise PermissionDenied("the quote's signature does not verify", code="quote_forged") from exc
        if body != row.body or body.get("id") != quote_id:
            raise PermissionDenied("the quote differs from the one issued", code="quote_altered")
        try:
            priced = PricedQuote.from_json(body)
            charge = recompute(priced)
        except PricingError as exc:
            raise PermissionDenied("the quote does not recompute", code="quote_altered") from exc
        if row.license_id is not None:
            return self._license(row.license_id), False
        now = self._clock()
        if now >= row.expires_at:
            raise Conflict("the quote has expired; ask for a new one", code="quote_expired")
        with self.db.transaction() as session:
            locked = session.get(Quote, quote_id, with_for_update=True)
            assert locked is not None
            if locked.license_id is not None:  # a concurrent accept won
                return self._license(locked.license_id), False
            ds = session.get(Dataset, locked.dataset_id)
            assert ds is not None
            scope = priced.scope.terms
            if locked.extends_id is not None:
                lic = self._extend(session, locked, priced, actor, now)
                self._settle(session, ds, quote_id, lic.id, Fen(charge))
                return lic, True
            lic = License(id=new_id("lic"), dataset_id=ds.id, buyer_id=actor.id, granted_by=ds.owner_id,
                          mode=priced.mode, columns=sorted(scope.columns),
                          terms={"quote": quote_id, "price_fen": charge, "rows": scope.rows,
                                 **({"purpose": priced.basis.purpose} if priced.basis.purpose else {})},
                          created_at=now, expires_at=now + timedelta(days=scope.days))
            session.add(lic)
            session.flush()
            self.authz.license_granted(session, lic, ds.owner_id)
            if priced.mode != "rows":
                self.budgets.open(session, "license", lic.id, scope.epsilon)
            locked.license_id, locked.accepted_at = lic.id, now
            self.ledger.append(session, "quote.accepted", actor.id, quote_id, {
                "quote": quote_id, "license": lic.id, "dataset": ds.id, "buyer": actor.id, "charge_fen": charge})
            self.ledger.append(session, "license.granted", ds.owner_id, lic.id, {
                "license": lic.id, "dataset": ds.id, "buyer": actor.id, "mode": lic.mode, "columns": lic.columns,
                "expires_at": lic.expires_at.isoformat() if lic.expires_at else None, "terms": lic.terms,
                "epsilon": None})
            self._settle(session, ds, quote_id, lic.id, Fen(charge))
        return lic, True

    def _extend(self, session: Session, quote: Quote, priced: PricedQuote, actor: Principal, now: datetime
                ) -> License:
        """Grow the licence's scope to ``held ∪ requested`` (the quote charged only the difference)."""
        lic = session.get(License, quote.extends_id, with_for_update=True)
        assert lic is not None and priced.held is not None
        last = session.get(Quote, lic.terms.get("quote"))
        if lic.revoked_at is not None or last is None or last.body["scope"]["terms"] != priced.held.terms.to_json():
            raise Conflict("the licence changed since the quote was issued; ask for a new one", code="quote_stale")
        scope, held = priced.scope.terms, priced.held.terms
        lic.columns = sorted(scope.columns)
        lic.expires_at = lic.created_at + timedelta(days=scope.days)
        lic.terms = {**lic.terms, "quote": quote.id, "rows": scope.rows,
                     "price_fen": int(lic.terms.get("price_fen", 0)) + int(priced.charge)}
        if lic.mode != "rows" and scope.epsilon > held.epsilon:
            self.budgets.top_up(session, lic.id, scope.epsilon - held.epsilon)
        quote.license_id, quote.accepted_at = lic.id, now
        self.ledger.append(session, "quote.accepted", actor.id, quote.id, {
            "quote": quote.id, "license": lic.id, "dataset": lic.dataset_id, "buyer": actor.id,
            "charge_fen": int(priced.charge)})
        self.ledger.append(session, "license.extended", actor.id, lic.id, {
            "license": lic.id, "quote": quote.id, "columns": lic.columns, "rows": scope.rows,
            "expires_at": lic.expires_at.isoformat(), "epsilon": scope.epsilon})
        return lic

    def _license(self, license_id: str) -> License:
        with self.db.reader() as session:
            lic = session.get(License, license_id)
        assert lic is not None
        return lic

    # ---- contributions and settlement ----------------------------------------------------------------------
    def measure(self, manifest: dict[str, Any], owner: str, location: str) -> Measures:
        """What each contributor supplied, read before the publication's transaction (no lock held meanwhile):
        rows after de-duplication (manifest ``contributors``: ``{"column", "members": {value: participant id}}``;
        rows of other values, and every row without it, are the owner's), and — for a labelled dataset with
        declared numeric bounds — the summed exact KNN-Shapley value of their rows on a committed validation split
        (rows whose content hash is 0 mod 10, at most 500; at most 50,000 training rows, else not measured)."""
        declared = manifest.get("contributors")
        table = self.store.table(location)
        hashes = _row_hashes(table)
        first = _first_occurrences(hashes)
        if isinstance(declared, dict) and declared.get("column") in table.column_names:
            members = {str(k): str(v) for k, v in dict(declared.get("members", {})).items()}
            values = pc.cast(table[declared["column"]], pa.string()).to_numpy(zero_copy_only=False)
            owners = np.array([members.get(str(v), owner) for v in values], dtype=object)
        else:
            owners = np.full(table.num_rows, owner, dtype=object)
        volumes = {str(k): int(v) for k, v in count_by_contributor(owners, first).items()} if table.num_rows \
            else {owner: 0}
        return Measures(volumes, *_shapley(table, manifest, owners, hashes, first))

    def record_measures(self, session: Session, dataset_id: str, owner: str, measures: Measures) -> None:
        known = set(session.scalars(select(Participant.id).where(Participant.id.in_(list(measures.volumes)))))
        if set(measures.volumes) - known:
            raise InvalidArgument("manifest contributors name participants this node does not know",
                                  code="invalid_contribution")
        for who, rows in sorted(measures.volumes.items()):
            if rows:
                self._contribution(session, dataset_id, owner, who, "volume", str(rows))
        for who, value in sorted(measures.values.items()):
            self._contribution(session, dataset_id, owner, who, "value", _decimal(value))
        if measures.valuation is not None:
            self._contribution(session, dataset_id, owner, owner, "valuation",
                               json.dumps(measures.valuation.to_json(), sort_keys=True))

    def annotate(self, actor: Principal, ds: Dataset, units: object) -> dict[str, Any]:
        """A co-provider (a declared member) or the owner records annotation work on the dataset."""
        declared = ds.manifest.get("contributors")
        members = set(dict(declared.get("members", {})).values()) if isinstance(declared, dict) else set()
        if actor.id != ds.owner_id and actor.id not in members:
            raise PermissionDenied("only the owner and declared contributors record contributions")
        if isinstance(units, bool) or not isinstance(units, int) or not 0 < units <= 10**12:
            raise InvalidArgument("annotation_units must be a positive integer", code="invalid_contribution")
        with self.db.transaction() as session:
            self._contribution(session, ds.id, actor.id, actor.id, "annotation", str(units))
        return self.shares(ds)

    def _contribution(self, session: Session, dataset_id: str, actor: str, who: str, kind: str, amount: str
                      ) -> None:
        digest = hashlib.sha256(canonical_json({"dataset": dataset_id, "contributor": who, "kind": kind,
                                                "amount": amount})).hexdigest()
        session.add(Contribution(id=new_id("ctb"), dataset_id=dataset_id, contributor_id=who, kind=kind,
                                 amount=amount, inputs_sha256=digest, created_at=self._clock()))
        self.ledger.append(session, "contribution.recorded", actor, dataset_id, {
            "dataset": dataset_id, "contributor": who, "kind": kind, "amount": amount, "inputs_sha256": digest})

    def _share_inputs(self, session: Session, ds: Dataset) -> ShareInputs:
        amounts: dict[str, dict[str, Fraction]] = {}
        valuation = None
        for who, kind, amount in session.execute(select(Contribution.contributor_id, Contribution.kind,
                                                        Contribution.amount)
                                                 .where(Contribution.dataset_id == ds.id)
                                                 .order_by(Contribution.created_at)):
            if kind == "valuation":
                valuation = Valuation.from_json(json.loads(amount))
                continue
            mine = amounts.setdefault(who, {"volume": Fraction(0), "annotation": Fraction(0), "value": Fraction(0)})
            mine[kind] += Fraction(amount)
        if not amounts:
            amounts[ds.owner_id] = {"volume": Fraction(max(ds.num_rows, 1)), "annotation": Fraction(0),
                                    "value": Fraction(0)}
        return ShareInputs(ds.id, tuple(Contributor(who, int(a["volume"]), int(a["annotation"]),
                                                    a["value"] if valuation else Fraction(0))
                                        for who, a in sorted(amounts.items())), valuation=valuation)

    def shares(self, ds: Dataset) -> dict[str, Any]:
        with self.db.reader() as session:
            inputs = self._share_inputs(session, ds)
        shares = contribution_shares(inputs)
        return {"dataset": ds.id, "inputs": inputs.to_json(), "inputs_sha256": inputs_digest(inputs),
                "shares": {who: f"{s.numerator}/{s.denominator}" for who, s in shares.items()}}

    def _settle(self, session: Session, ds: Dataset, quote_id: str, license_id: str, price: Fen) -> None:
        inputs = self._share_inputs(session, ds)
        shares: dict[str, Fraction] = contribution_shares(inputs)
        payouts = {who: int(fen) for who, fen in settle(price, shares).items()}
        settlement = Settlement(id=new_id("stl"), quote_id=quote_id, dataset_id=ds.id, price_fen=price,
                                payouts=payouts, created_at=self._clock())
        session.add(settlement)
        self.ledger.append(session, "settlement", ds.owner_id, settlement.id, {
            "settlement": settlement.id, "quote": quote_id, "license": license_id, "dataset": ds.id,
            "price_fen": int(price), "payouts": payouts, "shares_sha256": inputs_digest(inputs)})

    def settlements(self, ds: Dataset) -> list[dict[str, Any]]:
        with self.db.reader() as session:
            rows = session.scalars(select(Settlement).where(Settlement.dataset_id == ds.id)
                                   .order_by(Settlement.created_at)).all()
        return [{"id": s.id, "quote": s.quote_id, "price_fen": s.price_fen, "payouts": s.payouts,
                 "created_at": s.created_at.isoformat()} for s in rows]


def _presented(obj: Any) -> tuple[dict[str, Any], str]:
    if not isinstance(obj, dict) or not isinstance(obj.get("quote"), dict) or not isinstance(obj.get("signature"),
                                                                                             str):
        raise InvalidArgument("send back the quote and signature you received", code="invalid_quote")
    return obj["quote"], obj["signature"]


@dataclass(frozen=True, slots=True)
class Measures:
    volumes: dict[str, int]
    values: dict[str, Fraction]
    valuation: Valuation | None


_VALIDATION_ROWS = 500
_TRAIN_ROWS = 50_000
_K = 5


def _row_hashes(table: pa.Table) -> np.ndarray:
    if not table.num_rows:
        return np.zeros(0, dtype=np.uint64)
    return np.concatenate([row_hashes(b) for b in table.to_batches()])


def _first_occurrences(hashes: np.ndarray) -> np.ndarray:
    """True for the first occurrence of each distinct row (exact duplicates count once)."""
    _, first = np.unique(hashes, return_index=True)
    mask = np.zeros(len(hashes), dtype=bool)
    mask[first] = True
    return mask


def _shapley(table: pa.Table, manifest: dict[str, Any], owners: np.ndarray, hashes: np.ndarray,
             first: np.ndarray) -> tuple[dict[str, Fraction], Valuation | None]:
    quality = manifest.get("quality") if isinstance(manifest.get("quality"), dict) else {}
    bounds = (manifest.get("privacy") or {}).get("bounds", {}) if isinstance(manifest.get("privacy"), dict) else {}
    label = quality.get("label") if isinstance(quality, dict) else None
    features = [c for c in bounds if c in table.column_names and c != label]
    if not isinstance(label, str) or label not in table.column_names or not features:
        return {}, None
    ok = first & ~np.asarray(table[label].is_null().to_numpy(zero_copy_only=False))
    for c in features:
        ok &= ~np.asarray(table[c].is_null().to_numpy(zero_copy_only=False))
    val = np.flatnonzero(ok & (hashes % np.uint64(10) == 0))[:_VALIDATION_ROWS]
    train = np.flatnonzero(ok & (hashes % np.uint64(10) != 0))
    if len(val) < 10 or not _K <= len(train) <= _TRAIN_ROWS:
        return {}, None
    lo = np.array([float(bounds[c][0]) for c in features])
    span = np.array([float(bounds[c][1]) for c in features]) - lo
    x = np.column_stack([np.clip(table[c].to_numpy(zero_copy_only=False).astype(np.float64), lo[i], lo[i] + span[i])
                         for i, c in enumerate(features)])
    x = (x - lo) / span
    y = pc.cast(table[label], pa.string()).to_numpy(zero_copy_only=False)
    values = knn_shapley(x[train], y[train], x[val], y[val], _K)
    digest = hashlib.sha256(np.sort(hashes[val]).tobytes()).hexdigest()
    return value_by_contributor(values, owners[train].astype(str)), Valuation(_K, len(val), digest)


def _decimal(value: Fraction) -> str:
    """An exact decimal (at most 12 places, as the shares' inputs hold them)."""
    sign = "-" if value < 0 else ""
    scaled = abs(value) * 10**12
    whole, frac = divmod(int(scaled), 10**12)
    return f"{sign}{whole}.{frac:012d}".rstrip("0").rstrip(".")
