"""What measured value costs: exact KNN-Shapley (``pricing.shapley.knn_shapley``) for every training row of a
labelled dataset against a validation split, on fixed-seed synthetic data (Gaussian class clusters, 10 % label
noise).

Baselines in the same run, on the same split:
- *one k-NN evaluation*: plain k-NN accuracy of the validation split (distances, ``argpartition`` for the K nearest,
  majority vote), chunked like the valuation: the ratio says what valuing every row costs over evaluating once;
- *utility*: ``knn_utility`` of the whole training set (the game's ``U(all)``, which the values must sum to);
- *Monte-Carlo permutation Shapley* on a small subset (``--mc-train`` rows, ``--mc-val`` validation points,
  ``--mc-permutations`` permutations, incremental top-K per validation point): its time and its error against the
  exact values on the same subset, as a correctness and scale reference.

Timings are medians of ``--repeats`` runs.

    python bench/bench_shapley.py --train 100000 --val 1000 --k 5
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray
from rich.console import Console
from rich.table import Table

from pricing.shapley import DEFAULT_CHUNK_ELEMENTS, knn_shapley, knn_utility

console = Console(width=150)


def synthetic(n: int, features: int, classes: int, seed: int) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(12345).normal(scale=2.0, size=(classes, features))
    y = rng.integers(0, classes, n)
    x = centers[y] + rng.normal(size=(n, features))
    noisy = rng.random(n) < 0.10
    y = np.where(noisy, rng.integers(0, classes, n), y)
    return x, y.astype(np.int64)


def knn_accuracy(xt: NDArray[np.float64], yt: NDArray[np.int64], xv: NDArray[np.float64], yv: NDArray[np.int64],
                 k: int, classes: int, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> float:
    """One plain k-NN evaluation: majority vote of the K nearest (argpartition, no full sort)."""
    train_sq = np.einsum("ij,ij->i", xt, xt)
    step = max(1, chunk_elements // xt.shape[0])
    right = 0
    for start in range(0, xv.shape[0], step):
        keys = train_sq[None, :] - 2.0 * (xv[start:start + step] @ xt.T)
        nearest = np.argpartition(keys, k - 1, axis=1)[:, :k]
        votes = np.zeros((nearest.shape[0], classes), dtype=np.int64)
        np.add.at(votes, (np.arange(nearest.shape[0])[:, None], yt[nearest]), 1)
        right += int((votes.argmax(axis=1) == yv[start:start + step]).sum())
    return right / xv.shape[0]


def monte_carlo_shapley(xt: NDArray[np.float64], yt: NDArray[np.int64], xv: NDArray[np.float64],
                        yv: NDArray[np.int64], k: int, permutations: int, seed: int) -> NDArray[np.float64]:
    """Permutation-sampling Shapley for the same K-NN utility: add rows in random order, credit each row with the
    change of the utility; the top-K ranks per validation point are kept incrementally."""
    n, m = xt.shape[0], xv.shape[0]
    keys = np.einsum("ij,ij->i", xt, xt)[None, :] - 2.0 * (xv @ xt.T)
    order = np.argsort(keys, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(n)[None, :].repeat(m, axis=0), axis=1)
    # match by rank, with a sentinel rank n that matches nothing
    match = np.zeros((m, n + 1))
    match[:, :n] = yt[order] == yv[:, None]
    rows = np.arange(m)[:, None]
    rng = np.random.default_rng(seed)
    phi = np.zeros(n)
    for _ in range(permutations):
        top = np.full((m, k), n)
        before = 0.0
        for i in rng.permutation(n):
            top = np.sort(np.concatenate([top, rank[:, i:i + 1]], axis=1), axis=1)[:, :k]
            after = float(match[rows, top].sum()) / (k * m)
            phi[i] += after - before
            before = after
    result: NDArray[np.float64] = phi / permutations
    return result


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    samples, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=100_000, help="training rows (the players)")
    parser.add_argument("--val", type=int, default=1_000, help="validation rows")
    parser.add_argument("--k", type=int, default=5, help="neighbours")
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=DEFAULT_CHUNK_ELEMENTS, help="validation×training cells/chunk")
    parser.add_argument("--mc-train", type=int, default=500)
    parser.add_argument("--mc-val", type=int, default=100)
    parser.add_argument("--mc-permutations", type=int, default=200)
    parser.add_argument("--seed", type=int, default=20260101)
    args = parser.parse_args()

    xt, yt = synthetic(args.train, args.features, args.classes, args.seed)
    xv, yv = synthetic(args.val, args.features, args.classes, args.seed + 1)
    with console.status(f"exact KNN-Shapley, {args.train:,} × {args.val:,}"):
        shapley_s, values = timed(lambda: knn_shapley(xt, yt, xv, yv, args.k, chunk_elements=args.chunk),
                                  args.repeats)
        accuracy_s, accuracy = timed(lambda: knn_accuracy(xt, yt, xv, yv, args.k, args.classes, args.chunk),
                                     args.repeats)
        utility_s, utility = timed(lambda: knn_utility(xt, yt, xv, yv, args.k, chunk_elements=args.chunk),
                                   args.repeats)
    assert isinstance(values, np.ndarray) and isinstance(utility, float) and isinstance(accuracy, float)
    efficiency_gap = abs(float(values.sum()) - utility)

    st, sv = xt[:args.mc_train], yt[:args.mc_train]
    mv, myv = xv[:args.mc_val], yv[:args.mc_val]
    with console.status(f"Monte-Carlo permutation Shapley, {args.mc_train} × {args.mc_val}"):
        exact_small_s, exact_small = timed(lambda: knn_shapley(st, sv, mv, myv, args.k), args.repeats)
        mc_s, mc = timed(lambda: monte_carlo_shapley(st, sv, mv, myv, args.k, args.mc_permutations, args.seed), 1)
    assert isinstance(exact_small, np.ndarray) and isinstance(mc, np.ndarray)
    mc_err = float(np.abs(mc - exact_small).max())
    scale = float(np.abs(exact_small).max())
    per_perm = mc_s / args.mc_permutations

    table = Table(title=f"exact KNN-Shapley: {args.train:,} training rows × {args.val:,} validation rows, "
                        f"K = {args.k}, {args.features} features, {args.classes} classes (median of {args.repeats})")
    for col in ("what", "time", "ratio to one k-NN evaluation", "result"):
        table.add_column(col, justify="right")
    table.add_row("exact KNN-Shapley (all rows)", f"{shapley_s:,.2f} s", f"{shapley_s / accuracy_s:,.1f}×",
                  f"Σ values = {values.sum():.6f}, |Σ − U(all)| = {efficiency_gap:.1e}")
    table.add_row("one k-NN evaluation (accuracy)", f"{accuracy_s:,.2f} s", "1.0×", f"accuracy = {accuracy:.4f}")
    table.add_row("U(all) (full sort, library)", f"{utility_s:,.2f} s", f"{utility_s / accuracy_s:,.1f}×",
                  f"U(all) = {utility:.6f}")
    table.add_row("per training row", f"{shapley_s / args.train * 1e6:,.1f} µs", "", "", end_section=True)
    table.add_row(f"exact, subset {args.mc_train} × {args.mc_val}", f"{exact_small_s * 1e3:,.1f} ms", "", "")
    table.add_row(f"Monte-Carlo, {args.mc_permutations} permutations", f"{mc_s:,.2f} s",
                  f"{mc_s / exact_small_s:,.0f}× exact", f"max |MC − exact| = {mc_err:.2e} "
                  f"(max |value| = {scale:.2e})")
    console.print(table)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    console.print(f"chunk = {args.chunk:,} cells ({max(1, args.chunk // args.train)} validation rows per chunk); "
                  f"peak RSS {peak:,.0f} MiB. Monte-Carlo costs {per_perm * 1e3:,.1f} ms per permutation at "
                  f"{args.mc_train} rows and grows with rows × validation rows per permutation.")


if __name__ == "__main__":
    main()
