"""DP-SGD model training (privacy.model): the (ε, δ) guarantee as accounted, utility, the model format, refusals.

The sample's own ``label`` is Bernoulli(0.6 · risk(income, age)): the Bayes-optimal classifier beats always-0 by
under one point of accuracy there, so accuracy cannot show learning. These tests draw the label as
Bernoulli(risk) from the same columns and the same risk formula (node/sample.py): Bayes accuracy ≈ 0.79 against a
majority baseline ≈ 0.65, and the Bayes-optimal rule (risk ≥ 0.5) is known exactly.

Every training run here warns ``Secure RNG turned off``: Opacus says so whenever ``secure_mode=False``, and secure
mode needs torchcsprng, which does not exist for this CPU torch build (privacy.model documents it). That one
message is ignored module-wide; any other warning still fails.
"""

from __future__ import annotations

import io
import json
import math
import struct
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import torch

import privacy.model as pm
from node.sample import personal_records
from privacy.model import MIN_ROWS, ModelError, TrainedModel, TrainSpec, epsilon_from_state, load, train, validate

pytestmark = pytest.mark.filterwarnings("ignore:Secure RNG turned off:UserWarning")

BOUNDS = {"age": (18.0, 80.0), "income": (0.0, 250_000.0)}  # declared, as a data owner would; not from the data


def _risk(table: pa.Table) -> np.ndarray:
    income = np.asarray(table["income"], dtype=np.float64)
    age = np.asarray(table["age"], dtype=np.float64)
    return 1 / (1 + np.exp((income - 90_000) / 25_000 + (age - 40) / 30))


def _records(rows: int, seed: int) -> pa.Table:
    """The sample's people with label ~ Bernoulli(risk): the sample's risk model without its 0.6 damping."""
    table = personal_records(rows, seed=seed)
    label = (np.random.default_rng(seed).random(rows) < _risk(table)).astype(np.int8)
    return table.set_column(table.schema.get_field_index("label"), "label", pa.array(label))


def _bayes_accuracy(table: pa.Table) -> float:
    return float(np.mean((_risk(table) >= 0.5) == (np.asarray(table["label"]) == 1)))


def _spec(**changes: Any) -> TrainSpec:
    base: dict[str, Any] = {"features": ("age", "income"), "label": "label", "bounds": BOUNDS, "epochs": 5,
                            "epsilon": 3.0, "delta": 1e-5, "seed": 7}
    return TrainSpec(**(base | changes))


def _parts(model_bytes: bytes) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Decode the documented format by hand: magic, uint32 BE header length, JSON header, torch state_dict."""
    assert model_bytes[:8] == b"DSNMODEL"
    (size,) = struct.unpack(">I", model_bytes[8:12])
    header = json.loads(model_bytes[12:12 + size])
    return header, torch.load(io.BytesIO(model_bytes[12 + size:]), weights_only=True)


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return _records(4000, seed=20261125)


@pytest.fixture(scope="module")
def trained(table: pa.Table) -> TrainedModel:
    return train(table, _spec())


# --- the guarantee, as accounted ---------------------------------------------------------------------------------

def test_achieved_epsilon_is_within_the_target(trained: TrainedModel) -> None:
    assert 0 < trained.epsilon <= 3.0
    assert trained.epsilon > 2.9  # σ is searched to within 1 % of the target, not wastefully high
    assert trained.delta == 1e-5 and trained.accountant == "rdp"
    assert trained.steps == 5 * math.ceil(3200 / 256)  # 4000 rows, 800 held out, batches of 256 expected
    assert trained.noise_multiplier > 0.5


def test_the_accountant_state_round_trips(trained: TrainedModel) -> None:
    state = json.loads(trained.accountant_state)
    assert state["version"] == 1 and state["mechanism"] == "rdp"
    [[sigma, rate, steps]] = state["history"]
    assert (sigma, rate, steps) == (trained.noise_multiplier, 1 / 13, trained.steps)
    assert epsilon_from_state(trained.accountant_state, trained.delta) == trained.epsilon
    # Tampering is visible: half the noise is a much larger ε.
    state["history"] = [[sigma / 2, rate, steps]]
    assert epsilon_from_state(json.dumps(state).encode(), trained.delta) > 2 * trained.epsilon


@pytest.mark.parametrize("state", [b"", b"{}", b"\xff", b'{"version": 1, "mechanism": "gdp", "history": []}',
                                   b'{"version": 1, "mechanism": "rdp", "history": [[1.0, 2.0, 5]]}',
                                   b'{"version": 1, "mechanism": "rdp", "history": [[-1.0, 0.1, 5]]}'])
def test_an_unreadable_accountant_state_is_refused(state: bytes) -> None:
    with pytest.raises(ModelError) as caught:
        epsilon_from_state(state, 1e-5)
    assert caught.value.code == "invalid_accountant_state"


def test_a_smaller_epsilon_buys_more_noise(table: pa.Table, trained: TrainedModel) -> None:
    tight = train(table, _spec(epsilon=0.3))
    assert 0 < tight.epsilon <= 0.3
    assert tight.noise_multiplier > 4 * trained.noise_multiplier
    assert tight.steps == trained.steps


def test_steps_are_planned_as_taken_where_opacus_rounds_epochs_down() -> None:
    # 375 rows → 300 training rows, batches of 4 → 75 steps per epoch. Opacus's make_private_with_epsilon plans
    # int(3 / (1 / 75)) = 224 steps for 3 epochs but 225 are taken: its σ would overshoot the target ε.
    assert int(3 / (1 / 75)) == 224
    model = train(_records(375, seed=3), _spec(epochs=3, epsilon=1.0, batch_size=4))
    assert model.steps == 225
    assert 0 < model.epsilon <= 1.0


@pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha:UserWarning")
def test_prv_accounting_needs_less_noise_for_the_same_target(table: pa.Table, trained: TrainedModel) -> None:
    # The warning comes from inside Opacus's PRV accountant: it sizes its discretisation domain with an RDP bound
    # at δ_error / (8 T) using the default RDP orders; a loose bound there only widens that domain.
    prv = train(table, _spec(accountant="prv", model="mlp", hidden=8))
    assert prv.accountant == "prv" and json.loads(prv.accountant_state)["mechanism"] == "prv"
    assert 0 < prv.epsilon <= 3.0
    assert prv.noise_multiplier < trained.noise_multiplier  # PRV is the tighter accountant
    assert prv.steps == trained.steps
    assert epsilon_from_state(prv.accountant_state, prv.delta) == prv.epsilon
    assert prv.holdout_accuracy > prv.majority_baseline + 0.05
    header, state = _parts(prv.model_bytes)
    assert header["model"] == "mlp" and header["hidden"] == 8 and state["0.weight"].shape == (8, 2)


# --- utility ------------------------------------------------------------------------------------------------------

def test_the_model_beats_the_majority_baseline(trained: TrainedModel) -> None:
    assert trained.majority_baseline < 0.7
    assert trained.holdout_accuracy > trained.majority_baseline + 0.08
    assert trained.holdout_auc > 0.8
    assert trained.train_accuracy > trained.majority_baseline


def test_at_epsilon_3_the_model_nearly_reaches_the_bayes_optimum(table: pa.Table, trained: TrainedModel) -> None:
    p = load(trained.model_bytes)(table)
    accuracy = float(np.mean((p >= 0.5) == (np.asarray(table["label"]) == 1)))
    assert accuracy >= _bayes_accuracy(table) - 0.04


def test_a_tiny_epsilon_does_not_reach_the_optimum() -> None:
    # 400 rows at ε = 0.02: σ ≈ 150 swamps the clipped gradients, so the weights are mostly noise. Single runs can
    # land near the optimum by chance; the mean over six seeds stays far below it (gap ≥ 0.18 over 8 data/seed sets
    # when this test was written, against the 0.1 asserted).
    table = _records(400, seed=11)
    runs = [train(table, _spec(epsilon=0.02, batch_size=64, seed=seed)) for seed in range(1, 7)]
    assert all(run.epsilon <= 0.02 for run in runs)
    assert np.mean([run.holdout_accuracy for run in runs]) < _bayes_accuracy(table) - 0.1


# --- the model format ----------------------------------------------------------------------------------------------

def test_the_model_reloads_and_predicts_as_trained(table: pa.Table, trained: TrainedModel) -> None:
    p = load(trained.model_bytes)(table)
    assert p.dtype == np.float64 and p.shape == (4000,) and np.all((p > 0) & (p < 1))
    # The diagnostics were computed by train() on 3200 training and 800 holdout rows; the reloaded model must
    # reproduce them exactly over the whole table.
    correct = int(np.sum((p >= 0.5) == (np.asarray(table["label"]) == 1)))
    assert correct == round(trained.train_accuracy * 3200) + round(trained.holdout_accuracy * 800)
    # Known answer from the documented format: logistic regression on features clamped and mapped onto [-1, 1].
    header, state = _parts(trained.model_bytes)
    x = np.stack([(np.clip(np.asarray(table[f], dtype=np.float64), lo, hi) - lo) / (hi - lo) * 2 - 1
                  for f, (lo, hi) in ((f, header["bounds"][f]) for f in header["features"])], axis=1)
    w, b = state["0.weight"].double().numpy()[0], state["0.bias"].double().numpy()[0]
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-(x @ w + b))), rtol=1e-5)


def test_the_model_carries_its_guarantee_and_nothing_private(trained: TrainedModel) -> None:
    header, state = _parts(trained.model_bytes)
    assert header["format"] == "dsnode.model" and header["version"] == 1 and header["model"] == "logreg"
    assert header["features"] == ["age", "income"] and header["label"] == "label"
    assert header["bounds"] == {"age": [18.0, 80.0], "income": [0.0, 250_000.0]}
    assert header["privacy"] == {"epsilon": trained.epsilon, "delta": 1e-5, "accountant": "rdp",
                                 "noise_multiplier": trained.noise_multiplier, "sample_rate": 1 / 13,
                                 "steps": trained.steps, "max_grad_norm": 1.0}
    assert set(state) == {"0.weight", "0.bias"}
    # The non-DP diagnostics stay in TrainedModel; the bytes a buyer receives hold none of them.
    text = json.dumps(header)
    assert not any(word in text for word in ("accuracy", "auc", "baseline"))
    assert set(TrainedModel.DIAGNOSTICS) == {"train_accuracy", "holdout_accuracy", "holdout_auc",
                                             "majority_baseline"}


def test_the_same_seed_trains_the_same_model(table: pa.Table, trained: TrainedModel) -> None:
    assert train(table, _spec()) == trained


def test_features_outside_their_bounds_are_clamped_and_nulls_give_nan(trained: TrainedModel) -> None:
    predict = load(trained.model_bytes)
    edge = predict(pa.table({"age": [80, 18], "income": [250_000, 0]}))
    beyond = predict(pa.table({"age": [200, -5], "income": [10**9, -10**9]}))
    np.testing.assert_array_equal(edge, beyond)
    gaps = predict(pa.table({"income": pa.array([1.0, None, math.nan]), "age": pa.array([30, 30, 30])}))
    assert math.isfinite(gaps[0]) and math.isnan(gaps[1]) and math.isnan(gaps[2])


def test_a_predictor_needs_the_features(trained: TrainedModel) -> None:
    with pytest.raises(ModelError) as caught:
        load(trained.model_bytes)(pa.table({"age": [30]}))
    assert caught.value.code == "unknown_column"
    with pytest.raises(ModelError) as caught:
        load(trained.model_bytes)(pa.table({"age": [30], "income": ["high"]}))
    assert caught.value.code == "invalid_column_type"


class _Payload:
    """Stands in for a pickle gadget: anything that is not a tensor must not be unpickled."""


def test_foreign_or_tampered_model_bytes_are_refused(trained: TrainedModel) -> None:
    header, state = _parts(trained.model_bytes)

    def pack(head: dict[str, Any], payload: object) -> bytes:
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        raw = json.dumps(head).encode()
        return b"DSNMODEL" + struct.pack(">I", len(raw)) + raw + buffer.getvalue()

    wider = header | {"features": ["age", "income", "extra"], "bounds": header["bounds"] | {"extra": [0, 1]}}
    for bad in (b"", b"DSNMODEL", b"PK\x03\x04" + trained.model_bytes, trained.model_bytes[:40],
                trained.model_bytes[:-10], pack(header | {"version": 2}, state), pack(wider, state),
                pack(header | {"bounds": {"age": [1, 1], "income": [0, 1]}}, state),
                pack(header, {"0.weight": _Payload()})):  # attack: a model file that runs code when loaded
        with pytest.raises(ModelError) as caught:
            load(bad)
        assert caught.value.code == "invalid_model"


# --- refusals: codes, and raised before any training ----------------------------------------------------------------

@pytest.mark.parametrize(("changes", "code"), [
    ({"epsilon": 0.0}, "invalid_epsilon"), ({"epsilon": -1.0}, "invalid_epsilon"),
    ({"epsilon": math.nan}, "invalid_epsilon"), ({"epsilon": math.inf}, "invalid_epsilon"),
    ({"epsilon": 50.5}, "invalid_epsilon"), ({"epsilon": True}, "invalid_epsilon"),
    ({"epsilon": "3"}, "invalid_epsilon"),
    ({"delta": 0.0}, "invalid_delta"), ({"delta": 1e-3}, "invalid_delta"), ({"delta": math.nan}, "invalid_delta"),
    ({"epochs": 0}, "invalid_train"), ({"epochs": 51}, "invalid_train"), ({"epochs": 2.0}, "invalid_train"),
    ({"features": ()}, "invalid_train"), ({"features": "age"}, "invalid_train"),
    ({"features": ("age", "age")}, "invalid_train"), ({"features": ("age", "label")}, "invalid_train"),
    ({"label": ""}, "invalid_train"), ({"model": "svm"}, "invalid_train"), ({"hidden": 0}, "invalid_train"),
    ({"batch_size": 0}, "invalid_train"), ({"max_grad_norm": 0.0}, "invalid_train"),
    ({"learning_rate": math.inf}, "invalid_train"), ({"accountant": "gdp"}, "invalid_train"),
    ({"seed": -1}, "invalid_train"),
    ({"bounds": {"age": (18, 80)}}, "invalid_bounds"), ({"bounds": BOUNDS | {"age": (80, 18)}}, "invalid_bounds"),
    ({"bounds": BOUNDS | {"age": (0, math.inf)}}, "invalid_bounds"),
    ({"bounds": BOUNDS | {"age": (1,)}}, "invalid_bounds"), ({"bounds": [("age", 1, 2)]}, "invalid_bounds"),
])
def test_an_invalid_spec_cannot_be_built(changes: dict[str, Any], code: str) -> None:
    with pytest.raises(ModelError) as caught:
        _spec(**changes)
    assert caught.value.code == code
    assert isinstance(caught.value, ValueError)


def test_a_spec_is_normalised_and_immutable() -> None:
    spec = _spec(features=["age", "income"], bounds=BOUNDS | {"city": (0, 1)})
    assert spec.features == ("age", "income") and dict(spec.bounds) == BOUNDS
    with pytest.raises(TypeError):
        spec.bounds["age"] = (0, 1)  # type: ignore[index]
    with pytest.raises(AttributeError):
        spec.epsilon = 50.0  # type: ignore[misc]


@pytest.mark.parametrize(("changes", "rows", "code"), [
    ({"features": ("age", "salary"), "bounds": BOUNDS | {"salary": (0, 1)}}, None, "unknown_column"),
    ({"label": "defaulted"}, None, "unknown_column"),
    ({"features": ("age", "city"), "bounds": BOUNDS | {"city": (0, 1)}}, None, "invalid_column_type"),
    ({"label": "income", "features": ("age",)}, None, "invalid_column_type"),
    ({}, MIN_ROWS - 1, "too_few_rows"),
    ({"delta": 5e-4}, 2000, "invalid_delta"),
])
def test_validate_checks_the_schema_and_row_count(changes: dict[str, Any], rows: int | None, code: str) -> None:
    schema = personal_records(1).schema.set(6, pa.field("income", pa.float64()))  # a float label is never binary
    with pytest.raises(ModelError) as caught:
        validate(_spec(**changes), schema, rows=rows)
    assert caught.value.code == code
    validate(_spec(), schema, rows=4000)  # and the valid request passes


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refusals must come before σ is planned or a PrivacyEngine exists."""
    def forbidden(*_: object, **__: object) -> None:
        raise AssertionError("training started")
    monkeypatch.setattr(pm, "get_noise_multiplier", forbidden)
    monkeypatch.setattr(pm, "PrivacyEngine", forbidden)


@pytest.mark.usefixtures("no_training")
def test_train_refuses_before_training() -> None:
    table = _records(1200, seed=5)
    cases: list[tuple[pa.Table, TrainSpec, float, str]] = [
        (table, _spec(features=("age", "mobile"), bounds=BOUNDS | {"mobile": (0, 1)}), 0.2, "invalid_column_type"),
        (table, _spec(delta=9e-4), 0.2, "invalid_delta"),  # 9e-4 ≥ 1 / 1200
        (table.slice(0, 99), _spec(), 0.2, "too_few_rows"),
        (table, _spec(), 0.0, "invalid_train"), (table, _spec(), 0.6, "invalid_train"),
        (table.set_column(7, "label", pa.array([0, 1, 2] * 400, pa.int8())), _spec(), 0.2, "invalid_label"),
        # 1200 rows, but only 60 without a null
        (table.set_column(5, "age", pa.array([30 if i % 20 == 0 else None for i in range(1200)], pa.int32())),
         _spec(), 0.2, "too_few_rows"),
    ]
    for data, spec, holdout, code in cases:
        with pytest.raises(ModelError) as caught:
            train(data, spec, holdout=holdout)
        assert caught.value.code == code, code


def test_rows_with_nulls_are_dropped_and_boolean_labels_accepted() -> None:
    table = _records(600, seed=9)
    labels = np.asarray(table["label"]) == 1
    ages = pa.array([None if i % 10 == 0 else a for i, a in enumerate(table["age"].to_pylist())], pa.int32())
    incomes = pa.array([math.nan if i % 10 == 1 else float(v) for i, v in enumerate(table["income"].to_pylist())])
    gappy = pa.table({"age": ages, "income": incomes,
                      "label": pa.array([None if i % 10 == 2 else bool(v) for i, v in enumerate(labels)])})
    model = train(gappy, _spec(epochs=2, batch_size=64))
    # 420 usable rows → 84 held out, 336 trained on in batches of 64 expected → 6 steps per epoch.
    assert model.steps == 12 and 0 < model.epsilon <= 3.0
    assert math.isclose(model.holdout_accuracy * 84, round(model.holdout_accuracy * 84))
    assert json.loads(model.accountant_state)["history"] == [[model.noise_multiplier, 1 / 6, 12]]
