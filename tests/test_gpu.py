"""GPU sampling without a GPU: patched `pynvml`, a fake `nvidia-smi`, W&B stats, the sampler loop."""

from __future__ import annotations

import asyncio
import itertools
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pynvml
import pytest

from monitor.gpu import (
    NVIDIA_SMI_QUERY,
    STATUS_NO_DRIVER,
    STATUS_NO_GPU,
    STATUS_NO_SMI,
    STATUS_OK,
    GpuHistory,
    GpuMonitor,
    GpuProcess,
    GpuSample,
    GpuSnapshot,
    NvidiaSmiParser,
    NvidiaSmiProcess,
    NvmlSampler,
    error_status,
    mean_util,
    nvidia_smi_argv,
    nvidia_smi_command,
    parse_smi_line,
    parse_smi_value,
    process_name,
    smi_status_from_exit,
    snapshot_from_wandb_stats,
)

pytestmark = pytest.mark.timeout(30)

MIB = 1024 * 1024


# ---------------------------------------------------------------- local: NVML


def test_real_pynvml_without_gpu_reports_a_status_not_an_exception() -> None:
    sampler = NvmlSampler()
    snap = sampler.sample(1000.0)
    sampler.close()
    assert snap.host == "localhost" and snap.time == 1000.0
    if snap.ok:  # a developer's GPU machine
        assert snap.gpus
    else:
        assert snap.status in (STATUS_NO_DRIVER, STATUS_NO_GPU)
        assert snap.gpus == ()


class FakeNvml:
    """Stands in for the NVML functions `NvmlSampler` calls; handles are the GPU indices."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, gpus: list[dict[str, Any]]) -> None:
        self.gpus = gpus
        self.calls: list[str] = []
        self.init_error: BaseException | None = None
        for name in (
            "nvmlInit",
            "nvmlShutdown",
            "nvmlDeviceGetCount",
            "nvmlDeviceGetHandleByIndex",
            "nvmlDeviceGetName",
            "nvmlDeviceGetUtilizationRates",
            "nvmlDeviceGetMemoryInfo",
            "nvmlDeviceGetTemperature",
            "nvmlDeviceGetPowerUsage",
            "nvmlDeviceGetComputeRunningProcesses",
        ):
            monkeypatch.setattr(pynvml, name, self._recorder(name))

    def _recorder(self, name: str) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            self.calls.append(name)
            return getattr(self, name)(*args)

        return call

    def _field(self, handle: int, key: str) -> Any:
        value = self.gpus[handle][key]
        if isinstance(value, BaseException):
            raise value
        return value

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise self.init_error

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> Any:
        return self._field(handle, "name")

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        return SimpleNamespace(gpu=self._field(handle, "util"), memory=40)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        used, total = self._field(handle, "mem")
        return SimpleNamespace(used=used, total=total, free=total - used)

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> Any:
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._field(handle, "temp")

    def nvmlDeviceGetPowerUsage(self, handle: int) -> Any:
        return self._field(handle, "power_mw")

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> Any:
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in self._field(handle, "procs")]


def _two_gpus() -> list[dict[str, Any]]:
    return [
        {
            "name": "NVIDIA H100 80GB HBM3",
            "util": 97,
            "mem": (70_000 * MIB, 81_559 * MIB),
            "temp": 64,
            "power_mw": 512_370,
            "procs": [(os.getpid(), 69_000 * MIB), (999_999_999, None)],
        },
        {
            "name": b"NVIDIA H100 80GB HBM3",
            "util": 0,
            "mem": (4 * MIB, 81_559 * MIB),
            "temp": pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION),
            "power_mw": pynvml.NVMLError_NotSupported(),
            "procs": pynvml.NVMLError_NotSupported(),
        },
    ]


def test_nvml_reads_every_gpu_and_unsupported_fields_become_none(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeNvml(monkeypatch, _two_gpus())
    snap = NvmlSampler(host="gpu-box").sample(5.0)
    assert snap == GpuSnapshot(
        host="gpu-box",
        time=5.0,
        status=STATUS_OK,
        gpus=(
            GpuSample(
                index=0,
                name="NVIDIA H100 80GB HBM3",
                util_pct=97.0,
                mem_used_mib=70_000.0,
                mem_total_mib=81_559.0,
                temp_c=64.0,
                power_w=512.37,
                processes=(
                    GpuProcess(os.getpid(), 69_000.0, process_name(os.getpid())),
                    GpuProcess(999_999_999, None, None),
                ),
            ),
            GpuSample(
                index=1,
                name="NVIDIA H100 80GB HBM3",
                util_pct=0.0,
                mem_used_mib=4.0,
                mem_total_mib=81_559.0,
                temp_c=None,
                power_w=None,
                processes=(),
            ),
        ),
    )
    assert snap.gpus[0].processes[0].name  # this test process is visible in /proc
    assert snap.gpus[0].mem_pct == pytest.approx(100 * 70_000 / 81_559)


def test_nvml_init_once_and_names_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvml(monkeypatch, _two_gpus())
    sampler = NvmlSampler()
    for t in range(3):
        assert sampler.sample(float(t)).ok
    assert fake.calls.count("nvmlInit") == 1
    assert fake.calls.count("nvmlDeviceGetName") == 2
    assert fake.calls.count("nvmlDeviceGetUtilizationRates") == 6
    sampler.close()
    assert fake.calls.count("nvmlShutdown") == 1


def test_nvml_init_failure_is_not_retried_in_a_hot_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvml(monkeypatch, _two_gpus())
    fake.init_error = pynvml.NVMLError_LibraryNotFound()
    sampler = NvmlSampler(retry_after_s=300.0)
    statuses = {sampler.sample(float(t)).status for t in range(0, 300, 1)}
    assert statuses == {STATUS_NO_DRIVER}
    assert fake.calls.count("nvmlInit") == 1
    fake.init_error = None  # the driver got installed
    snap = sampler.sample(300.0)
    assert fake.calls.count("nvmlInit") == 2
    assert snap.ok and len(snap.gpus) == 2


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (pynvml.NVMLError_LibraryNotFound(), STATUS_NO_DRIVER),
        (pynvml.NVMLError_DriverNotLoaded(), STATUS_NO_DRIVER),
        (pynvml.NVMLError_NoPermission(), "error: NVML: Insufficient Permissions"),
        (
            pynvml.NVMLError_LibRmVersionMismatch(),
            "error: NVML: RM has detected an NVML/RM version mismatch.",
        ),
    ],
)
def test_nvml_init_errors_map_to_statuses(
    monkeypatch: pytest.MonkeyPatch, error: BaseException, status: str
) -> None:
    fake = FakeNvml(monkeypatch, [])
    fake.init_error = error
    snap = NvmlSampler().sample(1.0)
    assert (snap.status, snap.gpus) == (status, ())


def test_nvml_zero_devices_is_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeNvml(monkeypatch, [])
    assert NvmlSampler().sample(1.0).status == STATUS_NO_GPU


def test_nvml_lost_driver_mid_run_is_a_status_and_retried_later(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvml(monkeypatch, _two_gpus())
    sampler = NvmlSampler(retry_after_s=60.0)
    assert sampler.sample(0.0).ok

    def lost() -> int:
        raise pynvml.NVMLError_GpuIsLost()

    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lost)
    assert sampler.sample(1.0).status == "error: NVML: GPU is lost"
    assert fake.calls.count("nvmlShutdown") == 1
    assert sampler.sample(30.0).status == "error: NVML: GPU is lost"
    assert fake.calls.count("nvmlInit") == 1
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lambda: 2)
    assert sampler.sample(61.0).ok
    assert fake.calls.count("nvmlInit") == 2


def test_nvml_unexpected_exception_becomes_a_status(monkeypatch: pytest.MonkeyPatch) -> None:
    gpus = _two_gpus()
    gpus[0]["mem"] = None  # unpacking None raises TypeError, as a changed pynvml might
    FakeNvml(monkeypatch, gpus)
    snap = NvmlSampler().sample(1.0)
    assert snap.status.startswith("error: NVML: TypeError:")
    assert "\n" not in snap.status


def test_process_name_from_proc(tmp_path: Path) -> None:
    (tmp_path / "10").mkdir()
    (tmp_path / "10" / "cmdline").write_bytes(b"python\0train.py\0--lr\x003e-4\0")
    (tmp_path / "11").mkdir()
    (tmp_path / "11" / "cmdline").write_bytes(b"")  # kernel threads and zombies have no cmdline
    (tmp_path / "11" / "comm").write_text("pt_main_thread\n")
    assert process_name(10, tmp_path) == "python train.py --lr 3e-4"
    assert process_name(11, tmp_path) == "pt_main_thread"
    assert process_name(12, tmp_path) is None


# ---------------------------------------------------------------- remote: nvidia-smi


def test_nvidia_smi_command() -> None:
    fields = "index,name,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw"
    expected = f"nvidia-smi --query-gpu={fields} --format=csv,noheader,nounits -l 1"
    assert nvidia_smi_command(1) == expected == NVIDIA_SMI_QUERY.format(interval=1)
    assert nvidia_smi_command(0.2).endswith(" -l 1")
    assert nvidia_smi_command(5).endswith(" -l 5")
    assert nvidia_smi_argv(2, "/opt/bin/nvidia-smi") == [
        "/opt/bin/nvidia-smi",
        f"--query-gpu={fields}",
        "--format=csv,noheader,nounits",
        "-l",
        "2",
    ]


@pytest.mark.parametrize(
    ("cell", "value"),
    [
        ("97", 97.0),
        (" 71234", 71234.0),
        (" 512.37", 512.37),
        (" [N/A]", None),
        (" [Not Supported]", None),
        (" [Unknown Error]", None),
        ("N/A", None),
        ("", None),
        (" ", None),
        ("nan", None),
    ],
)
def test_parse_smi_value(cell: str, value: float | None) -> None:
    assert parse_smi_value(cell) == value


@pytest.mark.parametrize(
    ("line", "sample"),
    [
        (
            "0, NVIDIA H100 80GB HBM3, 97, 71234, 81559, 64, 512.37",
            GpuSample(0, "NVIDIA H100 80GB HBM3", 97.0, 71234.0, 81559.0, 64.0, 512.37),
        ),
        (
            "1, NVIDIA A100-SXM4-40GB, 0, 4, 40960, 31, [N/A]",
            GpuSample(1, "NVIDIA A100-SXM4-40GB", 0.0, 4.0, 40960.0, 31.0, None),
        ),
        (
            "3, Tesla T4, [N/A], [N/A], 15360, [N/A], [Not Supported]",
            GpuSample(3, "Tesla T4", None, None, 15360.0, None, None),
        ),
        (
            "0, NVIDIA GeForce RTX 3090, 12, 1024, 24576, , 27.50",
            GpuSample(0, "NVIDIA GeForce RTX 3090", 12.0, 1024.0, 24576.0, None, 27.5),
        ),
        ("2, Odd, Name, 5, 10, 20, 30, 40", GpuSample(2, "Odd, Name", 5.0, 10.0, 20.0, 30.0, 40.0)),
        ("0, [N/A], 1, 2, 3, 4, 5", GpuSample(0, None, 1.0, 2.0, 3.0, 4.0, 5.0)),
        ("index, name, utilization.gpu [%], memory.used [MiB], memory.total [MiB], a, b", None),
        ("No devices were found", None),
        ("0, too, short", None),
    ],
)
def test_parse_smi_line(line: str, sample: GpuSample | None) -> None:
    assert parse_smi_line(line) == sample


TWO_GPU_LINES = [
    "0, NVIDIA H100 80GB HBM3, 97, 71234, 81559, 64, 512.37\n",
    "1, NVIDIA H100 80GB HBM3, 0, 4, 81559, 31, [N/A]\n",
]


def test_parser_groups_intervals_and_then_emits_without_waiting() -> None:
    parser = NvidiaSmiParser("node1")
    out = [
        parser.feed(TWO_GPU_LINES[0], 10.0),
        parser.feed(TWO_GPU_LINES[1], 10.01),
        parser.feed(TWO_GPU_LINES[0], 11.0),  # index back to 0: the first interval is complete
        parser.feed(TWO_GPU_LINES[1], 11.01),  # size now known: emitted at once
        parser.feed("\n", 11.5),
        parser.feed(TWO_GPU_LINES[0], 12.0),
        parser.feed(TWO_GPU_LINES[1], 12.01),
    ]
    assert [None if s is None else (s.time, len(s.gpus)) for s in out] == [
        None,
        None,
        (10.0, 2),
        (11.0, 2),
        None,
        None,
        (12.0, 2),
    ]
    first = out[2]
    assert first is not None and first.host == "node1" and first.ok
    assert [g.index for g in first.gpus] == [0, 1]
    assert first.gpus[1].power_w is None
    assert parser.flush() is None


def test_parser_single_gpu_does_not_lag_an_interval() -> None:
    parser = NvidiaSmiParser("h")
    line = "0, Tesla V100-SXM2-16GB, 55, 9000, 16160, 50, 180.10"
    assert parser.feed(line, 1.0) is None
    second = parser.feed(line, 2.0)
    assert second is not None and second.time == 2.0
    third = parser.feed(line, 3.0)
    assert third is not None and third.time == 3.0


def test_parser_flush_hands_out_partial_group() -> None:
    parser = NvidiaSmiParser("h")
    assert parser.feed(TWO_GPU_LINES[0], 1.0) is None
    pending = parser.flush()
    assert pending is not None and len(pending.gpus) == 1 and pending.time == 1.0
    assert parser.flush() is None


@pytest.mark.parametrize(
    ("line", "status"),
    [
        (
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
            "Make sure that the latest NVIDIA driver is installed and running.",
            STATUS_NO_DRIVER,
        ),
        ("No devices were found", STATUS_NO_GPU),
        ("bash: nvidia-smi: command not found", STATUS_NO_SMI),
        ("sh: 1: nvidia-smi: not found", STATUS_NO_SMI),
        ("Unable to determine the device handle for GPU0000:3B:00.0: Unknown Error", None),
    ],
)
def test_parser_message_lines_become_statuses(line: str, status: str | None) -> None:
    snap = NvidiaSmiParser("h").feed(line, 7.0)
    assert snap is not None and snap.gpus == () and snap.time == 7.0
    assert snap.status == (status or f"error: nvidia-smi: {line}")


@pytest.mark.parametrize(
    ("returncode", "stderr", "status"),
    [
        (127, "", STATUS_NO_SMI),
        (127, "bash: line 1: nvidia-smi: command not found", STATUS_NO_SMI),
        (9, "", STATUS_NO_DRIVER),
        (6, "No devices were found", STATUS_NO_GPU),
        (15, "GPU is lost", "error: nvidia-smi exited with 15: GPU is lost"),
        (-15, "", "error: nvidia-smi exited with -15"),
    ],
)
def test_smi_status_from_exit(returncode: int, stderr: str, status: str) -> None:
    assert smi_status_from_exit(returncode, stderr) == status


def _fake_nvidia_smi(bin_dir: Path, body: str) -> Path:
    """Write an executable `nvidia-smi` shell script into `bin_dir`."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "nvidia-smi"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def _interval_lines() -> str:
    return "".join(f"echo '{line.strip()}'\n" for line in TWO_GPU_LINES)


# Checks it was called as NVIDIA_SMI_QUERY asks, then prints three intervals.
FAKE_SMI_PRELUDE = f"""
if [ "$*" != "{" ".join(nvidia_smi_argv(1)[1:])}" ]; then echo "bad arguments: $*" >&2; exit 2; fi
for i in 1 2 3; do
{_interval_lines()}  sleep 0.05
done
"""


def _run_smi(process: NvidiaSmiProcess) -> str:
    return asyncio.run(asyncio.wait_for(process.run(), 20))


def test_nvidia_smi_process_streams_until_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Like the real `-l 1`, the fake never ends by itself after its output.
    _fake_nvidia_smi(tmp_path / "bin", FAKE_SMI_PRELUDE + "exec sleep 60\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    got: list[GpuSnapshot] = []

    async def scenario() -> str:
        three = asyncio.Event()

        def on_snapshot(snap: GpuSnapshot) -> None:
            got.append(snap)
            if len(got) == 3:
                three.set()

        process = NvidiaSmiProcess(on_snapshot, host="local", interval_s=1)
        task = asyncio.create_task(process.run())
        await asyncio.wait_for(three.wait(), 10)
        await process.stop()
        return await asyncio.wait_for(task, 10)

    assert asyncio.run(scenario()) == STATUS_OK
    assert [(s.host, s.status, len(s.gpus)) for s in got] == [("local", STATUS_OK, 2)] * 3
    assert all(s.gpus[0].power_w == 512.37 and s.gpus[1].power_w is None for s in got)


def test_nvidia_smi_process_that_exits_delivers_last_group_and_a_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_nvidia_smi(
        tmp_path / "bin", FAKE_SMI_PRELUDE + "echo 'GPU 00000000:3B:00.0: GPU is lost' >&2\nexit 15\n"
    )
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    got: list[GpuSnapshot] = []
    status = _run_smi(NvidiaSmiProcess(got.append))
    assert status == "error: nvidia-smi exited with 15: GPU 00000000:3B:00.0: GPU is lost"
    assert [s.status for s in got] == [STATUS_OK, STATUS_OK, STATUS_OK, status]
    assert [len(s.gpus) for s in got] == [2, 2, 2, 0]


def test_nvidia_smi_missing_is_reported_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    got: list[GpuSnapshot] = []
    assert _run_smi(NvidiaSmiProcess(got.append, host="local")) == STATUS_NO_SMI
    assert [(s.host, s.status, s.gpus) for s in got] == [("local", STATUS_NO_SMI, ())]


def test_nvidia_smi_exit_127_is_reported_once(tmp_path: Path) -> None:
    # A wrapper (module load, container exec) that cannot find the real binary exits 127.
    script = _fake_nvidia_smi(tmp_path, "echo 'sh: 1: nvidia-smi: not found' >&2\nexit 127\n")
    got: list[GpuSnapshot] = []
    assert _run_smi(NvidiaSmiProcess(got.append, executable=str(script))) == STATUS_NO_SMI
    assert [s.status for s in got] == [STATUS_NO_SMI]


def test_nvidia_smi_without_driver_is_reported_once(tmp_path: Path) -> None:
    script = _fake_nvidia_smi(
        tmp_path,
        "echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
        'Make sure that the latest NVIDIA driver is installed and running."\nexit 9\n',
    )
    got: list[GpuSnapshot] = []
    assert _run_smi(NvidiaSmiProcess(got.append, executable=str(script))) == STATUS_NO_DRIVER
    assert [s.status for s in got] == [STATUS_NO_DRIVER]


# ---------------------------------------------------------------- W&B system metrics


def test_wandb_stats_to_snapshot() -> None:
    stats = {
        "cpu": 12.5,
        "memory_percent": 33.1,
        "gpu.0.gpu": 97,
        "gpu.0.memory": 41,  # memory controller busy %, must not be read as memory used
        "gpu.0.memoryAllocated": 87.5,
        "gpu.0.memoryAllocatedBytes": 70_000 * MIB,
        "gpu.0.temp": 64,
        "gpu.0.powerWatts": 512.37,
        "gpu.0.powerPercent": 73.2,
        "gpu.0.enforcedPowerLimitWatts": 700,
        "gpu.0.smClock": 1980,
        "gpu.1.gpu": 0,
        "gpu.1.memoryAllocated": 0,
        "gpu.1.memoryAllocatedBytes": 0,
        "gpu.1.temp": 31,
        "gpu.process.0.gpu": 97,
        "gpu.process.0.memoryAllocatedBytes": 70_000 * MIB,
    }
    snap = snapshot_from_wandb_stats(stats, host="run abc123", now=42.0)
    assert snap == GpuSnapshot(
        host="run abc123",
        time=42.0,
        status=STATUS_OK,
        gpus=(
            GpuSample(0, None, 97.0, 70_000.0, 80_000.0, 64.0, 512.37),
            GpuSample(1, None, 0.0, 0.0, None, 31.0, None),
        ),
    )


def test_wandb_stats_from_api_with_metadata_and_odd_values() -> None:
    stats = {
        "_runtime": 120,
        "system.gpu.0.gpu": "55",
        "system.gpu.0.memoryAllocated": 50,
        "system.gpu.0.temp": float("nan"),
        "system.gpu.0.powerWatts": None,
        "system.gpu.0.gpu/l:node-2": 99,
        "system.gpu.1.gpu": True,
    }
    snap = snapshot_from_wandb_stats(
        stats, host="h", now=1.0, names={0: "NVIDIA A100-SXM4-80GB"}, mem_total_mib={0: 81_920.0}
    )
    assert snap.gpus == (GpuSample(0, "NVIDIA A100-SXM4-80GB", 55.0, 40_960.0, 81_920.0, None, None),)


def test_wandb_stats_without_gpu_keys() -> None:
    snap = snapshot_from_wandb_stats({"cpu": 3.0, "memory_percent": 20}, host="h", now=1.0)
    assert (snap.status, snap.gpus) == (STATUS_NO_GPU, ())


# ---------------------------------------------------------------- sampler loop and history


class FakeClock:
    """A clock only the test moves; `sleep` advances it instead of waiting."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)


class FakeSource:
    """A GPU source whose samples take `cost_s` of fake time and whose util counts up."""

    def __init__(self, clock: FakeClock, cost_s: float = 0.0, fail_at: int | None = None) -> None:
        self.host = "fake"
        self.clock = clock
        self.cost_s = cost_s
        self.fail_at = fail_at
        self.calls: list[float] = []

    def sample(self, now: float) -> GpuSnapshot:
        self.calls.append(now)
        self.clock.advance(self.cost_s)
        if len(self.calls) == self.fail_at:
            raise RuntimeError("driver hiccup\nsecond line")
        n = float(len(self.calls))
        return GpuSnapshot(self.host, now, (GpuSample(0, "G", n), GpuSample(1, "G", None)))


def _run_monitor(
    monitor_factory: Callable[[Callable[[GpuSnapshot], None]], GpuMonitor], count: int
) -> list[GpuSnapshot]:
    """Run a monitor until it delivered `count` snapshots, then stop it."""
    got: list[GpuSnapshot] = []

    async def scenario() -> None:
        enough = asyncio.Event()

        def on_snapshot(snap: GpuSnapshot) -> None:
            got.append(snap)
            if len(got) >= count:
                enough.set()

        monitor = monitor_factory(on_snapshot)
        task = monitor.start()
        await asyncio.wait_for(enough.wait(), 10)
        await monitor.stop()
        assert task.done()

    asyncio.run(scenario())
    return got


@pytest.mark.parametrize(
    ("interval_s", "cost_s", "gap"), [(1.0, 0.25, 1.0), (0.1, 0.0, 1.0), (2.0, 0.5, 2.0)]
)
def test_monitor_samples_at_most_once_per_interval(interval_s: float, cost_s: float, gap: float) -> None:
    clock = FakeClock()
    source = FakeSource(clock, cost_s=cost_s)
    got = _run_monitor(
        lambda cb: GpuMonitor(source, cb, interval_s=interval_s, clock=clock, sleep=clock.sleep), 10
    )
    times = [s.time for s in got]
    assert source.calls[: len(got)] == times
    assert all(b - a >= gap - 1e-9 for a, b in itertools.pairwise(times))
    assert all(b - a == pytest.approx(gap) for a, b in itertools.pairwise(times))
    assert len(source.calls) <= len(got) + 1  # stop() leaves at most one sample in flight


def test_monitor_slow_source_lowers_the_rate_without_piling_up() -> None:
    clock = FakeClock()
    source = FakeSource(clock, cost_s=1.5)
    got = _run_monitor(lambda cb: GpuMonitor(source, cb, clock=clock, sleep=clock.sleep), 5)
    times = [s.time for s in got]
    assert [round(b - a, 6) for a, b in itertools.pairwise(times)] == [1.5] * 4
    assert set(clock.sleeps) == {0.0}


def test_monitor_history_is_bounded_and_gives_mean_util() -> None:
    clock = FakeClock()
    source = FakeSource(clock)
    monitors: list[GpuMonitor] = []

    def make(cb: Callable[[GpuSnapshot], None]) -> GpuMonitor:
        monitors.append(GpuMonitor(source, cb, history_len=5, clock=clock, sleep=clock.sleep))
        return monitors[0]

    got = _run_monitor(make, 20)
    history = monitors[0].history
    assert monitors[0].latest == got[-1]
    assert history.indices() == (0, 1)
    n = len(got)
    assert [s.util_pct for s in history.samples(0)] == [float(i) for i in range(n - 4, n + 1)]
    assert history.times(0) == tuple(s.time for s in got[-5:])
    assert history.mean_util(0, 3) == pytest.approx(n - 1)
    assert history.mean_util(1, 3) is None  # N/A all along


def test_monitor_source_exception_becomes_a_status_and_sampling_goes_on() -> None:
    clock = FakeClock()
    source = FakeSource(clock, fail_at=2)
    got = _run_monitor(lambda cb: GpuMonitor(source, cb, clock=clock, sleep=clock.sleep), 3)
    assert [s.status for s in got] == [STATUS_OK, "error: RuntimeError: driver hiccup second line", STATUS_OK]


def test_monitor_with_real_nvml_on_a_gpu_less_machine() -> None:
    clock = FakeClock()
    sampler = NvmlSampler()
    got = _run_monitor(lambda cb: GpuMonitor(sampler, cb, clock=clock, sleep=clock.sleep), 3)
    sampler.close()
    assert len({s.status for s in got}) == 1
    assert got[0].ok or got[0].status in (STATUS_NO_DRIVER, STATUS_NO_GPU)


def test_mean_util_and_history_resize() -> None:
    samples = [GpuSample(0, util_pct=u) for u in (10.0, None, 30.0, 50.0)]
    assert mean_util(samples, 3) == pytest.approx(40.0)
    assert mean_util(samples, 100) == pytest.approx(30.0)
    assert mean_util(samples, 0) is None
    assert mean_util([], 5) is None
    history = GpuHistory(maxlen=10)
    for t in range(8):
        history.add(GpuSnapshot("h", float(t), (GpuSample(0, util_pct=float(t)),)))
    history.add(GpuSnapshot("h", 9.0, (), STATUS_NO_DRIVER))
    history.resize(3)
    assert [s.util_pct for s in history.samples(0)] == [5.0, 6.0, 7.0]
    history.add(GpuSnapshot("h", 10.0, (GpuSample(0, util_pct=10.0),)))
    assert history.times(0) == (6.0, 7.0, 10.0)
    assert history.samples(7) == ()
    with pytest.raises(ValueError):
        GpuHistory(0)


def test_error_status_is_one_short_line() -> None:
    status = error_status("boom\n  " + "x" * 500)
    assert status.startswith("error: boom x") and "\n" not in status and len(status) <= 207


def test_cancelling_nvidia_smi_process_ends_the_subprocess(tmp_path: Path) -> None:
    script = _fake_nvidia_smi(tmp_path, _interval_lines() + "exec sleep 60\n")
    got: list[GpuSnapshot] = []
    process = NvidiaSmiProcess(got.append, executable=str(script))

    async def scenario() -> int | None:
        task = asyncio.create_task(process.run())
        while process._proc is None:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return process._proc.returncode

    assert asyncio.run(scenario()) is not None
