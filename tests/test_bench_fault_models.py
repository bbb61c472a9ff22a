"""The fault generator's model families: hand-written gradients agree with finite differences, and
every family's healthy training lowers its loss."""

from __future__ import annotations

import numpy as np
import pytest

from bench.faults.optim import Optimizer
from bench.faults.plan import BASE_LR, DEV_FAMILIES, FAMILIES, TEST_FAMILIES


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_gradients_match_finite_differences(name: str) -> None:
    rng = np.random.default_rng(3)
    fam = FAMILIES[name](rng)
    p = fam.init(rng)
    for k in p:
        p[k] = p[k] + rng.normal(0, 0.1, p[k].shape)  # away from symmetric starts (zero weights)
    X, Y = fam.X[:16], fam.Y[:16]
    _, g, _ = fam.loss_grad(p, X, Y)
    assert set(g) == set(p)
    h = 1e-6
    for k, v in p.items():
        for j in rng.choice(v.size, min(5, v.size), replace=False):
            old = v.flat[j]
            v.flat[j] = old + h
            up = sum(fam.loss_grad(p, X, Y)[0].values())
            v.flat[j] = old - h
            down = sum(fam.loss_grad(p, X, Y)[0].values())
            v.flat[j] = old
            num = (up - down) / (2 * h)
            assert abs(num - g[k].flat[j]) <= 1e-5 * max(1.0, abs(num)), (name, k, j, num, g[k].flat[j])


@pytest.mark.parametrize("name", ["logreg", "attn", "rnn"])
def test_new_dev_families_train(name: str) -> None:
    rng = np.random.default_rng(1)
    fam = FAMILIES[name](rng)
    p = fam.init(rng)
    opt = Optimizer("adam", p)
    first = fam.evaluate(p)["eval_loss"]
    for _ in range(300):
        idx = rng.integers(0, fam.n_train, 32)
        _, g, _ = fam.loss_grad(p, fam.X[idx], fam.Y[idx])
        opt.step(p, g, BASE_LR[name]["adam"])
    assert fam.evaluate(p)["eval_loss"] < 0.85 * first


def test_splits_cover_the_families_once() -> None:
    assert set(DEV_FAMILIES) | set(TEST_FAMILIES) == set(FAMILIES)
    assert not set(DEV_FAMILIES) & set(TEST_FAMILIES)
    assert TEST_FAMILIES == ("linreg", "autoenc", "mf", "conv1d")
