"""`pip install` of the checkout gives a working `ferryman edge logs`: one build makes
the Python packages and the native module (``ferryman_native``), for a wheel and for an
editable install alike, into a fresh virtualenv.

Offline and quick: pip installs only ferryman (``--no-deps``); the fresh virtualenv
borrows every dependency from the running one's site-packages, less ferryman's own
entries, so nothing but the fresh install can answer ``import ferryman_native``. cargo
keeps its build in native/target: warm, a build is seconds."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ferryman", "edge", "workers", "functions", "infra", "ferryman_native")

# Run in the fresh virtualenv: the shipper's names for the native calls are the native
# module's, and they give what the Python encoders give.
PROBE = """
import sys
import ferryman_native
from edge.logs import shipper
from ferryman.wire import loki
from ferryman.wire.lines import encode_lines
from ferryman.wire.remote_write import snappy_decompress

assert shipper.loki_push_split is ferryman_native.loki_push_split
labels = loki.format_labels({"job": "app"})
parts, counts = shipper.loki_push_split(
    labels, [1, 2], ["one", "two"], shipper._budget(1 << 20)
)
assert counts == [2], counts
expected = loki.encode_push_request(
    [loki.Stream(loki.parse_labels(labels), loki.Entries([1, 2], ["one", "two"]))]
)
assert snappy_decompress(parts[0]) == expected
runs = [[(bytes(16), [3, 9, 40])]]
assert encode_lines(runs, shipper.lines_deltas) == encode_lines(runs)
print(ferryman_native.__file__)
"""


def _run(argv: list[str], cwd: Path, **env: str) -> str:
    proc = subprocess.run(
        argv,
        cwd=cwd,
        # Not the checkout's PYTHONPATH: pip would find ferryman there (its egg-info)
        # and the probe would import the checkout, not the install.
        env={**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, f"{' '.join(argv)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _pip(*args: str) -> list[str]:
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]


# pyo3 reconfigures (and cargo rebuilds most of the crate graph) when the interpreter it
# is told about changes; the fresh virtualenv's is the running one's base, so the build
# may keep describing the running one and stay warm.
_SAME_PYTHON = {"PYO3_PYTHON": sys.executable}


def _fresh_venv(tmp: Path) -> Path:
    """A virtualenv without pip whose dependencies are the running one's, except ferryman
    and an old separate ``ferryman_native``; its python."""
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp)
    borrowed = tmp / "dependencies"
    borrowed.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if entry.name.startswith(("ferryman", "__editable__", "_virtualenv")):
            continue
        (borrowed / entry.name).symlink_to(entry)
    python = venv / "bin" / "python"
    purelib = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp
    )
    Path(purelib.strip(), "dependencies.pth").write_text(f"{borrowed}\n")
    return python


def _works(python: Path, tmp: Path) -> Path:
    """Runs the probe and ``ferryman edge logs --help`` outside the checkout; the path
    ``ferryman_native`` was imported from."""
    native = Path(_run([str(python), "-c", PROBE], tmp).strip())
    assert "usage: ferryman edge logs" in _run(
        [str(python.parent / "ferryman"), "edge", "logs", "--help"], tmp
    )
    return native


def test_a_wheel_of_the_checkout_carries_the_native_module_and_runs(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    _run(
        _pip("wheel", "--no-deps", "--wheel-dir", str(wheels), str(ROOT)), tmp_path, **_SAME_PYTHON
    )
    (wheel,) = wheels.glob("ferryman-*.whl")
    assert wheel.name.endswith("-cp311-abi3-linux_x86_64.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} >= set(PACKAGES)
    assert "ferryman_native/ferryman_native.abi3.so" in names
    assert {"ferryman_native/__init__.pyi", "ferryman_native/py.typed"} <= set(names)

    python = _fresh_venv(tmp_path)
    _run(_pip("--python", str(python), "install", "--no-deps", "--no-index", str(wheel)), tmp_path)
    native = _works(python, tmp_path)
    assert tmp_path / "venv" in native.parents
    assert native.with_name("ferryman_native.abi3.so").is_file()


def test_an_editable_install_builds_the_native_module_in_place(tmp_path: Path) -> None:
    python = _fresh_venv(tmp_path)
    _run(
        _pip("--python", str(python), "install", "--no-deps", "-e", str(ROOT)),
        tmp_path,
        **_SAME_PYTHON,
    )
    native = _works(python, tmp_path)
    assert native.parent == ROOT / "native" / "python" / "ferryman_native"
    assert list(native.parent.glob("ferryman_native.*.so"))
