"""YOLO-style families: one model, three losses (box regression, objectness, class) and detection metrics."""

from __future__ import annotations

import numpy as np

from bench.faults.families import Family, Params, _orthogonal, softmax_ce

_TOLERANCES = (0.10, 0.08, 0.06, 0.04, 0.02)
"""Box-error tolerances standing in for IoU thresholds 0.5 … 0.95 (the first is "mAP_0.5")."""


def _heads(feat: np.ndarray, p: Params, obj: np.ndarray, cls: np.ndarray, box: np.ndarray) -> tuple:
    """Losses, d(loss)/d(head outputs) and predictions of the three linear heads on `feat`."""
    n = len(obj)
    zo = feat @ p["Wo"] + p["bo"]
    zo = zo[:, 0]
    so = 1 / (1 + np.exp(-np.clip(zo, -60, 60)))
    so = np.where(np.isnan(zo), np.nan, so)
    l_obj = float(np.mean(np.logaddexp(0, zo) - obj * zo))
    d_zo = (so - obj) / n
    m = obj > 0.5
    nm = max(1, int(m.sum()))
    zc = feat[m] @ p["Wc"] + p["bc"]
    l_cls, dc, pred_c = softmax_ce(zc, cls[m]) if m.any() else (0.0, np.zeros((0, p["bc"].size)), np.zeros(0))
    dc = dc * len(dc) / nm if len(dc) else dc
    zb = feat @ p["Wb"] + p["bb"]
    rb = (zb - box) * m[:, None]
    l_box = float(np.sum(rb * rb) / nm)
    d_zb = 2 * rb / nm
    losses = {"box_loss": l_box, "obj_loss": l_obj, "cls_loss": l_cls}
    return losses, d_zo, dc, d_zb, m, so, pred_c, zb


def _head_grads(feat: np.ndarray, p: Params, d_zo: np.ndarray, dc: np.ndarray, d_zb: np.ndarray, m: np.ndarray):
    g = {
        "Wo": feat.T @ d_zo[:, None],
        "bo": np.array([d_zo.sum()]),
        "Wc": feat[m].T @ dc,
        "bc": dc.sum(0),
        "Wb": feat.T @ d_zb,
        "bb": d_zb.sum(0),
    }
    dfeat = d_zo[:, None] @ p["Wo"].T + d_zb @ p["Wb"].T
    dfeat[m] += dc @ p["Wc"].T
    return g, dfeat


def _metrics(so: np.ndarray, obj: np.ndarray, cls: np.ndarray, box: np.ndarray, p: Params, feat: np.ndarray) -> dict:
    m = obj > 0.5
    det = so > 0.5
    tp = float(np.sum(det & m))
    prec = tp / max(1.0, float(det.sum()))
    rec = tp / max(1.0, float(m.sum()))
    zc = feat @ p["Wc"] + p["bc"]
    zb = feat @ p["Wb"] + p["bb"]
    err = np.abs(zb - box).max(axis=1)
    right = det & m & (zc.argmax(1) == cls)
    aps = [float(np.sum(right & (err < t))) / max(1.0, float(m.sum())) for t in _TOLERANCES]
    return {"precision": prec, "recall": rec, "mAP_0.5": aps[0], "mAP_0.5:0.95": float(np.mean(aps))}


class YoloFamily(Family):
    """Shared pieces of the detection families: three losses, detection metrics on eval."""

    losses = ("box_loss", "obj_loss", "cls_loss")
    shared = "bo"
    heads = {"box_loss": "bb", "obj_loss": "bo", "cls_loss": "bc"}  # noqa: RUF012
    metric = ""

    def features(self, p: Params, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def evaluate(self, p: Params) -> dict[str, float]:
        out = super().evaluate(p)
        obj, cls, box = self.Yv[:, 0], self.Yv[:, 1].astype(int), self.Yv[:, 2:]
        feat = self.features(p, self.Xv)
        zo = (feat @ p["Wo"] + p["bo"])[:, 0]
        so = 1 / (1 + np.exp(-np.clip(zo, -60, 60)))
        so = np.where(np.isnan(zo), np.nan, so)
        for k, v in _metrics(so, obj, cls, box, p, feat).items():
            out[f"eval_{k}"] = v
        return out


class Detect(YoloFamily):
    """Objects described by 12 noisy features: is there one, which of 3 classes, where and how wide."""

    name = "detect"

    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__(rng)
        d = 12
        M = rng.normal(0, 1, (6, d))
        noise = rng.uniform(0.2, 0.5)

        def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
            obj = (rng.random(n) < 0.6).astype(float)
            cls = rng.integers(0, 3, n)
            box = rng.uniform(0.1, 0.9, (n, 2))
            z = np.concatenate([np.eye(3)[cls], box, np.ones((n, 1))], 1) * obj[:, None]
            X = np.tanh(z @ M) + rng.normal(0, noise, (n, d))
            return X, np.concatenate([obj[:, None], cls[:, None], box], 1)

        self.X, self.Y = sample(4096)
        self.Xv, self.Yv = sample(512)
        self.h = int(rng.choice([24, 32]))
        self.R = _orthogonal(rng, d)

    def init(self, rng: np.random.Generator) -> Params:
        d, h = self.X.shape[1], self.h
        return {
            "W1": rng.normal(0, 1 / np.sqrt(d), (d, h)),
            "b1": np.zeros(h),
            "Wo": rng.normal(0, 0.1, (h, 1)),
            "bo": np.zeros(1),
            "Wc": rng.normal(0, 0.1, (h, 3)),
            "bc": np.zeros(3),
            "Wb": rng.normal(0, 0.1, (h, 2)),
            "bb": np.full(2, 0.5),
        }

    def features(self, p: Params, X: np.ndarray) -> np.ndarray:
        return np.tanh(X @ p["W1"] + p["b1"])

    def loss_grad(self, p: Params, X: np.ndarray, Y: np.ndarray) -> tuple[dict[str, float], Params, float]:
        a = self.features(p, X)
        losses, d_zo, dc, d_zb, m, *_ = _heads(a, p, Y[:, 0], Y[:, 1].astype(int), Y[:, 2:])
        g, da = _head_grads(a, p, d_zo, dc, d_zb, m)
        dpre = da * (1 - a * a)
        g["W1"], g["b1"] = X.T @ dpre, dpre.sum(0)
        return losses, g, 0.0


class Conv1D(YoloFamily):
    """A tiny 1-D conv net finding a pulse (3 shapes) in a noisy signal: objectness, class, position/width."""

    name = "conv1d"
    length, k, channels = 48, 7, 6

    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__(rng)
        L = self.length
        t = np.linspace(0, 1, L)
        noise = rng.uniform(0.15, 0.35)

        def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
            obj = (rng.random(n) < 0.6).astype(float)
            cls = rng.integers(0, 3, n)
            box = np.stack([rng.uniform(0.2, 0.8, n), rng.uniform(0.1, 0.3, n)], 1)
            u = (t[None, :] - box[:, :1]) / (box[:, 1:] / 2)
            shapes = [np.abs(u) < 1, np.clip(1 - np.abs(u), 0, None), np.exp(-2 * u * u)]
            pulse = np.select([cls[:, None] == c for c in range(3)], shapes).astype(float)
            X = pulse * obj[:, None] + rng.normal(0, noise, (n, L))
            return X, np.concatenate([obj[:, None], cls[:, None], box], 1)

        self.X, self.Y = sample(3072)
        self.Xv, self.Yv = sample(384)
        self.R = np.eye(L)[::-1]  # drift: signals arrive time-reversed

    def init(self, rng: np.random.Generator) -> Params:
        k, c = self.k, self.channels
        f = (self.length - k + 1) * c
        return {
            "K": rng.normal(0, 1 / np.sqrt(k), (k, c)),
            "kb": np.zeros(c),
            "Wo": rng.normal(0, 0.02, (f, 1)),
            "bo": np.zeros(1),
            "Wc": rng.normal(0, 0.02, (f, 3)),
            "bc": np.zeros(3),
            "Wb": rng.normal(0, 0.02, (f, 2)),
            "bb": np.array([0.5, 0.2]),
        }

    def _conv(self, p: Params, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        win = np.lib.stride_tricks.sliding_window_view(X, self.k, axis=1)  # (n, L', k)
        return win, win @ p["K"] + p["kb"]  # (n, L', c)

    def features(self, p: Params, X: np.ndarray) -> np.ndarray:
        _, pre = self._conv(p, X)
        return np.maximum(pre, 0).reshape(len(X), -1)

    def loss_grad(self, p: Params, X: np.ndarray, Y: np.ndarray) -> tuple[dict[str, float], Params, float]:
        win, pre = self._conv(p, X)
        a = np.maximum(pre, 0)
        feat = a.reshape(len(X), -1)
        losses, d_zo, dc, d_zb, m, *_ = _heads(feat, p, Y[:, 0], Y[:, 1].astype(int), Y[:, 2:])
        g, dfeat = _head_grads(feat, p, d_zo, dc, d_zb, m)
        dpre = dfeat.reshape(pre.shape) * (pre > 0)
        g["K"] = np.einsum("nlk,nlc->kc", win, dpre)
        g["kb"] = dpre.sum((0, 1))
        return losses, g, 0.0
