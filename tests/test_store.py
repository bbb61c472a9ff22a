"""The bounded run store: full resolution recently, min/max-preserving history, order kept."""

from __future__ import annotations

import math

import numpy as np

from monitor.model import Row
from monitor.store import MetricSeries, RunStore


def test_memory_is_bounded_and_extremes_survive_downsampling() -> None:
    s = MetricSeries(recent=256, history=64)
    n = 200_000
    for i in range(n):
        v = 1000.0 if i == 1234 else (math.nan if i == 5678 else math.sin(i / 100))
        s.append(float(i), v)
    steps, values = s.series()
    assert s.count == n and s.nbytes() <= 8 * (2 * 2 * 256 + 4 * 64)
    assert np.nanmax(values) == 1000.0 and np.nanmin(values) < -0.99
    # The NaN is remembered in the history bucket that held it.
    assert np.isnan(values[: len(values) - 512]).any()
    assert steps[0] == 0 and np.all(np.diff(steps) >= 0)
    # The recent window is exact.
    rs, rv = s.recent()
    assert rs[-1] == n - 1 and rv[-1] == math.sin((n - 1) / 100)


def test_store_keeps_each_metric_in_order_with_sparse_rows() -> None:
    st = RunStore(recent=64, history=16)
    rows = []
    for i in range(1000):
        rows.append(Row(float(i), {"loss": 1.0 / (i + 1), "lr": 0.1}))
        if i % 10 == 9:
            rows.append(Row(float(i), {"val_loss": 2.0 / (i + 1)}))
    for k in range(0, len(rows), 37):
        st.add_many(rows[k : k + 37], now=100.0 + k)
    assert set(st.metrics) == {"loss", "lr", "val_loss"}
    assert st.metrics["loss"].count == 1000 and st.metrics["val_loss"].count == 100
    steps, _ = st.metrics["val_loss"].series()
    assert np.all(np.diff(steps) >= 0)
    assert st.last("loss") == 1.0 / 1000 and st.last_step == 999 and st.rows == 1100
    assert len(st.times) == 64 and st.times[-1][0] == 999


def test_steps_per_second_from_row_times() -> None:
    st = RunStore()
    st.add_many([Row(float(i), {"loss": 1.0}, time=1000.0 + i / 4) for i in range(100)], now=0.0)
    assert st.steps_per_second() == 4.0
    pts = list(st.points())
    assert len(pts) == 100 and pts[0] == ("loss", 0.0, 1.0)


def test_speed_of_a_silent_run_decays_towards_zero() -> None:
    st = RunStore()
    st.add_many([Row(float(i), {"loss": 1.0}, time=1000.0 + i) for i in range(10)], now=0.0)
    assert st.steps_per_second(now=1010.0) == 1.0
    assert st.steps_per_second(now=1100.0) == 9.0 / 100.0
