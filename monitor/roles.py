"""Which metric is the training loss, the eval loss, the learning rate...: recognised from common names.

Frameworks name the same thing many ways (`loss`, `train/loss`, `lm loss`, `trl`; `val_loss`,
`eval/loss`, `tel`; `learning_rate`, `lr`, `x/lr0`; `grad_norm`, `norm`). A run's config may
override any of it (`[run.metrics] train_loss = "my_loss"`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from monitor.model import Role

_EVAL = r"(?:eval|val|valid|validation|dev|test_during_train)"
_SEP = r"[/_ .\-]"

_SUMMARY_PREFIXES = ("summary/", "_", "system/", "gpu.", "test ", "test/", "test_")
_TRAIN_LOSS_EXACT = {"loss", "trl", "lm loss", "train loss", "training loss", "total_loss", "total loss"}
_EVAL_LOSS_EXACT = {"tel", "valid loss", "val loss", "validation loss", "eval loss", "dev loss"}
_LR_RE = re.compile(
    r"^(?:(?:train|trainer|optim|optimizer|x|lr-?\w*)[/_ ])?"
    r"(?:lr|learning[_ ]rate)(?:0|[/_ \-]?(?:group)?0|[/_ \-]\w+)?$"
)
_GRAD_RE = re.compile(r"(?:^|[/_ ])(?:grad(?:ient)?[_ ]?norm|global[_ ]norm|norm)(?:$|[/_ ](?:total|global|clipped))")
_SCALE_RE = re.compile(r"(?:^|[/_ ])(?:loss[_ ]scale|scaler?)(?:$|[/_ ])")
_EVAL_PREFIX_RE = re.compile(rf"(?:^|{_SEP}){_EVAL}(?:$|{_SEP})")
_UP_RE = re.compile(
    r"(?:acc(?:uracy)?|f1|map(?:\d+(?:-\d+)?)?|bleu|rouge\w*|exact[_ ]match|auc|top[_ ]?[15]|em|score|precision|recall)"
    r"(?:$|[/_@:. \-(])"
)
_DOWN_RE = re.compile(r"(?:ppl|perplexity|wer|cer|error)(?:$|[/_ ])")


def classify(key: str) -> Role:
    """The role a metric plays, from its name alone."""
    k = key.strip().lower()
    if not k or k.startswith(_SUMMARY_PREFIXES) or "runtime" in k or "per_second" in k:
        return Role.OTHER
    evalish = bool(_EVAL_PREFIX_RE.search(k)) or k.startswith(("metrics/", "eval", "val"))
    if _SCALE_RE.search(k):
        return Role.LOSS_SCALE
    if "loss" in k and "ppl" not in k:
        if evalish or k in _EVAL_LOSS_EXACT:
            return Role.EVAL_LOSS
        return Role.TRAIN_LOSS
    if k in _TRAIN_LOSS_EXACT:
        return Role.TRAIN_LOSS
    if k in _EVAL_LOSS_EXACT:
        return Role.EVAL_LOSS
    if _LR_RE.match(k) and not k.endswith(("lr1", "lr2", "lr3")):
        return Role.LR
    if _GRAD_RE.search(k) or k == "norm":
        return Role.GRAD_NORM
    if evalish and _DOWN_RE.search(k):
        return Role.EVAL_DOWN
    if evalish and _UP_RE.search(k.rsplit("/", 1)[-1]):
        return Role.EVAL_UP
    return Role.OTHER


class RoleMap:
    """Roles of a run's metrics: name rules plus the run's overrides, cached per key."""

    def __init__(self, overrides: Mapping[str, str | Iterable[str]] | None = None) -> None:
        self._forced: dict[str, Role] = {}
        for role_name, keys in (overrides or {}).items():
            role = Role(role_name)
            for key in [keys] if isinstance(keys, str) else keys:
                self._forced[key] = role
        self._cache: dict[str, Role] = dict(self._forced)

    def __call__(self, key: str) -> Role:
        role = self._cache.get(key)
        if role is None:
            role = self._cache[key] = classify(key)
        return role

    @property
    def forced(self) -> dict[str, Role]:
        """Keys whose role the config fixed."""
        return dict(self._forced)


# Which key to show as "the" loss when a run has several: lower index wins.
_PRIMARY_LOSS_HINTS = ("train/loss", "loss", "lm loss", "trl", "train_loss", "train loss", "train_loss_step")


def primary(keys: Iterable[str], roles: RoleMap, role: Role) -> str | None:
    """The key that best represents `role` among `keys` (e.g. the headline training loss)."""
    candidates = [k for k in keys if roles(k) is role]
    if not candidates:
        return None
    if role is Role.TRAIN_LOSS:
        for hint in _PRIMARY_LOSS_HINTS:
            if hint in candidates:
                return hint
    return sorted(candidates, key=lambda k: (len(k), k))[0]
