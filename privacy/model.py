"""Differentially private training of small binary classifiers (DP-SGD with Opacus) on Arrow tables.

**Guarantee.** The parameters of the model ``train`` returns (so ``TrainedModel.model_bytes`` and anything a buyer
computes from them) are (ε, δ)-differentially private with respect to adding or removing one row of the table:
DP-SGD with Poisson sampling, per-row gradient clipping to L2 norm ``max_grad_norm`` and Gaussian noise, ε being the
accountant's upper bound at δ. Treated as public: the spec, the declared bounds and the number of usable rows (it
fixes the sampling rate q, hence σ and the step count; the node lists row counts in its catalog anyway).

**Accountant.** RDP (Mironov 2017) by default: conservative, fast (about 1 s to plan σ) and silent. PRV (Gopi et al.
2021, Opacus's own default) is tighter, about 7 % less noise for the same ε, but takes seconds longer and its domain
sizing emits ``UserWarning: Optimal order is the largest alpha…`` from inside Opacus on ordinary inputs. Either way σ
is planned for exactly the steps taken and the achieved ε is re-checked to be ≤ the target before anything is
returned.

**Not covered by ε** (plain functions of the data, computed inside the node): ``train_accuracy``,
``holdout_accuracy``, ``holdout_auc`` and ``majority_baseline`` (diagnostics for the data owner and the demo, not for
the buyer), how many rows were dropped for nulls (never returned), and the refusals raised after the data are read
(``too_few_rows``, ``invalid_label``), which reveal a dataset-level fact with the budget already charged.

**Preprocessing.** Rows with a null (or NaN) in any feature or in the label are dropped. Each feature is clamped to
its declared bounds ``[lo, hi]`` and mapped linearly onto [-1, 1]; bounds are never computed from the data, since
data-derived bounds would leak. The usable rows are split at random into a training part and a holdout of
``max(1, round(n * holdout))`` rows; holdout rows never touch the parameters.

**Randomness.** Opacus's ``secure_mode`` (CSPRNG noise and sampling, against floating-point attacks on Gaussian
noise) needs ``torchcsprng``, which does not exist for this CPU torch build, so training runs with
``secure_mode=False`` on a per-call ``torch.Generator`` (Mersenne Twister), seeded from the OS unless
``TrainSpec.seed`` is set (tests only). Opacus then warns ``UserWarning: Secure RNG turned off…`` on every call
(callers running with warnings as errors must filter that message). No process-global RNG, thread count or warning
filter is touched.

**Codes** of :class:`ModelError`: ``unknown_column``, ``invalid_column_type``, ``invalid_train``,
``invalid_bounds``, ``invalid_epsilon``, ``invalid_delta``, ``too_few_rows``, ``invalid_label``, ``invalid_model``,
``invalid_accountant_state``.

**Model format** (``model_bytes``, version 1)::

    b"DSNMODEL" | header length (uint32, big-endian) | header (UTF-8 JSON) | torch.save(state_dict)

The header is ``{"format": "dsnode.model", "version": 1, "model": "logreg"|"mlp", "hidden": int|null,
"features": [..], "bounds": {feature: [lo, hi]}, "scale": "clamp, then linear onto [-1, 1]", "label": name,
"output": "P(label=1)", "privacy": {"epsilon", "delta", "accountant", "noise_multiplier", "sample_rate", "steps",
"max_grad_norm"}}``; it holds nothing that is not DP or public. The network is ``nn.Sequential``: logreg =
``Linear(d, 1)``; mlp = ``Linear(d, hidden), ReLU, Linear(hidden, 1)``; the output is a logit. ``load`` reads the
tensors with ``torch.load(weights_only=True)``, so untrusted bytes cannot run code.

**Accountant state** (``accountant_state``): ``{"version": 1, "mechanism": "prv"|"rdp", "history": [[σ, q,
steps], ..]}`` as UTF-8 JSON, Opacus's accountant history; :func:`epsilon_from_state` recomputes ε from it.
"""

from __future__ import annotations

import io
import json
import math
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import torch
from opacus import PrivacyEngine  # type: ignore[import-untyped]
from opacus.accountants import create_accountant  # type: ignore[import-untyped]
from opacus.accountants.utils import get_noise_multiplier  # type: ignore[import-untyped]
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

__all__ = [
    "MIN_ROWS",
    "ModelError",
    "TrainSpec",
    "TrainedModel",
    "epsilon_from_state",
    "load",
    "train",
    "validate",
]

MIN_ROWS = 100
"""Fewest usable rows (after dropping nulls, before the holdout split) ``train`` accepts."""

MAX_EPSILON = 50.0
MAX_DELTA = 1e-3
MAX_EPOCHS = 50
MAX_FEATURES = 256
MAX_HIDDEN = 1024
MAX_BATCH_SIZE = 65_536

_MAGIC = b"DSNMODEL"
_FORMAT = "dsnode.model"
_VERSION = 1
_MAX_HEADER = 1 << 20
_MECHANISMS = ("prv", "rdp")
_SCALE = "clamp, then linear onto [-1, 1]"
# Opacus's default RDP orders stop at 63: above ε ≈ 0.4 at δ = 1e-5 that is fine, below it the bound loosens (and
# Opacus warns) and below ε ≈ 0.2 no σ is found at all, since the best order is about 1 + 2 ln(1/δ) / ε. These reach
# ε ≈ 0.005; more orders make every σ search slower.
_RDP_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + [80, 96, 128, 192, 256, 384, 512, 768,
                                                                            1024, 1536, 2048]

Predictor = Callable[[pa.Table], npt.NDArray[np.float64]]


class ModelError(ValueError):
    """A refused training request or an unreadable model. ``code`` is stable; ``message`` is safe to show (it names
    no data value)."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: object, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


@dataclass(frozen=True, slots=True)
class TrainSpec:
    """What to train. Construction checks everything that needs no schema and raises :class:`ModelError`.

    ``bounds`` maps each feature to its declared ``(lo, hi)``, lo < hi, in the column's own unit; entries for other
    columns are ignored (so a dataset's whole bounds map can be passed). ``epsilon`` is the target ε in (0, 50],
    ``delta`` the target δ in (0, 1e-3) and below 1/rows. ``batch_size`` is the expected batch size: the Poisson
    sampling rate is q = 1 / ceil(n_train / batch_size). ``learning_rate`` is plain SGD's step size on the mean
    binary cross-entropy; it defaults to 1.0 because with features in [-1, 1], clipping at 1 and a few dozen steps,
    0.1 leaves the weights where they started (holdout AUC 0.50 on the sample data). An ε for which no σ ≤ 10⁶
    exists (with RDP, roughly below 0.004) is refused by ``train`` (``invalid_epsilon``). ``seed`` makes a run
    reproducible (tests only; production leaves it None).
    """

    features: tuple[str, ...]
    label: str
    bounds: Mapping[str, tuple[float, float]]
    epochs: int
    epsilon: float
    delta: float
    model: Literal["logreg", "mlp"] = "logreg"
    hidden: int = 16
    batch_size: int = 256
    max_grad_norm: float = 1.0
    learning_rate: float = 1.0
    accountant: Literal["rdp", "prv"] = "rdp"
    seed: int | None = None

    def __post_init__(self) -> None:
        features = self.features
        if isinstance(features, str) or not isinstance(features, tuple | list):
            raise ModelError("features must be a list of column names", code="invalid_train")
        if not 1 <= len(features) <= MAX_FEATURES or not all(isinstance(f, str) and f for f in features):
            raise ModelError(f"features must be 1-{MAX_FEATURES} column names", code="invalid_train")
        if len(set(features)) != len(features):
            raise ModelError("features must not repeat", code="invalid_train")
        if not isinstance(self.label, str) or not self.label:
            raise ModelError("label must be a column name", code="invalid_train")
        if self.label in features:
            raise ModelError("the label cannot also be a feature", code="invalid_train")
        object.__setattr__(self, "features", tuple(features))
        object.__setattr__(self, "bounds", MappingProxyType(_checked_bounds(self.bounds, self.features)))
        if not _integer(self.epochs, 1, MAX_EPOCHS):
            raise ModelError(f"epochs must be an integer 1-{MAX_EPOCHS}", code="invalid_train")
        if not _number(self.epsilon) or not 0 < self.epsilon <= MAX_EPSILON:
            raise ModelError(f"epsilon must be a number in (0, {MAX_EPSILON:g}]", code="invalid_epsilon")
        if not _number(self.delta) or not 0 < self.delta < MAX_DELTA:
            raise ModelError(f"delta must be a number in (0, {MAX_DELTA:g})", code="invalid_delta")
        if self.model not in ("logreg", "mlp"):
            raise ModelError("model must be 'logreg' or 'mlp'", code="invalid_train")
        if not _integer(self.hidden, 1, MAX_HIDDEN):
            raise ModelError(f"hidden must be an integer 1-{MAX_HIDDEN}", code="invalid_train")
        if not _integer(self.batch_size, 1, MAX_BATCH_SIZE):
            raise ModelError(f"batch_size must be an integer 1-{MAX_BATCH_SIZE}", code="invalid_train")
        if not _number(self.max_grad_norm) or not 0 < self.max_grad_norm <= 100:
            raise ModelError("max_grad_norm must be a number in (0, 100]", code="invalid_train")
        if not _number(self.learning_rate) or not 0 < self.learning_rate <= 10:
            raise ModelError("learning_rate must be a number in (0, 10]", code="invalid_train")
        if self.accountant not in _MECHANISMS:
            raise ModelError("accountant must be 'prv' or 'rdp'", code="invalid_train")
        if self.seed is not None and not _integer(self.seed, 0, 2**63 - 1):
            raise ModelError("seed must be a non-negative integer", code="invalid_train")


def _checked_bounds(bounds: object, features: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    if not isinstance(bounds, Mapping):
        raise ModelError("bounds must map each feature to [lo, hi]", code="invalid_bounds")
    out: dict[str, tuple[float, float]] = {}
    for name in features:
        pair = bounds.get(name)
        if not isinstance(pair, tuple | list) or len(pair) != 2 or not all(_number(v) for v in pair):
            raise ModelError("every feature needs declared finite bounds [lo, hi]", code="invalid_bounds")
        lo, hi = float(pair[0]), float(pair[1])
        if not lo < hi:
            raise ModelError("bounds need lo < hi", code="invalid_bounds")
        out[name] = (lo, hi)
    return out


@dataclass(frozen=True, slots=True)
class TrainedModel:
    """The outcome of :func:`train`.

    DP or public (may go to the buyer): ``model_bytes`` (format in the module docstring), ``epsilon`` (achieved ε at
    ``delta``, accountant upper bound, ≤ the spec's target), ``delta``, ``accountant``, ``accountant_state``,
    ``steps`` (optimizer steps taken = epochs × ceil(n_train / batch_size)) and ``noise_multiplier`` (σ, noise
    standard deviation over ``max_grad_norm``).

    NOT differentially private (exact statistics of the data, for the data owner's report and the demo only):
    ``train_accuracy`` (on the training part), ``holdout_accuracy`` and ``holdout_auc`` (on the holdout; AUC is NaN
    when the holdout has one class), ``majority_baseline`` (accuracy on the holdout of always predicting the training
    part's majority class). Accuracy thresholds P(label=1) at 0.5.
    """

    model_bytes: bytes
    epsilon: float
    delta: float
    accountant: str
    accountant_state: bytes
    steps: int
    noise_multiplier: float
    train_accuracy: float
    holdout_accuracy: float
    holdout_auc: float
    majority_baseline: float

    DIAGNOSTICS: ClassVar[tuple[str, ...]] = ("train_accuracy", "holdout_accuracy", "holdout_auc", "majority_baseline")
    """The fields that are not differentially private."""


def validate(spec: TrainSpec, schema: pa.Schema, *, rows: int | None = None) -> None:
    """Check ``spec`` against a dataset's ``schema`` (and its public row count, when given) without reading data.

    Cheap; call it before charging the budget. Features must be integer, floating or decimal columns and the label a
    boolean or integer column; with ``rows``, the table needs at least ``MIN_ROWS`` rows and δ < 1/rows.
    """
    if spec.label not in schema.names:
        raise ModelError("the request names a column the dataset does not have", code="unknown_column")
    _check_features(schema, spec.features)
    kind = schema.field(spec.label).type
    if not (pa.types.is_boolean(kind) or pa.types.is_integer(kind)):
        raise ModelError("the label must be a boolean or 0/1 integer column", code="invalid_column_type")
    if rows is not None:
        if rows < MIN_ROWS:
            raise ModelError(f"training needs at least {MIN_ROWS} rows", code="too_few_rows")
        if spec.delta >= 1 / rows:
            raise ModelError("delta must be below 1 / number of rows", code="invalid_delta")


def _check_features(schema: pa.Schema, features: tuple[str, ...]) -> None:
    for name in features:
        if name not in schema.names:
            raise ModelError("the request names a column the dataset does not have", code="unknown_column")
        kind = schema.field(name).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)):
            raise ModelError("features must be numeric columns", code="invalid_column_type")


def train(table: pa.Table, spec: TrainSpec, *, holdout: float = 0.2) -> TrainedModel:
    """Train ``spec.model`` with DP-SGD on ``table`` and account its privacy loss (see the module docstring).

    ``holdout`` in (0, 0.5] is the fraction of usable rows kept out of training for the diagnostics. Raises
    :class:`ModelError` for a bad request; ``RuntimeError`` if the accountant's ε would exceed the target (a bug
    guard: the model is then withheld).
    """
    validate(spec, table.schema, rows=table.num_rows)
    if not _number(holdout) or not 0 < holdout <= 0.5:
        raise ModelError("holdout must be a fraction in (0, 0.5]", code="invalid_train")
    x, usable = _scaled(table, spec.features, spec.bounds)
    y, labelled = _labels(table, spec.label)
    keep = usable & labelled
    x, y = x[keep], y[keep]
    n = len(y)
    if n < MIN_ROWS:
        raise ModelError(f"training needs at least {MIN_ROWS} rows without nulls", code="too_few_rows")

    gen = torch.Generator()
    if spec.seed is None:
        gen.seed()
    else:
        gen.manual_seed(spec.seed)
    order = torch.randperm(n, generator=gen).numpy()
    n_hold = max(1, round(n * holdout))
    hold, fit = order[:n_hold], order[n_hold:]
    run = _fit(x[fit], y[fit], spec, gen)

    header = {
        "format": _FORMAT, "version": _VERSION, "model": spec.model,
        "hidden": spec.hidden if spec.model == "mlp" else None,
        "features": list(spec.features), "bounds": {f: list(spec.bounds[f]) for f in spec.features},
        "scale": _SCALE, "label": spec.label, "output": "P(label=1)",
        "privacy": {"epsilon": run.epsilon, "delta": spec.delta, "accountant": spec.accountant,
                    "noise_multiplier": run.sigma, "sample_rate": run.sample_rate, "steps": run.steps,
                    "max_grad_norm": spec.max_grad_norm},
    }
    model_bytes = _serialize(header, run.net)
    p_all = _read(model_bytes).matrix(x)  # the diagnostics judge the bytes that leave, not the live module
    y_fit, y_hold = y[fit], y[hold]
    majority = 1.0 if y_fit.mean() >= 0.5 else 0.0
    return TrainedModel(
        model_bytes=model_bytes, epsilon=run.epsilon, delta=spec.delta, accountant=spec.accountant,
        accountant_state=_json({"version": _VERSION, "mechanism": spec.accountant, "history": run.history}),
        steps=run.steps, noise_multiplier=run.sigma,
        train_accuracy=_accuracy(p_all[fit], y_fit), holdout_accuracy=_accuracy(p_all[hold], y_hold),
        holdout_auc=_auc(p_all[hold], y_hold), majority_baseline=float(np.mean(y_hold == majority)),
    )


@dataclass(frozen=True, slots=True)
class _Run:
    net: nn.Sequential
    sigma: float
    sample_rate: float
    steps: int
    epsilon: float
    history: list[list[float]]


def _fit(x: npt.NDArray[np.float32], y: npt.NDArray[np.float32], spec: TrainSpec, gen: torch.Generator) -> _Run:
    """DP-SGD over the training rows: σ planned for exactly the steps taken, Poisson batches, flat clipping."""
    net = _network(spec.model, x.shape[1], spec.hidden)
    _initialise(net, gen)
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=spec.batch_size,
                        generator=gen)
    sample_rate = 1 / len(loader)  # what Opacus's DPDataLoader uses
    planned = spec.epochs * len(loader)
    try:
        # Planned by steps, not epochs: Opacus's make_private_with_epsilon plans int(epochs / sample_rate) steps,
        # which float rounding makes one short of the steps actually taken for many (epochs, n) pairs.
        sigma = float(get_noise_multiplier(target_epsilon=spec.epsilon, target_delta=spec.delta,
                                           sample_rate=sample_rate, steps=planned, accountant=spec.accountant,
                                           epsilon_tolerance=min(0.01, spec.epsilon / 100),
                                           **_accounting(spec.accountant)))
    except ValueError as exc:  # Opacus gives up above σ = 1e6
        raise ModelError("epsilon is too small for this training run", code="invalid_epsilon") from exc
    engine = PrivacyEngine(accountant=spec.accountant, secure_mode=False)
    private_net, optimizer, private_loader = engine.make_private(
        module=net, optimizer=torch.optim.SGD(net.parameters(), lr=spec.learning_rate), data_loader=loader,
        noise_multiplier=sigma, max_grad_norm=spec.max_grad_norm, poisson_sampling=True, noise_generator=gen)
    loss_fn = nn.BCEWithLogitsLoss()
    private_net.train()
    steps = 0
    for _ in range(spec.epochs):
        for xb, yb in private_loader:
            optimizer.zero_grad(set_to_none=True)
            # Opacus's full backward hooks make torch warn when no input requires a gradient; d extra floats per row
            # are cheaper than a process-global warning filter.
            loss_fn(private_net(xb.requires_grad_()).squeeze(-1), yb).backward()
            optimizer.step()
            steps += 1
    epsilon = float(engine.accountant.get_epsilon(spec.delta, **_accounting(spec.accountant)))
    if steps != planned or not 0 < epsilon <= spec.epsilon:
        raise RuntimeError("DP-SGD accounting does not match its plan; the model is withheld")
    history = [[float(s), float(q), int(k)] for s, q, k in engine.accountant.history]
    return _Run(net, sigma, sample_rate, steps, epsilon, history)


def load(model_bytes: bytes) -> Predictor:
    """A predictor for bytes ``train`` produced: table with the model's feature columns → P(label=1) per row as
    float64 (NaN for rows with a null or NaN feature). Features are clamped and scaled with the stored bounds.
    Raises :class:`ModelError` ``invalid_model`` for anything else than format version 1."""
    return _read(model_bytes)


def epsilon_from_state(accountant_state: bytes, delta: float) -> float:
    """Recompute ε at ``delta`` from a persisted ``TrainedModel.accountant_state`` with a fresh Opacus accountant."""
    try:
        state = json.loads(accountant_state.decode("utf-8"))
        mechanism, history = state["mechanism"], state["history"]
        ok = (state["version"] == _VERSION and mechanism in _MECHANISMS and isinstance(history, list)
              and all(isinstance(h, list) and len(h) == 3 and _number(h[0]) and h[0] > 0 and _number(h[1])
                      and 0 < h[1] <= 1 and _integer(h[2], 1, 2**31) for h in history))
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError, KeyError) as exc:
        raise ModelError("unreadable accountant state", code="invalid_accountant_state") from exc
    if not ok:
        raise ModelError("unreadable accountant state", code="invalid_accountant_state")
    if not _number(delta) or not 0 < delta < 1:
        raise ModelError("delta must be a number in (0, 1)", code="invalid_delta")
    accountant = create_accountant(mechanism=mechanism)
    accountant.history = [(float(s), float(q), int(k)) for s, q, k in history]
    return float(accountant.get_epsilon(delta, **_accounting(mechanism)))


def _accounting(mechanism: str) -> dict[str, Any]:
    """Keyword arguments for the accountant's ``get_epsilon``, the same when planning, training and auditing."""
    return {"alphas": _RDP_ORDERS} if mechanism == "rdp" else {}


def _read(model_bytes: bytes) -> _Predictor:
    header, payload = _split(model_bytes)
    net = _network(header["model"], len(header["features"]), header["hidden"] or 1)
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for corrupt archives and refused pickles
        raise ModelError("the model bytes are not a dsnode model", code="invalid_model") from exc
    if not isinstance(state, dict):
        raise ModelError("the model bytes are not a dsnode model", code="invalid_model")
    return _Predictor(header, net, state)


class _Predictor:
    """The callable :func:`load` returns."""

    __slots__ = ("_bounds", "_features", "_net")

    def __init__(self, header: Mapping[str, Any], net: nn.Sequential, state: Mapping[str, torch.Tensor]) -> None:
        try:
            net.load_state_dict(state, strict=True)
        except (RuntimeError, TypeError) as exc:
            raise ModelError("the model weights do not match its header", code="invalid_model") from exc
        net.eval()
        self._net = net
        self._features: tuple[str, ...] = tuple(header["features"])
        self._bounds = {f: (float(lo), float(hi)) for f, (lo, hi) in header["bounds"].items()}

    def __call__(self, table: pa.Table) -> npt.NDArray[np.float64]:
        _check_features(table.schema, self._features)
        x, usable = _scaled(table, self._features, self._bounds)
        p = self.matrix(np.where(usable[:, None], x, 0.0).astype(np.float32))
        p[~usable] = np.nan
        return p

    def matrix(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """P(label=1) for already scaled features (rows × features)."""
        with torch.inference_mode():
            logits = self._net(torch.from_numpy(np.ascontiguousarray(x))).squeeze(-1)
            return np.asarray(torch.sigmoid(logits.double()).numpy(), dtype=np.float64)


def _network(kind: str, inputs: int, hidden: int) -> nn.Sequential:
    if kind == "logreg":
        return nn.Sequential(nn.Linear(inputs, 1))
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, 1))


def _initialise(net: nn.Sequential, gen: torch.Generator) -> None:
    """PyTorch's default Linear initialisation (uniform ±1/sqrt(fan_in)), drawn from ``gen`` instead of the global
    RNG so concurrent or seeded runs do not interfere."""
    for layer in net:
        if isinstance(layer, nn.Linear):
            bound = 1 / math.sqrt(layer.in_features)
            nn.init.uniform_(layer.weight, -bound, bound, generator=gen)
            nn.init.uniform_(layer.bias, -bound, bound, generator=gen)


def _weights(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _scaled(table: pa.Table, features: tuple[str, ...],
            bounds: Mapping[str, tuple[float, float]]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """Features clamped to their bounds and mapped onto [-1, 1] (rows × features, float32), and which rows have no
    null or NaN feature."""
    columns = []
    for name in features:
        lo, hi = bounds[name]
        values = _floats(table.column(name))
        columns.append((np.clip(values, lo, hi) - lo) / (hi - lo) * 2 - 1)
    x = np.stack(columns, axis=1) if columns else np.empty((table.num_rows, 0))
    return x.astype(np.float32), ~np.isnan(x).any(axis=1)


def _labels(table: pa.Table, name: str) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    values = _floats(table.column(name))
    present = ~np.isnan(values)
    if not np.isin(values[present], (0.0, 1.0)).all():
        raise ModelError("the label column holds values other than 0 and 1", code="invalid_label")
    return np.where(present, values, 0.0).astype(np.float32), present


def _floats(column: pa.ChunkedArray) -> npt.NDArray[np.float64]:
    """The column as float64 with NaN for nulls."""
    as_float = pc.cast(column, pa.float64())
    return np.asarray(as_float.to_numpy(zero_copy_only=False), dtype=np.float64)


def _accuracy(p: npt.NDArray[np.float64], y: npt.NDArray[np.float32]) -> float:
    return float(np.mean((p >= 0.5) == (y == 1.0)))


def _auc(p: npt.NDArray[np.float64], y: npt.NDArray[np.float32]) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half); NaN with a single class."""
    positives = int((y == 1.0).sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return math.nan
    _, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2)[inverse]
    return float((ranks[y == 1.0].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _serialize(header: Mapping[str, Any], net: nn.Module) -> bytes:
    head = _json(header)
    buffer = io.BytesIO()
    torch.save(_weights(net), buffer)
    return _MAGIC + struct.pack(">I", len(head)) + head + buffer.getvalue()


def _split(model_bytes: bytes) -> tuple[dict[str, Any], bytes]:
    """Header and torch payload of ``model_bytes``, the header checked field by field."""
    bad = ModelError("the model bytes are not a dsnode model", code="invalid_model")
    start = len(_MAGIC) + 4
    if not isinstance(model_bytes, bytes) or len(model_bytes) < start or not model_bytes.startswith(_MAGIC):
        raise bad
    (size,) = struct.unpack(">I", model_bytes[len(_MAGIC):start])
    if size > _MAX_HEADER or len(model_bytes) < start + size:
        raise bad
    try:
        header = json.loads(model_bytes[start:start + size].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad from exc
    if not isinstance(header, dict) or header.get("format") != _FORMAT or header.get("version") != _VERSION:
        raise bad
    features, bounds, hidden = header.get("features"), header.get("bounds"), header.get("hidden")
    if header.get("model") not in ("logreg", "mlp") or not isinstance(features, list) or not features:
        raise bad
    if not all(isinstance(f, str) for f in features) or len(set(features)) != len(features):
        raise bad
    if header["model"] == "mlp" and not _integer(hidden, 1, MAX_HIDDEN):
        raise bad
    try:
        _checked_bounds(bounds, tuple(features))
    except ModelError as exc:
        raise bad from exc
    return header, model_bytes[start + size:]
