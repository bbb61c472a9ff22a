"""The core never loads the UI: monitor/ and detectors/ import without textual or rich."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _core_modules() -> list[str]:
    mods = []
    for pkg in ("monitor", "detectors"):
        for m in pkgutil.walk_packages([str(ROOT / pkg)], prefix=f"{pkg}."):
            mods.append(m.name)
    return mods


def test_core_imports_no_ui() -> None:
    mods = _core_modules()
    assert "monitor.check" in mods and "detectors.run" in mods
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"core loaded UI modules: {out.stdout.strip()}"


def test_detectors_import_only_stdlib_numpy_and_the_model() -> None:
    for path in (ROOT / "detectors").glob("*.py"):
        for line in path.read_text().splitlines():
            s = line.strip()
            if s.startswith(("import ", "from ")) and " monitor" in s:
                assert s.startswith(("from monitor.model import", "import monitor.model")), f"{path.name}: {s}"
