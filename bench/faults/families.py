"""Model/data families with one loss: small numpy models, their synthetic data, hand-written gradients.

A family owns its data (train, validation, a train subset for loss estimates) and computes losses and
gradients for a batch. `drift(X, Y, a)` moves the training distribution by `a` in [0, 1] (a new data
shard that differs from what validation measures); eval always reads the original distribution.
"""

from __future__ import annotations

import numpy as np

Params = dict[str, np.ndarray]


def softmax_ce(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean cross-entropy, d(loss)/d(logits) and the predicted classes."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(axis=1, keepdims=True)
    n = len(y)
    rows = np.arange(n)
    loss = float(-np.mean(np.log(p[rows, y] + 1e-300)))
    d = p.copy()
    d[rows, y] -= 1.0
    return loss, d / n, logits.argmax(axis=1)


class Family:
    """One kind of model and data. Subclasses set the data in `__init__` and implement the math."""

    name = ""
    losses: tuple[str, ...] = ("loss",)
    """Names of the component losses (several for YOLO-style families)."""
    shared = "b"
    """A parameter every prediction uses: a NaN there reaches the loss of every sample."""
    heads: dict[str, str] = {}  # noqa: RUF012 - read-only per class
    """Component loss -> the parameter that only that loss depends on."""
    metric = "accuracy"
    """The eval metric besides the loss (higher is better), or "" when there is none."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.X: np.ndarray
        self.Y: np.ndarray
        self.Xv: np.ndarray
        self.Yv: np.ndarray
        self.R = np.eye(1)

    @property
    def n_train(self) -> int:
        return len(self.Y)

    def init(self, rng: np.random.Generator) -> Params:
        raise NotImplementedError

    def loss_grad(self, p: Params, X: np.ndarray, Y: np.ndarray) -> tuple[dict[str, float], Params, float]:
        """Component losses, gradients of their sum, and the metric on this batch."""
        raise NotImplementedError

    def batch(self, idx: np.ndarray, a: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        X, Y = self.X[idx], self.Y[idx]
        return self.drift(X, Y, a, rng) if a > 0 else (X, Y)

    def drift(self, X: np.ndarray, Y: np.ndarray, a: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Covariate shift: inputs rotated part of the way towards a fixed orthogonal map."""
        return (1 - a) * X + a * (X @ self.R), Y

    def evaluate(self, p: Params) -> dict[str, float]:
        """Losses and metric on the validation set and on a fixed train subset."""
        out: dict[str, float] = {}
        for split, X, Y in (("eval", self.Xv, self.Yv), ("train_eval", self.X[:512], self.Y[:512])):
            losses, _, m = self.loss_grad(p, X, Y)
            out[f"{split}_loss"] = sum(losses.values())
            for k, v in losses.items():
                if len(self.losses) > 1:
                    out[f"{split}_{k}"] = v
            if self.metric:
                out[f"{split}_{self.metric}"] = m
        return out


def _orthogonal(rng: np.random.Generator, d: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return q


class Softmax(Family):
    """Softmax regression on Gaussian clusters."""

    name = "softmax"

    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__(rng)
        d, k = 16, int(rng.integers(4, 9))
        centers = rng.normal(0, 1.2, size=(k, d))
        spread = rng.uniform(0.8, 1.6)

        def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
            y = rng.integers(0, k, n)
            return centers[y] + rng.normal(0, spread, size=(n, d)), y

        self.X, self.Y = sample(4096)
        self.Xv, self.Yv = sample(512)
        self.k, self.R = k, _orthogonal(rng, d)

    def init(self, rng: np.random.Generator) -> Params:
        return {"W": rng.normal(0, 0.01, (self.X.shape[1], self.k)), "b": np.zeros(self.k)}

    def loss_grad(self, p: Params, X: np.ndarray, Y: np.ndarray) -> tuple[dict[str, float], Params, float]:
        loss, d, pred = softmax_ce(X @ p["W"] + p["b"], Y)
        return {"loss": loss}, {"W": X.T @ d, "b": d.sum(0)}, float(np.mean(pred == Y))


class MLP(Family):
    """Two-layer tanh MLP on interleaved spirals (3 classes, 2-D inputs lifted to 8-D)."""

    name = "mlp"
    shared = "b2"

    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__(rng)
        lift = rng.normal(0, 1, (2, 8))
        noise = rng.uniform(0.15, 0.35)

        def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
            y = rng.integers(0, 3, n)
            r = rng.uniform(0.1, 1.0, n)
            ang = 2 * np.pi * y / 3 + 3.5 * r + rng.normal(0, noise, n)
            xy = np.stack([r * np.cos(ang), r * np.sin(ang)], 1)
            return np.tanh(xy @ lift) + 0.5 * xy @ lift, y

        self.X, self.Y = sample(4096)
        self.Xv, self.Yv = sample(512)
        self.h = int(rng.choice([24, 32, 48]))
        self.R = _orthogonal(rng, 8)

    def init(self, rng: np.random.Generator) -> Params:
        h = self.h
        return {
            "W1": rng.normal(0, 1 / np.sqrt(8), (8, h)),
            "b1": np.zeros(h),
            "W2": rng.normal(0, 1 / np.sqrt(h), (h, 3)),
            "b2": np.zeros(3),
        }

    def loss_grad(self, p: Params, X: np.ndarray, Y: np.ndarray) -> tuple[dict[str, float], Params, float]:
        a = np.tanh(X @ p["W1"] + p["b1"])
        loss, d, pred = softmax_ce(a @ p["W2"] + p["b2"], Y)
        da = (d @ p["W2"].T) * (1 - a * a)
        g = {"W1": X.T @ da, "b1": da.sum(0), "W2": a.T @ d, "b2": d.sum(0)}
        return {"loss": loss}, g, float(np.mean(pred == Y))


_NOUNS = [
    "cat",
    "dog",
    "bird",
    "fox",
    "owl",
    "horse",
    "mouse",
    "king",
    "queen",
    "river",
    "stone",
    "tree",
    "ship",
    "cloud",
]
_VERBS = ["sees", "likes", "finds", "chases", "follows", "keeps", "hears", "wants", "meets", "builds"]
_ADJS = ["red", "small", "old", "quick", "quiet", "bright", "dark", "green", "tall", "happy"]
_NOUNS_B = ["engine", "wire", "valve", "pump", "gear", "motor", "panel", "cable", "switch", "meter"]
_VERBS_B = ["drives", "feeds", "turns", "cools", "locks", "moves", "charges", "powers"]
_CHARS = "abcdefghijklmnopqrstuvwxyz ."


def grammar_text(rng: np.random.Generator, n_chars: int, nouns: list[str], verbs: list[str]) -> str:
    """Sentences from a small seeded grammar: `the [adj] noun verb the [adj] noun.`"""
    out: list[str] = []
    size = 0
    while size < n_chars:
        words = ["the"]
        if rng.random() < 0.5:
            words.append(str(rng.choice(_ADJS)))
        words += [str(rng.choice(nouns)), str(rng.choice(verbs)), "the"]
        if rng.random() < 0.4:
            words.append(str(rng.choice(_ADJS)))
        words.append(str(rng.choice(nouns)))
        s = " ".join(words) + ". "
        out.append(s)
        size += len(s)
    return "".join(out)


class CharLM(Family):
    """Character-level MLP language model (3 characters of context) on grammar-generated text."""

    name = "charlm"
    shared = "b2"
    ctx = 3

    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__(rng)
        ids = {c: i for i, c in enumerate(_CHARS)}

        def windows(text: str) -> tuple[np.ndarray, np.ndarray]:
            t = np.array([ids[c] for c in text])
            X = np.lib.stride_tricks.sliding_window_view(t[:-1], self.ctx)
            return np.ascontiguousarray(X), t[self.ctx :]

        self.X, self.Y = windows(grammar_text(rng, 30000, _NOUNS, _VERBS))
        self.Xv, self.Yv = windows(grammar_text(rng, 3000, _NOUNS, _VERBS))
        self.Xb, self.Yb = windows(grammar_text(rng, 30000, _NOUNS_B, _VERBS_B))
        self.h = int(rng.choice([32, 48, 64]))

    def init(self, rng: np.random.Generator) -> Params:
        v, e, h = len(_CHARS), 8, self.h
        return {
            "E": rng.normal(0, 0.3, (v, e)),
            "W1": rng.normal(0, 1 / np.sqrt(e * self.ctx), (e * self.ctx, h)),
            "b1": np.zeros(h),
            "W2": rng.normal(0, 1 / np.sqrt(h), (h, v)),
            "b2": np.zeros(v),
        }

    def drift(self, X: np.ndarray, Y: np.ndarray, a: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A new corpus (other nouns and verbs) replaces a fraction `a` of each batch."""
        take = rng.random(len(Y)) < a
        j = rng.integers(0, len(self.Yb), int(take.sum()))
        X, Y = X.copy(), Y.copy()
        X[take], Y[take] = self.Xb[j], self.Yb[j]
        return X, Y

    def loss_grad(self, p: Params, X: np.ndarray, Y: np.ndarray) -> tuple[dict[str, float], Params, float]:
        n = len(Y)
        emb = p["E"][X].reshape(n, -1)
        a = np.tanh(emb @ p["W1"] + p["b1"])
        loss, d, pred = softmax_ce(a @ p["W2"] + p["b2"], Y)
        da = (d @ p["W2"].T) * (1 - a * a)
        demb = (da @ p["W1"].T).reshape(n, self.ctx, -1)
        gE = np.zeros_like(p["E"])
        np.add.at(gE, X, demb)
        g = {"E": gE, "W1": emb.T @ da, "b1": da.sum(0), "W2": a.T @ d, "b2": d.sum(0)}
        return {"loss": loss}, g, float(np.mean(pred == Y))


class LinReg(Family):
    """Linear regression with heavy-tailed (Student-t) noise: small batches make a very noisy loss."""

    name = "linreg"
    metric = ""

    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__(rng)
        d = 20
        w = rng.normal(0, 1, d)
        df = float(rng.choice([2.5, 3.0, 5.0]))
        scale = rng.uniform(0.3, 1.0)

        def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
            X = rng.normal(0, 1, (n, d))
            return X, X @ w + 2.0 + scale * rng.standard_t(df, n)

        self.X, self.Y = sample(4096)
        self.Xv, self.Yv = sample(1024)
        self.R = _orthogonal(rng, d)

    def init(self, rng: np.random.Generator) -> Params:
        return {"w": np.zeros(self.X.shape[1]), "b": np.zeros(1)}

    def loss_grad(self, p: Params, X: np.ndarray, Y: np.ndarray) -> tuple[dict[str, float], Params, float]:
        r = X @ p["w"] + p["b"][0] - Y
        n = len(Y)
        return {"loss": float(np.mean(r * r))}, {"w": 2 * X.T @ r / n, "b": np.array([2 * r.sum() / n])}, 0.0


class AutoEncoder(Family):
    """A small tanh autoencoder on data near a 4-dimensional nonlinear manifold in 24-D."""

    name = "autoenc"
    shared = "b2"
    metric = ""

    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__(rng)
        d, r = 24, 4
        A = rng.normal(0, 1, (r, d))

        def sample(n: int) -> np.ndarray:
            return np.tanh(rng.normal(0, 1, (n, r)) @ A) + rng.normal(0, 0.05, (n, d))

        self.X = sample(4096)
        self.Y = np.zeros(len(self.X))
        self.Xv = sample(512)
        self.Yv = np.zeros(512)
        self.h = int(rng.choice([6, 8, 10]))
        self.R = _orthogonal(rng, d)

    def init(self, rng: np.random.Generator) -> Params:
        d, h = self.X.shape[1], self.h
        return {
            "W1": rng.normal(0, 1 / np.sqrt(d), (d, h)),
            "b1": np.zeros(h),
            "W2": rng.normal(0, 1 / np.sqrt(h), (h, d)),
            "b2": np.zeros(d),
        }

    def loss_grad(self, p: Params, X: np.ndarray, Y: np.ndarray) -> tuple[dict[str, float], Params, float]:
        a = np.tanh(X @ p["W1"] + p["b1"])
        r = a @ p["W2"] + p["b2"] - X
        n, d = X.shape
        dr = 2 * r / (n * d)
        da = (dr @ p["W2"].T) * (1 - a * a)
        g = {"W1": X.T @ da, "b1": da.sum(0), "W2": a.T @ dr, "b2": dr.sum(0)}
        return {"loss": float(np.mean(r * r))}, g, 0.0


class MatrixFactorisation(Family):
    """A recommender: ratings = user·item + biases, learned from observed (user, item) pairs."""

    name = "mf"
    shared = "mu"
    metric = ""

    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__(rng)
        nu, ni, k = 300, 200, 5
        U, V = rng.normal(0, 0.7, (nu, k)), rng.normal(0, 0.7, (ni, k))
        bu, bi = rng.normal(0, 0.5, nu), rng.normal(0, 0.5, ni)
        n = 14000
        users, items = rng.integers(0, nu, n), rng.integers(0, ni, n)
        r = 3.5 + bu[users] + bi[items] + np.sum(U[users] * V[items], 1) + rng.normal(0, 0.3, n)
        X = np.stack([users, items], 1)
        self.X, self.Y = X[:12000], r[:12000]
        self.Xv, self.Yv = X[12000:], r[12000:]
        self.nu, self.ni, self.k = nu, ni, int(rng.choice([4, 6, 8]))
        self.shift = rng.normal(0, 1.5, ni)

    def drift(self, X: np.ndarray, Y: np.ndarray, a: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Item popularity drifts: new ratings move by `a` times a fixed per-item shift."""
        return X, Y + a * self.shift[X[:, 1]]

    def init(self, rng: np.random.Generator) -> Params:
        return {
            "P": rng.normal(0, 0.1, (self.nu, self.k)),
            "Q": rng.normal(0, 0.1, (self.ni, self.k)),
            "bu": np.zeros(self.nu),
            "bi": np.zeros(self.ni),
            "mu": np.zeros(1),
        }

    def loss_grad(self, p: Params, X: np.ndarray, Y: np.ndarray) -> tuple[dict[str, float], Params, float]:
        u, i = X[:, 0], X[:, 1]
        pu, qi = p["P"][u], p["Q"][i]
        r = p["mu"][0] + p["bu"][u] + p["bi"][i] + np.sum(pu * qi, 1) - Y
        n = len(Y)
        dr = 2 * r / n
        lam = 0.02
        gP, gQ = np.zeros_like(p["P"]), np.zeros_like(p["Q"])
        np.add.at(gP, u, dr[:, None] * qi + lam * pu / n)
        np.add.at(gQ, i, dr[:, None] * pu + lam * qi / n)
        gbu, gbi = np.zeros_like(p["bu"]), np.zeros_like(p["bi"])
        np.add.at(gbu, u, dr)
        np.add.at(gbi, i, dr)
        g = {"P": gP, "Q": gQ, "bu": gbu, "bi": gbi, "mu": np.array([dr.sum()])}
        reg = lam * float(np.sum(pu * pu) + np.sum(qi * qi)) / (2 * n)
        return {"loss": float(np.mean(r * r)) + reg}, g, 0.0
