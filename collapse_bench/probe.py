"""Semi-supervised probe: logistic regression on the frozen posterior mean at several label budgets.

Li et al.'s fixed labelled subsets are used where the corpus has them (short-Yelp); elsewhere seeded
subsets of the training split are drawn `repeats` times. The inverse regularisation C is chosen on the
validation split; accuracy is reported on the test split.
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)


def fit_and_score(x_train, y_train, x_valid, y_valid, x_test, y_test) -> tuple[float, float]:
    """(test accuracy, validation accuracy) of the logistic regression whose C is best on validation."""
    if len(np.unique(y_train)) < 2:      # a one-class subset: the classifier can only predict that class
        return float((y_test == y_train[0]).mean()), float((y_valid == y_train[0]).mean())
    scaler = StandardScaler().fit(x_train)
    x_train, x_valid, x_test = scaler.transform(x_train), scaler.transform(x_valid), scaler.transform(x_test)
    best, best_acc = None, -1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for c in C_GRID:
            clf = LogisticRegression(C=c, max_iter=200).fit(x_train, y_train)  # separable subsets never converge at large C
            acc = clf.score(x_valid, y_valid)
            if acc > best_acc:
                best, best_acc = clf, acc
    return float(best.score(x_test, y_test)), float(best_acc)


def draw_subsets(pool_size: int, label_counts: tuple[int, ...], repeats: int, seed: int) -> dict[int, list[np.ndarray]]:
    """`repeats` seeded subsets of each size; sizes larger than the labelled pool are skipped."""
    rng = np.random.default_rng(seed)
    return {n: [rng.choice(pool_size, n, replace=False) for _ in range(repeats)]
            for n in label_counts if n <= pool_size}


def probe(x_pool: np.ndarray, y_pool: np.ndarray, draws: dict[int, list[np.ndarray]],
          valid: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]) -> dict[str, dict]:
    """Test accuracy per label count, {"100": {"mean", "sd", "n", "valid_mean"}} (valid_mean: the validation accuracy
    of the chosen C, what tuning may select on); `draws` index into the pool."""
    out = {}
    for n, subsets in draws.items():
        accs, valid_accs = zip(*(fit_and_score(x_pool[i], y_pool[i], *valid, *test) for i in subsets))
        out[str(n)] = {"mean": float(np.mean(accs)), "sd": float(np.std(accs, ddof=1)) if len(accs) > 1 else None,
                       "n": len(accs), "valid_mean": float(np.mean(valid_accs))}
    return out
