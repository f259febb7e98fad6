"""The layers of ``ost/__init__.py``: every module of ``ost/`` is in one, for lint-imports."""

from __future__ import annotations

import pkgutil
import re
import tomllib
from pathlib import Path

import ost

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def layered_modules() -> list[str]:
    """Every module that the layers contract of ``pyproject.toml`` names, in order."""
    config = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["importlinter"]
    (contract,) = [each for each in config["contracts"] if each["type"] == "layers"]
    return [name.strip() for layer in contract["layers"] for name in re.split(r"[:|]", layer)]


def test_every_module_of_ost_is_in_one_layer() -> None:
    """A module added to ost/ must be given a layer: a module in none is checked by nothing."""
    named = layered_modules()
    assert len(named) == len(set(named)), named
    modules = {f"ost.{module.name}" for module in pkgutil.iter_modules(ost.__path__)}
    assert sorted(modules - set(named)) == []
