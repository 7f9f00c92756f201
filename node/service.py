"""The node's domain operations, shared by the HTTP plane, the Flight plane and the CLI.

Every operation takes the acting :class:`~node.identity.Principal`, calls :meth:`Authorizer.authorize` first, and
commits its state change in one transaction (policy links included). On any failure nothing is left behind: no
row, no file.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer

from ledger import Entry, Receipt, canonical_json
from node.authz import Authorizer, Resource
from node.budget import BudgetStore
from node.db import Database
from node.errors import Conflict, InvalidArgument, NotFound, PermissionDenied
from node.identity import Principal, authenticate, hash_token, new_id, new_token
from node.ledger_store import SqlLedger
from node.manifest import LicenseRequest, Manifest, PrivacyDeclarations
from node.models import ROLES, ApiToken, Dataset, License, Participant, utcnow
from node.release import ReleaseStore
from node.storage import DatasetStore, FileFormat
from node.trading import Trading
from pricing.quality import QualityError, QualityInputs, QualityReport, assess
from privacy.budget import format_epsilon
from privacy.pii import Finding, detect
from privacy.policy import Loosening, ReleasePolicy, changes, propose

_Row = TypeVar("_Row", Dataset, License)

__all__ = ["NodeService", "NewParticipant", "dataset_json", "license_json", "schema_from_record"]


@dataclass(frozen=True, slots=True)
class NewParticipant:
    participant: Participant
    token: str


def schema_from_record(ds: Dataset) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(ds.arrow_schema)))


def dataset_json(ds: Dataset) -> dict[str, Any]:
    return {
        "id": ds.id,
        "name": ds.name,
        "title": ds.title,
        "owner": ds.owner_id,
        "listed": ds.listed,
        "manifest": ds.manifest,
        "schema": ds.schema_fields,
        "num_rows": ds.num_rows,
        "num_bytes": ds.num_bytes,
        "sha256": ds.sha256,
        "created_at": ds.created_at.isoformat(),
        "release_policy": ds.release_policy,
        "pii": ds.pii,
        "grade": ds.grade,
    }


def _finding_json(f: Finding) -> dict[str, Any]:
    return {"column": f.column, "kind": f.kind, "role": f.role, "confidence": round(f.confidence, 4),
            "matched": f.matched, "sampled": f.sampled, "by_name": f.by_name}


def _release_policy(schema: pa.Schema, findings: list[Finding], declared: PrivacyDeclarations
                    ) -> tuple[ReleasePolicy, list[Loosening]]:
    """The proposal from detection, or the provider's own policy; every way the latter releases a detected
    direct identifier more openly than proposed must come with a reason (``reason_required`` otherwise)."""
    proposed = propose([(f.name, str(f.type)) for f in schema], findings, declared.k)
    if declared.policy is None:
        return proposed, []
    detected = {r.column: r.detected for r in proposed.rules if r.detected}
    chosen = ReleasePolicy(tuple(replace(r, detected=r.detected or detected.get(r.column))
                                 for r in declared.policy.rules), declared.policy.k)
    loosened = changes(proposed, chosen)
    missing = sorted(c.column for c in loosened if c.column not in declared.reasons)
    if missing:
        raise InvalidArgument("releasing a detected direct identifier more openly needs privacy.reasons for: "
                              + ", ".join(missing), code="reason_required")
    return chosen, loosened


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def license_json(lic: License, receipt: Receipt | None = None) -> dict[str, Any]:
    return {
        "id": lic.id,
        "dataset": lic.dataset_id,
        "buyer": lic.buyer_id,
        "granted_by": lic.granted_by,
        "mode": lic.mode,
        "columns": lic.columns,
        "terms": lic.terms,
        "created_at": lic.created_at.isoformat(),
        "expires_at": lic.expires_at.isoformat() if lic.expires_at else None,
        "revoked_at": lic.revoked_at.isoformat() if lic.revoked_at else None,
        "revoke_reason": lic.revoke_reason,
    } | ({"receipt": receipt.to_json()} if receipt is not None else {})


class NodeService:
    def __init__(
        self,
        db: Database,
        authz: Authorizer,
        store: DatasetStore,
        ledger: SqlLedger,
        budgets: BudgetStore,
        releases: ReleaseStore,
        trading: Trading,
        pepper: bytes,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.authz = authz
        self.store = store
        self.ledger = ledger
        self.budgets = budgets
        self.releases = releases
        self.trading = trading
        self._pepper = pepper
        self._clock = clock

    # ---- identity ------------------------------------------------------------------------------------------
    def authenticate(self, token: str | None) -> Principal:
        with self.db.reader() as session:
            return authenticate(session, self._pepper, token, self._clock())

    def create_participant(
        self, actor: Principal | None, name: str, role: str, token_expires_at: datetime | None = None,
        address: str | None = None,
    ) -> NewParticipant:
        """Register a participant and issue its first token. ``actor=None`` is the local bootstrap done by
        ``dsnode init`` (the first operator). ``address`` is the EVM address its on-chain payouts go to."""
        if actor is not None:
            self.authz.authorize(actor.id, "participant.create", Resource.node())
        if role not in ROLES:
            raise InvalidArgument(f"role must be one of {', '.join(ROLES)}", code="invalid_participant")
        if not isinstance(name, str) or not 0 < len(name.strip()) <= 200 or name != name.strip():
            raise InvalidArgument("name must be 1-200 characters without surrounding spaces",
                                  code="invalid_participant")
        if address is not None:
            address = _evm_address(address)
        token = new_token()
        participant = Participant(id=new_id("p"), name=name, role=role, created_at=self._clock(), address=address)
        try:
            with self.db.transaction() as session:
                session.add(participant)
                session.flush()
                session.add(ApiToken(id=new_id("tok"), participant_id=participant.id,
                                     token_hash=hash_token(self._pepper, token), created_at=self._clock(),
                                     expires_at=token_expires_at))
                self.authz.participant_created(session, participant.id, role)
                self.ledger.append(session, "participant.created", actor.id if actor else "node", participant.id,
                                   {"participant": participant.id, "name": name, "role": role}
                                   | ({"address": address} if address else {}))
        except IntegrityError as exc:
            raise Conflict("a participant with that name exists", code="participant_exists") from exc
        return NewParticipant(participant, token)

    def revoke_tokens(self, actor: Principal, participant_id: str) -> int:
        self.authz.authorize(actor.id, "participant.create", Resource.node())
        now = self._clock()
        with self.db.transaction() as session:
            tokens = session.scalars(
                select(ApiToken).where(ApiToken.participant_id == participant_id, ApiToken.revoked_at.is_(None))
            ).all()
            for tok in tokens:
                tok.revoked_at = now
            if tokens:
                self.ledger.append(session, "participant.tokens_revoked", actor.id, participant_id,
                                   {"participant": participant_id, "tokens": len(tokens)})
        return len(tokens)

    def list_participants(self, actor: Principal) -> list[Participant]:
        self.authz.authorize(actor.id, "participant.read", Resource.node())
        with self.db.reader() as session:
            return list(session.scalars(select(Participant).order_by(Participant.created_at)))

    # ---- datasets ------------------------------------------------------------------------------------------
    def publish_dataset(self, actor: Principal, upload: Path, fmt: FileFormat, manifest: Manifest,
                        progress: Callable[[int], None] | None = None) -> Dataset:
        """Store the upload as Parquet, detect PII, settle the release policy, grade quality, and record it all
        (ledger included) in one transaction. The caller owns ``upload`` and deletes it afterwards."""
        self.authz.authorize(actor.id, "dataset.publish", Resource.node())
        with self.db.reader() as session:
            if session.scalar(select(Dataset.id).where(Dataset.name == manifest.name)) is not None:
                raise Conflict("a dataset with that name exists", code="dataset_exists")
        dataset_id = new_id("ds")
        stored = self.store.ingest(upload, fmt, dataset_id)
        try:
            declared = PrivacyDeclarations.from_manifest(manifest, stored.schema)
            findings = detect(self.store.table(stored.location))
            policy, loosened = _release_policy(stored.schema, findings, declared)
            policy_sha = hashlib.sha256(canonical_json(policy.to_json())).hexdigest()
            report = self._assess(manifest.to_json(), stored.schema, stored.sha256, stored.location, findings,
                                  policy.to_json(), policy_sha, progress)
            measures = self.trading.measure(manifest.to_json(), actor.id, stored.location)
            record = Dataset(
                id=dataset_id,
                name=manifest.name,
                title=manifest.title,
                owner_id=actor.id,
                listed=manifest.listed,
                manifest=manifest.to_json(),
                schema_fields=[{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in stored.schema],
                arrow_schema=base64.b64encode(stored.schema.serialize().to_pybytes()).decode("ascii"),
                location=stored.location,
                num_rows=stored.num_rows,
                num_bytes=stored.num_bytes,
                sha256=stored.sha256,
                created_at=self._clock(),
                release_policy=policy.to_json(),
                pii=[_finding_json(f) for f in findings],
                quality=report.to_json(),
                grade=report.grade,
            )
            with self.db.transaction() as session:
                session.add(record)
                session.flush()
                self.authz.dataset_published(session, dataset_id, actor.id, manifest.listed)
                self.budgets.open(session, "dataset", dataset_id, declared.epsilon_cap)
                self.ledger.append(session, "dataset.published", actor.id, dataset_id, {
                    "dataset": dataset_id, "name": record.name, "owner": actor.id, "sha256": record.sha256,
                    "rows": record.num_rows, "bytes": record.num_bytes, "listed": record.listed,
                    "policy_sha256": policy_sha, "epsilon_cap": format_epsilon(declared.epsilon_cap)})
                self._record_grade(session, actor.id, dataset_id, report)
                self.trading.record_measures(session, dataset_id, actor.id, measures)
                for change in loosened:
                    self.ledger.append(session, "policy.loosened", actor.id, dataset_id, {
                        "dataset": dataset_id, "column": change.column, "detected": change.detected,
                        "before": change.before, "after": change.after, "reason": declared.reasons[change.column]})
        except BaseException as exc:
            self.store.remove(dataset_id)
            if isinstance(exc, IntegrityError):  # lost a race for the name
                raise Conflict("a dataset with that name exists", code="dataset_exists") from exc
            raise
        return record

    def _assess(self, manifest: dict[str, Any], schema: pa.Schema, sha256: str, location: str,
                findings: list[Finding], policy: dict[str, Any] | None, policy_sha: str,
                progress: Callable[[int], None] | None) -> QualityReport:
        try:
            inputs = QualityInputs.from_manifest(manifest, schema, dataset_sha256=sha256,
                                                 today=self._clock().date(), findings=findings, policy=policy,
                                                 policy_version=policy_sha)
            return assess(self.store.batches(location), inputs, progress=progress)
        except QualityError as exc:
            raise InvalidArgument(str(exc), code=exc.code) from exc

    def _record_grade(self, session: Session, actor: str, dataset_id: str, report: QualityReport) -> None:
        self.ledger.append(session, "quality.graded", actor, dataset_id, {
            "dataset": dataset_id, "grade": report.grade, "score": f"{report.score:.4f}",
            "tradable": report.tradable, "gates": list(report.gates), "method": report.method_version,
            "policy_version": report.policy_version, "input_sha256": report.input_sha256,
            "report_sha256": hashlib.sha256(canonical_json(report.to_json())).hexdigest()})

    def quality(self, actor: Principal, dataset_id: str) -> dict[str, Any]:
        """The dataset's quality report, for whoever may see the dataset."""
        ds = self.get_dataset(actor, dataset_id)
        return ds.quality or {}

    def reassess(self, actor: Principal, dataset_id: str, progress: Callable[[int], None] | None = None
                 ) -> dict[str, Any]:
        """Grade again (the owner or an operator), e.g. after the method or the clock moved; recorded anew."""
        ds = self.get_dataset(actor, dataset_id)
        if actor.role != "operator" and ds.owner_id != actor.id:
            raise PermissionDenied("only the owner or an operator may reassess a dataset")
        policy = ds.release_policy
        report = self._assess(ds.manifest, schema_from_record(ds), ds.sha256, ds.location,
                              [Finding.from_json(f) for f in ds.pii or []], policy,
                              hashlib.sha256(canonical_json(policy)).hexdigest() if policy else "", progress)
        with self.db.transaction() as session:
            row = session.get(Dataset, dataset_id, with_for_update=True)
            assert row is not None
            row.quality, row.grade = report.to_json(), report.grade
            self._record_grade(session, actor.id, dataset_id, report)
        return report.to_json()

    def get_dataset(self, actor: Principal, dataset_id: str) -> Dataset:
        """A dataset the caller may see; ``not_found`` also when it exists but is hidden from the caller."""
        return self._visible(actor, "dataset.read", Resource.dataset(dataset_id), Dataset,
                             NotFound("no such dataset", code="dataset_not_found"))

    def list_datasets(self, actor: Principal, *, limit: int = 100, after: str | None = None) -> list[Dataset]:
        """The catalog as the caller may see it, ordered by id, paged by ``after``."""
        if not 0 < limit <= 1000:
            raise InvalidArgument("limit must be 1-1000", code="invalid_argument")
        out: list[Dataset] = []
        with self.db.reader() as session:
            # The quality report and the serialized schema are large and not part of a catalog entry.
            query = select(Dataset).options(defer(Dataset.quality), defer(Dataset.arrow_schema)).order_by(Dataset.id)
            if actor.role != "operator":
                licensed = select(License.dataset_id).where(License.buyer_id == actor.id)
                query = query.where(or_(Dataset.listed, Dataset.owner_id == actor.id, Dataset.id.in_(licensed)))
            if after:
                query = query.where(Dataset.id > after)
            for ds in session.scalars(query.execution_options(yield_per=500)):
                if self.authz.allowed(actor.id, "dataset.read", Resource.dataset(ds.id)):
                    out.append(ds)
                    if len(out) == limit:
                        break
        return out

    # ---- licences ------------------------------------------------------------------------------------------
    def grant_license(self, actor: Principal, request: LicenseRequest) -> License:
        self.authz.authorize(actor.id, "license.grant", Resource.dataset(request.dataset))
        with self.db.reader() as session:
            ds = session.get(Dataset, request.dataset)
            buyer = session.get(Participant, request.buyer)
        if ds is None:
            raise NotFound("no such dataset", code="dataset_not_found")
        if buyer is None or buyer.role not in ("buyer",):
            raise InvalidArgument("the buyer must be a registered participant with role buyer",
                                  code="invalid_license")
        if request.columns is not None:
            names = {f["name"] for f in ds.schema_fields}
            if not set(request.columns) <= names:
                raise InvalidArgument("the licence names a column the dataset does not have",
                                      code="unknown_column")
        lic = License(
            id=new_id("lic"),
            dataset_id=ds.id,
            buyer_id=buyer.id,
            granted_by=actor.id,
            mode=request.mode,
            columns=list(request.columns) if request.columns is not None else None,
            terms=request.terms,
            created_at=self._clock(),
            expires_at=request.expires_at,
        )
        with self.db.transaction() as session:
            session.add(lic)
            session.flush()
            self.authz.license_granted(session, lic, ds.owner_id)
            if request.epsilon is not None:
                self.budgets.open(session, "license", lic.id, request.epsilon)
            self.ledger.append(session, "license.granted", actor.id, lic.id, {
                "license": lic.id, "dataset": lic.dataset_id, "buyer": lic.buyer_id, "mode": lic.mode,
                "columns": lic.columns, "expires_at": _iso(lic.expires_at), "terms": lic.terms,
                "epsilon": None if request.epsilon is None else format_epsilon(request.epsilon)})
        return lic

    def get_license(self, actor: Principal, license_id: str) -> License:
        return self._visible(actor, "license.read", Resource.license(license_id), License,
                             NotFound("no such licence", code="license_not_found"))

    def _visible(self, actor: Principal, action: str, resource: Resource, model: type[_Row], missing: NotFound
                 ) -> _Row:
        """Load a row the caller may read; absent and hidden look the same (``missing``) so nothing leaks."""
        if not self.authz.allowed(actor.id, action, resource):
            raise missing
        with self.db.reader() as session:
            row = session.get(model, resource.id)
        if row is None:
            raise missing
        return row

    def list_licenses(self, actor: Principal, dataset_id: str | None = None) -> list[License]:
        with self.db.reader() as session:
            query = select(License).order_by(License.created_at)
            if dataset_id:
                query = query.where(License.dataset_id == dataset_id)
            if actor.role != "operator":
                owned = select(Dataset.id).where(Dataset.owner_id == actor.id)
                query = query.where(or_(License.buyer_id == actor.id, License.dataset_id.in_(owned)))
            rows = list(session.scalars(query.limit(10_000)))
        return [lic for lic in rows if self.authz.allowed(actor.id, "license.read", Resource.license(lic.id))]

    def revoke_license(self, actor: Principal, license_id: str, reason: str = "") -> License:
        """Revoke now; streams under this licence stop at their next batch. Revoking twice is ``conflict``."""
        self.get_license(actor, license_id)
        self.authz.authorize(actor.id, "license.revoke", Resource.license(license_id))
        if len(reason) > 500:
            raise InvalidArgument("reason must be at most 500 characters", code="invalid_argument")
        with self.db.transaction() as session:
            lic = session.get(License, license_id, with_for_update=True)
            if lic is None:
                raise NotFound("no such licence", code="license_not_found")
            if lic.revoked_at is not None:
                raise Conflict("the licence is already revoked", code="license_already_revoked")
            lic.revoked_at = self._clock()
            lic.revoked_by = actor.id
            lic.revoke_reason = reason or None
            owner = session.scalar(select(Dataset.owner_id).where(Dataset.id == lic.dataset_id))
            if owner is None:  # pragma: no cover - foreign key guarantees it
                raise PermissionDenied("not allowed")
            self.authz.license_revoked(session, lic, owner)
            self.ledger.append(session, "license.revoked", actor.id, lic.id,
                               {"license": lic.id, "dataset": lic.dataset_id, "reason": reason})
        self.releases.forget(lic.id)
        return lic

    def budget(self, actor: Principal, license_id: str) -> dict[str, Any]:
        """The licence's and its dataset's ε budgets (total, spent, remaining), for whoever may read the licence."""
        lic = self.get_license(actor, license_id)
        return {"license_id": lic.id, "dataset_id": lic.dataset_id, **self.budgets.status(lic.id, lic.dataset_id)}

    # ---- ledger --------------------------------------------------------------------------------------------
    def ledger_page(self, actor: Principal, start: int, limit: int, kind: str | None = None,
                    subject: str | None = None) -> list[Entry]:
        """Ledger entries from ``start`` (operators and exchanges: ``ledger.read``)."""
        self.authz.authorize(actor.id, "ledger.read", Resource.node())
        return self.ledger.page(start, limit, kind, subject)

    def ledger_entry(self, actor: Principal, seq: int) -> Entry:
        self.authz.authorize(actor.id, "ledger.read", Resource.node())
        return self.ledger.entry(seq)

    def receipt(self, actor: Principal, license_id: str, kind: str = "license.granted") -> Receipt | None:
        """The ledger receipt of a licence's grant (or revocation), for a caller who may read the licence."""
        self.get_license(actor, license_id)
        seq = self.ledger.find(license_id, kind)
        return None if seq is None else self.ledger.receipt(seq)


def _evm_address(value: str) -> str:
    """A 0x-prefixed 20-byte hex address, returned checksummed (EIP-55); a mixed-case one must checksum."""
    from eth_utils.address import is_checksum_address, to_checksum_address

    if not isinstance(value, str) or not re.fullmatch(r"0x[0-9a-fA-F]{40}", value) or int(value, 16) == 0:
        raise InvalidArgument("address must be a non-zero 0x-prefixed 20-byte hex EVM address",
                              code="invalid_address")
    if value != value.lower() and value != "0x" + value[2:].upper() and not is_checksum_address(value):
        raise InvalidArgument("address has mixed case but a wrong EIP-55 checksum (a typo?)", code="invalid_address")
    return str(to_checksum_address(value))
