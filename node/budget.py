"""Privacy budgets on the node database: opened with a licence (or a dataset), charged before data is read.

A charge is one transaction: it debits the licence's budget and the dataset's global cap with guarded
``UPDATE … SET spent = spent + c WHERE spent + c <= total`` statements (always licence first, then dataset, so
concurrent charges cannot deadlock), records the charge row and a ``budget.charged`` ledger entry, and commits —
all before the caller touches the data. A guard that matches no row means the budget cannot pay: the transaction
rolls back and nothing is charged. Under any concurrency the sum of charges never exceeds a budget, because the
database evaluates each guard against the committed value under its row lock (PostgreSQL) or its write lock
(SQLite).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from node.db import Database
from node.errors import PermissionDenied
from node.identity import new_id
from node.ledger_store import SqlLedger
from node.models import PrivacyBudget, PrivacyCharge, utcnow
from privacy.budget import format_epsilon

__all__ = ["BudgetStore", "Charge"]


@dataclass(frozen=True, slots=True)
class Charge:
    id: str
    units: int
    license_remaining: int
    dataset_remaining: int


class BudgetStore:
    def __init__(self, db: Database, ledger: SqlLedger, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.ledger = ledger
        self._clock = clock

    def open(self, session: Session, scope: str, scope_id: str, total_units: int) -> None:
        """Create a budget inside the caller's transaction (a licence grant, a publication)."""
        session.add(PrivacyBudget(scope=scope, scope_id=scope_id, total_units=total_units, spent_units=0))

    def top_up(self, session: Session, license_id: str, units: int) -> None:
        """Raise a licence's total inside the caller's transaction (a bought extension of its ε)."""
        session.execute(update(PrivacyBudget).where(PrivacyBudget.scope == "license",
                                                    PrivacyBudget.scope_id == license_id)
                        .values(total_units=PrivacyBudget.total_units + units)
                        .execution_options(synchronize_session=False))

    def charge(self, *, actor: str, license_id: str, dataset_id: str, mode: str, units: int, delta: float,
               query: str) -> Charge:
        """Debit ``units`` from the licence and the dataset, or raise ``budget_exhausted`` having charged nothing."""
        with self.db.transaction() as session:
            for scope, scope_id, code in (("license", license_id, "budget_exhausted"),
                                          ("dataset", dataset_id, "dataset_budget_exhausted")):
                debited = session.execute(
                    update(PrivacyBudget)
                    .where(PrivacyBudget.scope == scope, PrivacyBudget.scope_id == scope_id,
                           PrivacyBudget.spent_units + units <= PrivacyBudget.total_units)
                    .values(spent_units=PrivacyBudget.spent_units + units)
                    .execution_options(synchronize_session=False)
                )
                if debited.rowcount != 1:  # type: ignore[attr-defined]
                    what = "licence's" if scope == "license" else "dataset's"
                    raise PermissionDenied(f"the {what} privacy budget cannot pay for this query", code=code)
            remaining = self._remaining(session, license_id, dataset_id)
            charge = PrivacyCharge(id=new_id("chg"), license_id=license_id, dataset_id=dataset_id, mode=mode,
                                   epsilon_units=units, delta=delta, query_sha256=query, created_at=self._clock())
            session.add(charge)
            self.ledger.append(session, "budget.charged", actor, license_id, {
                "license": license_id, "dataset": dataset_id, "mode": mode, "charge": charge.id,
                "epsilon": format_epsilon(units), "delta": repr(delta), "query": query,
                "license_remaining": format_epsilon(remaining[0]),
                "dataset_remaining": format_epsilon(remaining[1])})
        return Charge(charge.id, units, *remaining)

    def record(self, charge_id: str, detail: dict[str, Any]) -> None:
        """Attach what the charge paid for (mechanism, scale, accountant state) after the release."""
        with self.db.transaction() as session:
            row = session.get(PrivacyCharge, charge_id)
            if row is not None:
                row.detail = detail

    def _remaining(self, session: Session, license_id: str, dataset_id: str) -> tuple[int, int]:
        rows = dict(session.execute(
            select(PrivacyBudget.scope, PrivacyBudget.total_units - PrivacyBudget.spent_units)
            .where(((PrivacyBudget.scope == "license") & (PrivacyBudget.scope_id == license_id))
                   | ((PrivacyBudget.scope == "dataset") & (PrivacyBudget.scope_id == dataset_id)))).all())
        return int(rows.get("license", 0)), int(rows.get("dataset", 0))

    def status(self, license_id: str, dataset_id: str) -> dict[str, dict[str, str] | None]:
        """Total, spent and remaining ε (exact decimal strings) of a licence and its dataset."""
        out: dict[str, dict[str, str] | None] = {"license": None, "dataset": None}
        with self.db.reader() as session:
            for row in session.scalars(select(PrivacyBudget).where(
                    ((PrivacyBudget.scope == "license") & (PrivacyBudget.scope_id == license_id))
                    | ((PrivacyBudget.scope == "dataset") & (PrivacyBudget.scope_id == dataset_id)))):
                out[row.scope] = {"total": format_epsilon(row.total_units),
                                  "spent": format_epsilon(row.spent_units),
                                  "remaining": format_epsilon(row.total_units - row.spent_units)}
        return out
