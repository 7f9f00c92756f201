"""Authorization: one :meth:`Authorizer.authorize` for both planes.

Casbin decides from a small set of role-level rules (``policy.csv``) and relation facts (``g``/``g2`` links, see
``model.conf``); the licence's own state (expiry, revocation, dataset) is checked beside it. Rules and links are
persisted in the node database (table ``casbin_rule``) in the same transaction as the state change they follow, and
applied to the in-memory enforcer only after that transaction commits, so memory never runs ahead of the database.

Scale: decisions cost O(number of ``p`` rules) with dict-backed link lookups, independent of the number of licences;
granting a licence adds three links incrementally (no policy reload).
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import casbin
from casbin import persist
from casbin.rbac.default_role_manager.role_manager import DomainManager
from sqlalchemy import bindparam, delete, event, select
from sqlalchemy.orm import Session, sessionmaker

from node.errors import NotFound, PermissionDenied
from node.models import CasbinRule, Dataset, License, utcnow

__all__ = ["ACTIONS", "Authorizer", "LicenseState", "Resource", "seed_policy"]

_HERE = Path(__file__).parent
MODEL_PATH = _HERE / "model.conf"
POLICY_PATH = _HERE / "policy.csv"

ACTIONS = (
    "participant.create",
    "participant.read",
    "dataset.publish",
    "dataset.read",
    "dataset.query",
    "license.grant",
    "license.read",
    "license.revoke",
    "peer.manage",
)

Rule = tuple[str, ...]
_Op = tuple[Literal["add", "remove"], str, Rule]


@dataclass(frozen=True, slots=True)
class Resource:
    """What an action is on. ``node`` needs no id."""

    kind: Literal["node", "dataset", "license"]
    id: str = ""

    @property
    def key(self) -> str:
        return "node" if self.kind == "node" else f"{self.kind}:{self.id}"

    @staticmethod
    def node() -> Resource:
        return Resource("node")

    @staticmethod
    def dataset(dataset_id: str) -> Resource:
        return Resource("dataset", dataset_id)

    @staticmethod
    def license(license_id: str) -> Resource:
        return Resource("license", license_id)


@dataclass(frozen=True, slots=True)
class LicenseState:
    """What a decision needs to know about a licence beyond Casbin's links."""

    id: str
    dataset_id: str
    buyer_id: str
    owner_id: str
    mode: str
    columns: tuple[str, ...] | None
    expires_at: datetime | None
    revoked: bool

    def live(self, now: datetime) -> bool:
        return not self.revoked and (self.expires_at is None or now < self.expires_at)


def _subject(participant_id: str) -> str:
    return f"participant:{participant_id}"


def _read_policy_file(path: Path = POLICY_PATH) -> list[Rule]:
    rules = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append(tuple(part.strip() for part in line.split(",")))
    return rules


def seed_policy(session: Session) -> int:
    """Insert the shipped role-level rules the database lacks (a new release may ship new ones); returns how
    many were inserted. Idempotent; run at ``init`` and at every start."""
    have = {tuple(v for v in row if v) for row in session.execute(
        select(CasbinRule.ptype, CasbinRule.v0, CasbinRule.v1, CasbinRule.v2).where(CasbinRule.ptype == "p"))}
    missing = [rule for rule in _read_policy_file() if rule not in have]
    session.add_all(_row(rule) for rule in missing)
    return len(missing)


def _row(rule: Rule) -> CasbinRule:
    ptype, *values = rule
    return CasbinRule(ptype=ptype, **{f"v{i}": v for i, v in enumerate(values)})


class _RowsAdapter(persist.Adapter):  # type: ignore[misc]
    """Feeds rows already read from ``casbin_rule`` to the enforcer; writes go through :class:`Authorizer`."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self._rules = list(rules)

    def load_policy(self, model: Any) -> None:
        by_type: dict[tuple[str, str], list[list[str]]] = defaultdict(list)
        for ptype, *values in self._rules:
            by_type[(ptype[0], ptype)].append(list(values))
        for (sec, ptype), rules in by_type.items():
            model.add_policies(sec, ptype, rules)


class _IndexedRules:
    """A drop-in for Casbin's list of rules with O(1) membership, append and remove.

    pycasbin keeps rules in a plain list, so adding a link scans every existing one (``rule in list``): that
    is what makes 100 k licences cost seconds per grant. Insertion order is kept, as Casbin expects.
    """

    def __init__(self, rules: Iterable[list[str]]) -> None:
        self._rules: dict[Rule, None] = dict.fromkeys(tuple(r) for r in rules)

    def __contains__(self, rule: object) -> bool:
        return isinstance(rule, list | tuple) and tuple(rule) in self._rules

    def __iter__(self) -> Iterator[list[str]]:
        return (list(r) for r in list(self._rules))

    def __len__(self) -> int:
        return len(self._rules)

    def __getitem__(self, index: int) -> list[str]:
        return list(self)[index]

    def append(self, rule: list[str]) -> None:
        self._rules[tuple(rule)] = None

    def remove(self, rule: list[str]) -> None:
        del self._rules[tuple(rule)]


class _ByAction(_IndexedRules):
    """``p`` rules indexed by action. While :meth:`_Enforcer.enforce` runs, iteration yields only the rules of
    the requested action (kept per thread), so a decision evaluates the matcher a handful of times."""

    def __init__(self, rules: Iterable[list[str]], local: threading.local) -> None:
        super().__init__(rules)
        self._local = local

    def _current(self) -> list[Rule] | None:
        act = getattr(self._local, "act", None)
        if act is None:
            return None
        return [r for r in self._rules if r[1] == act] if self._dirty else self._by_act.get(act, [])

    _dirty = True
    _by_act: dict[str, list[Rule]] = {}

    def reindex(self) -> None:
        by_act: dict[str, list[Rule]] = defaultdict(list)
        for rule in self._rules:
            by_act[rule[1]].append(rule)
        self._by_act = dict(by_act)
        self._dirty = False

    def __iter__(self) -> Iterator[list[str]]:
        current = self._current()
        return super().__iter__() if current is None else (list(r) for r in current)

    def __len__(self) -> int:
        current = self._current()
        return super().__len__() if current is None else len(current)

    def append(self, rule: list[str]) -> None:
        super().append(rule)
        self._dirty = True

    def remove(self, rule: list[str]) -> None:
        super().remove(rule)
        self._dirty = True


class _Enforcer(casbin.Enforcer):  # type: ignore[misc]
    """Casbin's enforcer with indexed rule storage (see :class:`_IndexedRules`, :class:`_ByAction`)."""

    def __init__(self, model_path: str, adapter: persist.Adapter) -> None:
        super().__init__(model_path, adapter)
        self.enable_auto_save(False)
        # Casbin logs every denial at WARNING through the root logger; denials are expected traffic here.
        self.logger.setLevel(logging.ERROR)
        self._local = threading.local()
        model = self.get_model()
        for ptype, assertion in model["g"].items():
            assertion.policy = _IndexedRules(assertion.policy)
            del ptype
        # pycasbin's domain role manager installs an equality "pattern" matcher by default, which makes every
        # link insertion scan all roles of its domain (O(n^2) to build a dataset's role graph). Names here are
        # exact, so matching is switched off and the per-domain managers are rebuilt lazily without it.
        for rm in self.rm_map.values():
            if isinstance(rm, DomainManager):
                rm.matching_func = None
                rm.rm_map = {}
        by_action = _ByAction(model["p"]["p"].policy, self._local)
        by_action.reindex()
        model["p"]["p"].policy = by_action

    def enforce(self, sub: str, act: str, obj: str) -> bool:
        self._local.act = act
        try:
            return bool(super().enforce(sub, act, obj))
        finally:
            self._local.act = None


class Authorizer:
    """The node's policy decision point. Thread-safe; one per node process."""

    def __init__(self, sessions: sessionmaker[Session], clock: Callable[[], datetime] = utcnow) -> None:
        self._sessions = sessions
        self._engine = sessions.kw["bind"]
        self._clock = clock
        self._lock = threading.RLock()
        self._licenses: dict[str, LicenseState] = {}
        self._live_by_pair: dict[tuple[str, str], set[str]] = defaultdict(set)
        self._enforcer: Any = None
        event.listen(sessions, "after_commit", self._after_commit)
        event.listen(sessions, "after_soft_rollback", self._after_rollback)

    # ---- loading -------------------------------------------------------------------------------------------
    def load(self) -> None:
        """(Re)build the enforcer and licence states from the database."""
        with self._sessions() as session:
            rows = session.execute(
                select(CasbinRule.ptype, CasbinRule.v0, CasbinRule.v1, CasbinRule.v2, CasbinRule.v3)
            ).all()
            rules = [tuple(v for v in row if v) for row in rows]
            states = [_state_from_row(row) for row in session.execute(_STATE_QUERY)]
        enforcer = _Enforcer(str(MODEL_PATH), _RowsAdapter(rules))
        with self._lock:
            self._enforcer = enforcer
            self._licenses = {s.id: s for s in states}
            self._live_by_pair = defaultdict(set)
            for s in states:
                if not s.revoked:
                    self._live_by_pair[(s.buyer_id, s.dataset_id)].add(s.id)

    # ---- decisions -----------------------------------------------------------------------------------------
    def allowed(self, subject: str, action: str, resource: Resource) -> bool:
        try:
            self.authorize(subject, action, resource)
        except (PermissionDenied, NotFound):
            return False
        return True

    def authorize(self, subject: str, action: str, resource: Resource) -> None:
        """Raise :class:`PermissionDenied` unless ``subject`` (a participant id) may do ``action`` on ``resource``.

        For licence resources the licence must exist and, for ``dataset.query``, be live (not revoked, not
        expired at the injected clock). A buyer learns why its own licence stopped working; anyone else
        learns only ``permission_denied``.
        """
        sub = _subject(subject)
        # Under the lock :meth:`_apply` holds, so the licence state and the links are read from one moment: a
        # revocation applied in between would otherwise show a live state but no link (``permission_denied``
        # instead of ``license_revoked`` for a stream cut off mid-way).
        with self._lock:
            if resource.kind == "license":
                state = self._licenses.get(resource.id)
                if state is None:
                    raise PermissionDenied("not allowed")
                if action == "dataset.query" and not state.live(self._clock()):
                    if state.buyer_id == subject:
                        if state.revoked:
                            raise PermissionDenied("this licence has been revoked", code="license_revoked")
                        raise PermissionDenied("this licence has expired", code="license_expired")
                    raise PermissionDenied("not allowed")
            if not self._enforcer.enforce(sub, action, resource.key):
                raise PermissionDenied("not allowed")

    def license(self, license_id: str) -> LicenseState | None:
        return self._licenses.get(license_id)

    def refresh_license(self, license_id: str) -> LicenseState | None:
        """Re-read one licence from the database, so a grant or revocation made by another process counts
        here too (the data plane calls this before each batch it sends)."""
        with self._engine.connect() as conn:
            row = conn.execute(_ONE_STATE, {"license_id": license_id}).first()
        if row is None:
            return None
        fresh = _state_from_row(row)
        with self._lock:
            known = self._licenses.get(license_id)
            if known is not None and known.revoked and not fresh.revoked:
                # Read before a revocation that this process applied meanwhile; revocation is final, and the
                # stale state would otherwise be live again in memory with its links already removed.
                return known
            if known != fresh:
                ops = _grant_ops(fresh) if known is None else []
                if fresh.revoked and (known is None or not known.revoked):
                    ops += self._revoke_ops(fresh)
                self._apply(ops, [fresh])
        return fresh

    # ---- staged changes (persisted now, applied to memory after commit) ------------------------------------
    def participant_created(self, session: Session, participant_id: str, role: str) -> None:
        self._stage(session, [("add", "g", (_subject(participant_id), f"role:{role}"))])

    def dataset_published(self, session: Session, dataset_id: str, owner_id: str, listed: bool) -> None:
        ops: list[_Op] = [("add", "g2", (_subject(owner_id), "owner", f"dataset:{dataset_id}"))]
        if listed:
            ops.append(("add", "g2", ("*", "listed", f"dataset:{dataset_id}")))
        self._stage(session, ops)

    def license_granted(self, session: Session, lic: License, owner_id: str) -> None:
        state = _state(lic, owner_id)
        self._stage(session, _grant_ops(state), [state])

    def license_revoked(self, session: Session, lic: License, owner_id: str) -> None:
        state = _state(lic, owner_id)
        with self._lock:
            ops = self._revoke_ops(state)
        self._stage(session, ops, [state])

    def _revoke_ops(self, state: LicenseState) -> list[_Op]:
        ops: list[_Op] = [("remove", "g2", (_subject(state.buyer_id), "holder", f"license:{state.id}"))]
        others = self._live_by_pair.get((state.buyer_id, state.dataset_id), set()) - {state.id}
        if not others:
            ops.append(("remove", "g2", (_subject(state.buyer_id), "licensee", f"dataset:{state.dataset_id}")))
        return ops

    def _stage(self, session: Session, ops: list[_Op], states: list[LicenseState] | None = None) -> None:
        for op, ptype, rule in ops:
            if op == "add":
                session.add(_row((ptype, *rule)))
            else:
                cols = [CasbinRule.v0, CasbinRule.v1, CasbinRule.v2]
                session.execute(
                    delete(CasbinRule).where(
                        CasbinRule.ptype == ptype, *(c == v for c, v in zip(cols, rule, strict=False))
                    )
                )
        pending = session.info.setdefault("authz_pending", [])
        pending.append((ops, states or []))

    def _after_commit(self, session: Session) -> None:
        pending = session.info.pop("authz_pending", None)
        if not pending:
            return
        with self._lock:
            for ops, states in pending:
                self._apply(ops, states)

    def _after_rollback(self, session: Session, previous_transaction: Any) -> None:
        session.info.pop("authz_pending", None)

    def _apply(self, ops: list[_Op], states: list[LicenseState]) -> None:
        for op, ptype, rule in ops:
            if op == "add":
                if not self._enforcer.has_named_grouping_policy(ptype, *rule):
                    self._enforcer.add_named_grouping_policy(ptype, *rule)
            else:
                self._enforcer.remove_named_grouping_policy(ptype, *rule)
        for state in states:
            self._licenses[state.id] = state
            live = self._live_by_pair[(state.buyer_id, state.dataset_id)]
            if state.revoked:
                live.discard(state.id)
            else:
                live.add(state.id)


def _grant_ops(state: LicenseState) -> list[_Op]:
    lic = f"license:{state.id}"
    return [
        ("add", "g2", (_subject(state.buyer_id), "holder", lic)),
        ("add", "g2", (_subject(state.owner_id), "owner", lic)),
        ("add", "g2", (_subject(state.buyer_id), "licensee", f"dataset:{state.dataset_id}")),
    ]


_STATE_QUERY = select(
    License.id, License.dataset_id, License.buyer_id, Dataset.owner_id, License.mode, License.columns,
    License.expires_at, License.revoked_at,
).join(Dataset, Dataset.id == License.dataset_id)


_ONE_STATE = _STATE_QUERY.where(License.id == bindparam("license_id"))  # compiled once, cached by SQLAlchemy


def _state_from_row(row: Any) -> LicenseState:
    lic_id, dataset_id, buyer_id, owner_id, mode, columns, expires_at, revoked_at = row
    return LicenseState(
        id=lic_id,
        dataset_id=dataset_id,
        buyer_id=buyer_id,
        owner_id=owner_id,
        mode=mode,
        columns=tuple(columns) if columns is not None else None,
        expires_at=expires_at,
        revoked=revoked_at is not None,
    )


def _state(lic: License, owner_id: str) -> LicenseState:
    return LicenseState(
        id=lic.id,
        dataset_id=lic.dataset_id,
        buyer_id=lic.buyer_id,
        owner_id=owner_id,
        mode=lic.mode,
        columns=tuple(lic.columns) if lic.columns is not None else None,
        expires_at=lic.expires_at,
        revoked=lic.revoked_at is not None,
    )
