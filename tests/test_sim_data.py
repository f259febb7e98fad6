"""The simulator's real candles ship inside the package, intact, and need nothing beside it."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import ost.sim
from ost.sim import realdata

DATA_DIR = Path(ost.sim.__file__).resolve().parent / "data"
PROJECT_DIR = Path(__file__).resolve().parent.parent


def readme_sums() -> dict[str, str]:
    """File name to SHA-256, as the data README lists them."""
    text = (DATA_DIR / "README.md").read_text()
    return {name: digest for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+)$", text, re.M)}


def test_every_shipped_file_matches_the_readme_checksum():
    """Each data file's SHA-256 is the one its README records, and every file is listed."""
    sums = readme_sums()
    shipped = {path.name for path in DATA_DIR.iterdir() if path.name != "README.md"}
    assert shipped == set(sums)
    for name, digest in sums.items():
        assert hashlib.sha256((DATA_DIR / name).read_bytes()).hexdigest() == digest, name


def test_the_default_data_dir_is_inside_the_project(monkeypatch):
    """Without the override, the simulator reads the package's own copy."""
    monkeypatch.delenv(realdata.ENV_DIR, raising=False)
    assert realdata.realdata_dir().resolve() == DATA_DIR
    assert PROJECT_DIR in DATA_DIR.parents


def test_no_tracked_file_points_outside_the_repository():
    """No code, doc, test or CI script names ../shared or an absolute build-machine path."""
    import subprocess

    tracked = subprocess.run(
        ["git", "ls-files"], cwd=PROJECT_DIR, capture_output=True, text=True, check=True
    ).stdout.split()
    outside = re.compile(r"\.\./shared|/work/|shared/realdata|git remote get-url origin")
    offenders = [
        name
        for name in tracked
        if name.endswith((".py", ".md", ".toml", ".yaml", ".yml", ".sh", ".service", "run"))
        and name != "tests/test_sim_data.py"  # this file names the patterns it looks for
        and (PROJECT_DIR / name).is_file()
        and outside.search((PROJECT_DIR / name).read_text(errors="replace"))
    ]
    assert offenders == []
