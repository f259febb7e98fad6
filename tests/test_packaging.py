"""The wheel: one import root, `ost`, so installing it cannot shadow another distribution."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("uv") is None, reason="building a wheel needs uv")


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The file names inside a wheel built from this checkout."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        ["uv", "build", "--wheel", "--quiet", "--out-dir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_the_wheel_installs_ost_alone(wheel_names: list[str]) -> None:
    """Every importable file of the wheel lives under `ost/`: no top-level flows, tasks, alerts."""
    roots = {name.split("/", 1)[0] for name in wheel_names if ".dist-info/" not in name}
    assert roots == {"ost"}


def test_the_design_cards_directories_ship_inside_ost(wheel_names: list[str]) -> None:
    """The checkout's flows/, tasks/ and alerts/ ship as ost.flows, ost.tasks and ost.alerts."""
    for package in ("flows", "tasks", "alerts"):
        sources = sorted(p.name for p in (ROOT / package).glob("*.py"))
        shipped = sorted(
            name.rsplit("/", 1)[1]
            for name in wheel_names
            if name.startswith(f"ost/{package}/") and name.endswith(".py")
        )
        assert shipped == sources, package
