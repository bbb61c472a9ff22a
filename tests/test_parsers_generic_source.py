"""The generic parser on logs that carry their program's source code, and on `Epoch [e/N]` counters."""

from __future__ import annotations

from monitor.model import Row
from monitor.parsers.generic import KeyValueParser


def _rows(lines: list[str]) -> tuple[KeyValueParser, list[Row]]:
    p = KeyValueParser()
    rows: list[Row] = []
    for line in lines:
        rows += p.feed(line + "\n")
    return p, rows


def test_format_specs_of_fstrings_are_no_values() -> None:
    # A parameter-golf log starts with train_gpt.py itself: its f-strings are no metric lines, and
    # `{training_time_ms / step:.2f}` does not make `step` 0.2.
    source = [
        '            log0(f"step:{step}/{args.iterations} val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f} "',
        '                f"train_time:{training_time_ms:.0f}ms step_avg:{training_time_ms / step:.2f}ms"',
        '        log0(f"final_int6_roundtrip_exact val_loss:{q_val_loss:.8f} acc:{acc:.1%}")',
        '    print("epoch={epoch:3d} loss={loss:>8.3e}")',
    ]
    log = [
        "step:0/20000 val_loss:6.9357 val_bpb:4.1077 train_time:0ms step_avg:0.02ms",
        "step:100/20000 train_loss:3.2101 train_time:9000ms step_avg:90.00ms",
        "step:200/20000 val_loss:2.9000 val_bpb:1.7200 train_time:18000ms step_avg:90.00ms",
    ]
    p, rows = _rows(source + log)
    assert [r.step for r in rows] == [0.0, 100.0, 200.0]
    assert rows[0].values["val_loss"] == 6.9357 and p.step_key == "step"
    # values that only look like a spec are still read: a plain number before `}`, a unit without it
    _, rows = _rows(["{step=3, loss=1.25}", "step=4 loss=1.5ms lr=2e-4}"])
    assert rows[0].values == {"loss": 1.25} and rows[1].values == {"loss": 1.5, "lr": 2e-4}


def test_epoch_of_n_in_brackets_is_the_epoch_axis() -> None:
    # `Epoch [e/N], Train Loss: X` and the evaluation line of the same epoch share the epoch's step.
    lines = []
    for e in range(1, 4):
        lines.append(f"Epoch [{e}/650], Train Loss: {0.2 / e:.4f}, Train L1 Loss: {2.0 / e:.4f}")
        lines.append(f"Epoch [{e}/650], Validation Loss: {0.1 / e:.4f}, Validation L1: {2.2 / e:.4f}")
    p, rows = _rows(lines)
    assert [r.step for r in rows] == [1.0, 1.0, 2.0, 2.0, 3.0, 3.0]
    assert p.axis == "epoch"
    assert rows[0].values == {"Train Loss": 0.2, "Train L1 Loss": 2.0}
    assert rows[1].values == {"Validation Loss": 0.1, "Validation L1": 2.2}
    # `Epoch (3/10)` too
    _, rows = _rows(["Epoch (3/10) loss=0.5", "Epoch (4/10) loss=0.4"])
    assert [r.step for r in rows] == [3.0, 4.0]
