"""The tokens x axis: how many tokens a run had seen at each of its steps, from what it logs.

In order: the run's own axis when it counts tokens; a logged token counter (HF Trainer's
`num_input_tokens_seen`, TRL's `num_tokens`, OLMo's `throughput/total_tokens`, `tokens`, `tokens_seen`,
`consumed_tokens`); Megatron's `consumed samples` times the sequence length when the config tells
it; or the steps times a fixed tokens-per-step the config states (nanoGPT's `tokens_per_iter`,
Megatron's `global_batch_size` × `seq_length`). A run with none of these has no tokens axis.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from monitor.analysis import RunAnalysis

#: Counters of tokens seen so far (the last path component of the key, lower case).
TOKEN_COUNTERS = ("num_input_tokens_seen", "tokens_seen", "num_tokens", "consumed_tokens", "total_tokens", "tokens")
#: Counters of samples seen so far (Megatron, NeMo): tokens once the sequence length is known.
SAMPLE_COUNTERS = ("consumed samples", "consumed_samples")
_SEQ_KEYS = ("seq_length", "seq-length", "seq_len", "max_seq_length", "encoder_seq_length", "block_size")
_PER_STEP_KEYS = ("tokens_per_iter", "tokens_per_iteration", "tokens_per_step")
_BATCH_KEYS = ("global_batch_size", "global-batch-size")

Pairs = tuple[np.ndarray, np.ndarray]


def is_token_counter(key: str) -> bool:
    """Whether a key counts tokens or samples seen so far (an x axis, not a curve worth a pane)."""
    k = key.strip().lower()
    return _last(k) in TOKEN_COUNTERS or k in SAMPLE_COUNTERS


def _last(key: str) -> str:
    return key.strip().lower().rsplit("/", 1)[-1]


def token_key(keys: list[str]) -> str | None:
    """The metric that counts tokens seen, by preference (a counter, never a rate like `tok/s`)."""
    by_name: dict[str, str] = {}
    for k in keys:
        by_name.setdefault(_last(k), k)
    return next((by_name[n] for n in TOKEN_COUNTERS if n in by_name), None)


def _config_number(config: Mapping[str, Any], names: tuple[str, ...]) -> float | None:
    """A positive number the config states under one of these names (at the top or one level down)."""
    flat: dict[str, Any] = {}
    for k, v in config.items():
        if isinstance(v, Mapping):
            for k2, v2 in v.items():
                flat.setdefault(str(k2).lower(), v2)
        flat[str(k).lower()] = v
    for name in names:
        v = flat.get(name)
        if isinstance(v, dict) and "value" in v:  # W&B config items: {"value": ..., "desc": ...}
            v = v["value"]
        try:
            x = float(v)
        except (TypeError, ValueError):
            continue
        if x > 0 and x == x:
            return x
    return None


def _finite(steps: np.ndarray, values: np.ndarray) -> Pairs | None:
    ok = np.isfinite(values) & np.isfinite(steps)
    return (steps[ok], values[ok]) if ok.sum() >= 1 and float(values[ok].max()) > 0 else None


def tokens_of(a: RunAnalysis) -> Pairs | None:
    """A run's (step, tokens seen) pairs, or None when nothing it logs or states tells its tokens."""
    steps_all = np.asarray([s for s, _ in a.store.times], dtype=float)
    if str(getattr(a.info, "axis", "")) in ("token", "tokens"):
        return (steps_all, steps_all) if len(steps_all) else None
    keys = list(a.store.metrics.keys())
    if (k := token_key(keys)) is not None and (p := _finite(*a.store.metrics[k].series())) is not None:
        return p
    config = a.info.config or {}
    seq = _config_number(config, _SEQ_KEYS)
    samples = next((k for k in keys if k.strip().lower() in SAMPLE_COUNTERS), None)
    if samples is not None and seq is not None:
        steps, values = a.store.metrics[samples].series()
        if (p := _finite(steps, values * seq)) is not None:
            return p
    per_step = _config_number(config, _PER_STEP_KEYS)
    if per_step is None and seq is not None and (batch := _config_number(config, _BATCH_KEYS)) is not None:
        per_step = batch * seq
    if per_step is not None and len(steps_all):
        return (steps_all, steps_all * per_step)
    return None
