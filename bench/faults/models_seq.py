"""Dev-only families added to widen the tuning set: sparse logistic regression, attention, an RNN.

Each has hand-written gradients (checked numerically by `tests/test_bench_fault_models.py`) and the
same contract as `bench.faults.families.Family`.
"""

from __future__ import annotations

import numpy as np

from bench.faults.families import Family, Params, _orthogonal, softmax_ce


class SparseLogReg(Family):
    """Binary logistic regression on sparse bag-of-words counts (about 8 of 200 words per example)."""

    name = "logreg"

    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__(rng)
        d = 200
        w = rng.normal(0, 1.0, d) * (rng.random(d) < 0.3)
        freq = rng.dirichlet(np.full(d, 0.3))
        words = float(rng.choice([6, 8, 12]))

        def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
            X = np.zeros((n, d))
            for i, k in enumerate(rng.poisson(words, n) + 1):
                np.add.at(X[i], rng.choice(d, k, p=freq), 1.0)
            z = X @ w - 0.2 * X.sum(1) * (w.mean())
            return X, (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)

        self.X, self.Y = sample(4096)
        self.Xv, self.Yv = sample(512)
        self.R = np.eye(d)[rng.permutation(d)]  # drift: the words of a new source mean other things

    def init(self, rng: np.random.Generator) -> Params:
        return {"w": np.zeros(self.X.shape[1]), "b": np.zeros(1)}

    def loss_grad(self, p: Params, X: np.ndarray, Y: np.ndarray) -> tuple[dict[str, float], Params, float]:
        z = X @ p["w"] + p["b"][0]
        s = 1 / (1 + np.exp(-np.clip(z, -60, 60)))
        s = np.where(np.isnan(z), np.nan, s)
        n = len(Y)
        loss = float(np.mean(np.logaddexp(0, z) - Y * z))
        dz = (s - Y) / n
        return {"loss": loss}, {"w": X.T @ dz, "b": np.array([dz.sum()])}, float(np.mean((z > 0) == (Y == 1)))


class AttnPool(Family):
    """One self-attention layer (learned positions, residual, mean pooling) classifying token sequences.

    A sequence of 10 tokens (vocabulary 24) belongs to the class that most of its "topic" tokens
    point to; a third of the vocabulary is noise shared by all classes, and every class owns some tokens.
    """

    name = "attn"
    shared = "bo"
    T, V = 10, 24

    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__(rng)
        k = int(rng.integers(3, 6))
        topic = np.r_[np.full(self.V // 3, -1), rng.permutation(np.arange(self.V - self.V // 3) % k)]
        noise = rng.uniform(0.45, 0.6)

        def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
            y = rng.integers(0, k, n)
            X = np.empty((n, self.T), dtype=int)
            for c in range(k):
                own = np.flatnonzero(topic == c)
                other = np.flatnonzero(topic != c)
                rows = np.flatnonzero(y == c)
                pick_own = rng.random((len(rows), self.T)) > noise
                X[rows] = np.where(
                    pick_own, rng.choice(own, (len(rows), self.T)), rng.choice(other, (len(rows), self.T))
                )
            return X, y

        self.X, self.Y = sample(4096)
        self.Xv, self.Yv = sample(512)
        self.Xb = rng.permutation(self.V)
        self.k, self.e = k, int(rng.choice([8, 12]))

    def drift(self, X: np.ndarray, Y: np.ndarray, a: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A fraction `a` of the tokens comes from a source whose vocabulary is permuted."""
        take = rng.random(X.shape) < a
        return np.where(take, self.Xb[X], X), Y

    def init(self, rng: np.random.Generator) -> Params:
        e, s = self.e, 1 / np.sqrt(self.e)
        return {
            "E": rng.normal(0, 0.5, (self.V, e)),
            "P": rng.normal(0, 0.1, (self.T, e)),
            "Wq": rng.normal(0, s, (e, e)),
            "Wk": rng.normal(0, s, (e, e)),
            "Wv": rng.normal(0, s, (e, e)),
            "Wo": rng.normal(0, s, (e, self.k)),
            "bo": np.zeros(self.k),
        }

    def loss_grad(self, p: Params, X: np.ndarray, Y: np.ndarray) -> tuple[dict[str, float], Params, float]:
        T, sc = self.T, 1 / np.sqrt(self.e)
        H = p["E"][X] + p["P"]
        Q, K, Vv = H @ p["Wq"], H @ p["Wk"], H @ p["Wv"]
        S = Q @ K.transpose(0, 2, 1) * sc
        S = S - S.max(-1, keepdims=True)
        A = np.exp(S)
        A /= A.sum(-1, keepdims=True)
        Z = H + A @ Vv
        pool = Z.mean(1)
        loss, d, pred = softmax_ce(pool @ p["Wo"] + p["bo"], Y)
        dZ = np.broadcast_to((d @ p["Wo"].T)[:, None, :] / T, Z.shape)
        dA = dZ @ Vv.transpose(0, 2, 1)
        dV = A.transpose(0, 2, 1) @ dZ
        dS = A * (dA - np.sum(dA * A, -1, keepdims=True)) * sc
        dQ, dK = dS @ K, dS.transpose(0, 2, 1) @ Q
        dH = dZ + dQ @ p["Wq"].T + dK @ p["Wk"].T + dV @ p["Wv"].T
        gE = np.zeros_like(p["E"])
        np.add.at(gE, X, dH)
        g = {
            "E": gE,
            "P": dH.sum(0),
            "Wq": np.einsum("nte,ntf->ef", H, dQ),
            "Wk": np.einsum("nte,ntf->ef", H, dK),
            "Wv": np.einsum("nte,ntf->ef", H, dV),
            "Wo": pool.T @ d,
            "bo": d.sum(0),
        }
        return {"loss": loss}, g, float(np.mean(pred == Y))


class RNN(Family):
    """An Elman (tanh) RNN reading a noisy two-channel signal of 12 steps: which of 3 frequencies is it."""

    name = "rnn"
    shared = "bo"
    T = 12

    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__(rng)
        freqs = np.array([0.5, 1.0, 1.6]) * rng.uniform(0.8, 1.2)
        noise = rng.uniform(0.3, 0.6)
        t = np.arange(self.T)

        def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
            y = rng.integers(0, 3, n)
            ph = rng.uniform(0, 2 * np.pi, n)[:, None]
            ang = freqs[y][:, None] * t[None, :] + ph
            X = np.stack([np.sin(ang), np.cos(ang)], -1) + rng.normal(0, noise, (n, self.T, 2))
            return X, y

        self.X, self.Y = sample(4096)
        self.Xv, self.Yv = sample(512)
        self.h = int(rng.choice([12, 16, 24]))
        self.R = _orthogonal(rng, 2)

    def init(self, rng: np.random.Generator) -> Params:
        h = self.h
        return {
            "Wx": rng.normal(0, 1 / np.sqrt(2), (2, h)),
            "Wh": rng.normal(0, 0.9 / np.sqrt(h), (h, h)),
            "bh": np.zeros(h),
            "Wo": rng.normal(0, 1 / np.sqrt(h), (h, 3)),
            "bo": np.zeros(3),
        }

    def loss_grad(self, p: Params, X: np.ndarray, Y: np.ndarray) -> tuple[dict[str, float], Params, float]:
        n = len(Y)
        hs = [np.zeros((n, self.h))]
        for s in range(self.T):
            hs.append(np.tanh(X[:, s] @ p["Wx"] + hs[-1] @ p["Wh"] + p["bh"]))
        loss, d, pred = softmax_ce(hs[-1] @ p["Wo"] + p["bo"], Y)
        g = {k: np.zeros_like(v) for k, v in p.items()}
        g["Wo"], g["bo"] = hs[-1].T @ d, d.sum(0)
        dh = d @ p["Wo"].T
        for s in range(self.T, 0, -1):
            da = dh * (1 - hs[s] * hs[s])
            g["Wx"] += X[:, s - 1].T @ da
            g["Wh"] += hs[s - 1].T @ da
            g["bh"] += da.sum(0)
            dh = da @ p["Wh"].T
        return {"loss": loss}, g, float(np.mean(pred == Y))
