"""What a licensed command may see, per mode, before and after the data is read.

:meth:`DataAccess.plan` authorizes a command against its licence and validates it completely — schema, licensed
columns, release policy, declared bounds and domains, ε and δ — without charging anything or reading a row, so
``get_flight_info`` and every refusal are free. Then:

- ``rows``: batches of the licence's de-identified, k-anonymous release (:mod:`node.release`); filters apply to
  released values, never to the raw ones (a filter on a raw age would reveal what its band hides);
- ``aggregate``: the budget is charged first, then the data is read and released with OpenDP noise;
- ``model``: the budget is charged first, then a DP-SGD model is trained and its (ε, δ) reported.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.dataset as pds
from sqlalchemy import select

from node.authz import LicenseState, Resource
from node.dp_commands import AggregateCommand, Command, TrainCommand, parse_command
from node.errors import InvalidArgument, NotFound, PermissionDenied
from node.identity import Principal
from node.manifest import Manifest, PrivacyDeclarations
from node.models import Dataset, License
from node.query import RowsCommand, ScanPlan, filter_expression, plan_rows
from node.release import Release, licensed_policy, output_is_k_anonymous
from node.service import schema_from_record
from privacy import dp, model
from privacy.budget import EpsilonUnits, epsilon_value, format_epsilon
from privacy.policy import ReleasePolicy
from privacy.transform import release_schema

if TYPE_CHECKING:
    from node.federation import Grant
    from node.runtime import Node

__all__ = ["DataAccess", "Planned"]


@dataclass(frozen=True, slots=True)
class Planned:
    command: Command
    state: LicenseState
    dataset: Dataset
    schema: pa.Schema                  # what the client receives
    scan: ScanPlan | None = None       # rows
    policy: ReleasePolicy | None = None  # rows: the dataset's policy restricted to the licence's columns
    aggregate: dp.AggregateSpec | None = None
    filter: pa.compute.Expression | None = None  # aggregate: on raw values, before aggregation
    train: model.TrainSpec | None = None
    rows: int | None = None            # the licence covers only the dataset's first ``rows`` rows (a quote's terms)
    cap: int | None = None             # that cap over all partitions (``rows`` is it when below the local rows)


def _model_schema() -> pa.Schema:
    return pa.schema([("model", pa.binary()), ("format", pa.string()), ("epsilon", pa.float64()),
                      ("delta", pa.float64()), ("accountant", pa.string()), ("steps", pa.int64()),
                      ("noise_multiplier", pa.float64())])


class DataAccess:
    def __init__(self, node: Node) -> None:
        self._node = node

    # ---- planning: authorize and validate, charge nothing, read nothing ------------------------------------
    def plan(self, principal: Principal, raw: bytes) -> Planned:
        command = parse_command(raw)
        authz = self._node.authz
        state = authz.refresh_license(command.license)
        authz.authorize(principal.id, "dataset.query", Resource.license(command.license))
        if state is None or state.dataset_id != command.dataset:
            raise PermissionDenied("the licence does not cover this dataset")
        if state.mode != command.mode:
            raise InvalidArgument(f"this licence does not allow the {command.mode} mode", code="mode_not_licensed")
        with self._node.db.reader() as session:
            ds = session.get(Dataset, command.dataset)
            terms = session.scalar(select(License.terms).where(License.id == command.license))
        if ds is None:
            raise NotFound("no such dataset", code="dataset_not_found")
        cap = terms.get("rows") if isinstance(terms, dict) else None
        rows = cap if isinstance(cap, int) and not isinstance(cap, bool) and cap < ds.num_rows else None
        if command.mode != "rows" and self._node.federation.partitions(ds.id):
            raise InvalidArgument("DP aggregates and models run on one node; this dataset is partitioned across "
                                  "nodes", code="partitioned_dataset")
        return replace(self._plan(command, state, ds), rows=rows,
                       cap=cap if isinstance(cap, int) and not isinstance(cap, bool) else None)

    def _plan(self, command: Command, state: LicenseState, ds: Dataset) -> Planned:
        raw_schema = schema_from_record(ds)
        if isinstance(command, RowsCommand):
            return self._plan_rows(command, state, ds, raw_schema)
        declared = PrivacyDeclarations.from_manifest(Manifest.from_json(ds.manifest), raw_schema)
        allowed = set(raw_schema.names if state.columns is None else state.columns) & set(raw_schema.names)
        for name in sorted(command.columns()):
            if name not in raw_schema.names:
                raise InvalidArgument("the command names a column the dataset does not have", code="unknown_column")
            if name not in allowed:
                raise PermissionDenied("the licence does not cover a requested column", code="column_not_licensed")
        if isinstance(command, AggregateCommand):
            return self._plan_aggregate(command, state, ds, raw_schema, declared, allowed)
        return self._plan_train(command, state, ds, raw_schema, declared)

    def _plan_rows(self, command: RowsCommand, state: LicenseState, ds: Dataset, raw: pa.Schema) -> Planned:
        policy = ReleasePolicy.from_json(ds.release_policy) if ds.release_policy else None
        if policy is None:
            raise PermissionDenied("this dataset has no release policy", code="policy_missing")
        released = release_schema(raw, policy)
        asked = [*(command.columns or ()), *(f.column for f in command.where)]
        if any(c in raw.names and c not in released.names for c in asked):
            raise PermissionDenied("the release policy withholds a requested column", code="column_withheld")
        scan = plan_rows(command, released, state.columns, self._node.settings.max_query_rows)
        return Planned(command, state, ds, scan.schema, scan=scan, policy=licensed_policy(policy, state.columns))

    def _plan_aggregate(self, command: AggregateCommand, state: LicenseState, ds: Dataset, raw: pa.Schema,
                        declared: PrivacyDeclarations, allowed: set[str]) -> Planned:
        keys = (*command.group_by, *((command.column,) if command.op == "histogram" and command.column else ()))
        bounds = declared.bounds.get(command.column) if command.op in ("sum", "mean") and command.column else None
        spec = dp.AggregateSpec(
            op=command.op, epsilon=EpsilonUnits(command.epsilon), column=command.column,  # type: ignore[arg-type]
            group_by=command.group_by, bounds=bounds,
            domains={k: declared.domains[k] for k in keys if k in declared.domains},
            privacy_unit=declared.unit, max_contributions=declared.max_contributions, delta=command.delta)
        try:
            dp.validate(spec, raw)
        except dp.DPError as exc:
            raise InvalidArgument(str(exc), code=exc.code) from exc
        where = filter_expression(command.where, raw, allowed)
        value = pa.int64() if spec.op in ("count", "histogram") else pa.float64()
        schema = pa.schema([pa.field(k, _plain(raw.field(k).type)) for k in spec.keys]
                           + [pa.field(spec.value_name, value)])
        return Planned(command, state, ds, schema, aggregate=spec, filter=where)

    def _plan_train(self, command: TrainCommand, state: LicenseState, ds: Dataset, raw: pa.Schema,
                    declared: PrivacyDeclarations) -> Planned:
        missing = [f for f in command.features if f not in declared.bounds]
        if missing:
            raise InvalidArgument("every feature needs declared bounds in the manifest", code="bounds_required")
        spec = model.TrainSpec(
            features=command.features, label=command.label,
            bounds={f: declared.bounds[f] for f in command.features}, epochs=command.epochs,
            epsilon=epsilon_value(command.epsilon), delta=command.delta,
            model=command.model)  # type: ignore[arg-type]
        try:
            model.validate(spec, raw)
        except model.ModelError as exc:
            raise InvalidArgument(str(exc), code=exc.code) from exc
        return Planned(command, state, ds, _model_schema(), train=spec)

    # ---- producing -----------------------------------------------------------------------------------------
    def rows(self, planned: Planned) -> Iterator[pa.RecordBatch]:
        """The release's batches for a ``rows`` plan (built and verified on first use)."""
        assert planned.scan is not None and planned.policy is not None
        node = self._node
        release = node.releases.get(planned.state.id, planned.dataset.location, planned.dataset.sha256,
                                    planned.policy, planned.rows)
        return self._scan(release, planned.scan)

    def hosted_rows(self, grant: Grant) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
        """A partition hosted for a peer: the peer's licensed policy applied here (this node's own pseudonym key,
        its own suppression and checks), the peer's query re-validated against the released schema."""
        part = self._node.federation.hosted(grant.partition)
        raw = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(part.arrow_schema)))
        policy = ReleasePolicy.from_json(grant.policy)
        command = RowsCommand.from_object({"license": grant.license, "dataset": grant.dataset,
                                           **({"columns": grant.columns} if grant.columns is not None else {}),
                                           "where": grant.where,
                                           **({"limit": grant.limit} if grant.limit is not None else {})})
        scan = plan_rows(command, release_schema(raw, policy), None, self._node.settings.max_query_rows)
        release = self._node.releases.get(f"{grant.license}.{part.id}", part.location, part.sha256, policy,
                                          grant.rows)
        return scan.schema, self._scan(release, scan)

    def _scan(self, release: Release, scan: ScanPlan) -> Iterator[pa.RecordBatch]:
        batch_rows = self._node.settings.batch_rows
        source = pds.dataset(release.table)
        if scan.filter is None and scan.limit is None:
            # A projection of a verified release only merges its classes: it stays k-anonymous.
            batches: Iterator[pa.RecordBatch] = source.scanner(columns=scan.columns,
                                                               batch_size=batch_rows).to_batches()
            return batches
        table = source.to_table(columns=scan.columns, filter=scan.filter)
        if scan.limit is not None:
            table = table.slice(0, scan.limit)
        return iter(output_is_k_anonymous(table, release).to_batches(batch_rows))

    def _rows_of(self, planned: Planned) -> pa.Table:
        table = self._node.store.table(planned.dataset.location)
        return table if planned.rows is None else table.slice(0, planned.rows)

    def aggregate(self, principal: Principal, planned: Planned, query: str) -> pa.Table:
        spec = planned.aggregate
        assert spec is not None
        charge = self._node.budgets.charge(actor=principal.id, license_id=planned.state.id,
                                           dataset_id=planned.dataset.id, mode="aggregate", units=spec.epsilon,
                                           delta=spec.delta, query=query)
        table = self._rows_of(planned)
        needed = [c for c in table.column_names if c in {*spec.keys, spec.column, spec.privacy_unit}]
        table = pds.dataset(table).to_table(columns=needed, filter=planned.filter)
        try:  # refusals that only the data can reveal come after the charge, which stays spent
            released = dp.release(table, spec)
        except dp.DPError as exc:
            raise InvalidArgument(str(exc), code=exc.code) from exc
        self._node.budgets.record(charge.id, {"mechanism": released.mechanism, "scale": released.scale})
        meta = {**released.metadata(), "dsnode.epsilon_charged": format_epsilon(charge.units),
                "dsnode.license_epsilon_remaining": format_epsilon(charge.license_remaining),
                "dsnode.dataset_epsilon_remaining": format_epsilon(charge.dataset_remaining),
                "dsnode.charge": charge.id}
        return released.table.cast(planned.schema).replace_schema_metadata(meta)

    def train(self, principal: Principal, planned: Planned, query: str) -> pa.Table:
        spec = planned.train
        assert spec is not None and isinstance(planned.command, TrainCommand)
        charge = self._node.budgets.charge(actor=principal.id, license_id=planned.state.id,
                                           dataset_id=planned.dataset.id, mode="model",
                                           units=planned.command.epsilon, delta=spec.delta, query=query)
        table = self._rows_of(planned).select([*spec.features, spec.label])
        try:  # too few usable rows or a non-binary label show only in the data: the charge stays spent
            trained = model.train(table, spec)
        except model.ModelError as exc:
            raise InvalidArgument(str(exc), code=exc.code) from exc
        self._node.budgets.record(charge.id, {
            "accountant": trained.accountant, "epsilon": trained.epsilon, "delta": trained.delta,
            "steps": trained.steps, "noise_multiplier": trained.noise_multiplier,
            "accountant_state": base64.b64encode(trained.accountant_state).decode("ascii")})
        meta = {"dsnode.epsilon_charged": format_epsilon(charge.units),
                "dsnode.license_epsilon_remaining": format_epsilon(charge.license_remaining),
                "dsnode.dataset_epsilon_remaining": format_epsilon(charge.dataset_remaining),
                "dsnode.charge": charge.id}
        return pa.table({
            "model": [trained.model_bytes], "format": ["dsnode.model/1"], "epsilon": [trained.epsilon],
            "delta": [trained.delta], "accountant": [trained.accountant], "steps": [trained.steps],
            "noise_multiplier": [trained.noise_multiplier]}, schema=planned.schema).replace_schema_metadata(meta)


def _plain(type_: pa.DataType) -> pa.DataType:
    if pa.types.is_dictionary(type_):
        type_ = type_.value_type
    return pa.string() if pa.types.is_large_string(type_) else type_
