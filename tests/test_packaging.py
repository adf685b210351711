"""The two ways to install, pip and conda, ask for the same runtime packages."""

import re
import stat
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# PyPI name -> conda-forge name, where they differ.
CONDA_NAMES = {"confluent-kafka": "python-confluent-kafka", "prometheus-client": "prometheus_client"}


def requirement_names(lines):
    wanted = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    return {re.split(r"[<>=!~ ]", line, maxsplit=1)[0].lower() for line in wanted}


def test_conda_environment_is_named_sfi_and_asks_for_every_pip_requirement():
    env = yaml.safe_load((ROOT / "requirements-SFI.yml").read_text())
    assert env["name"] == "SFI"
    assert "conda-forge" in env["channels"]
    conda = requirement_names(d for d in env["dependencies"] if isinstance(d, str))
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    from_pip = requirement_names(pip_section)
    for name in requirement_names((ROOT / "requirements_SFI.txt").read_text().splitlines()):
        assert CONDA_NAMES.get(name, name) in conda or name in from_pip, f"{name} missing from requirements-SFI.yml"


def test_script_is_executable_with_a_python3_shebang():
    script = ROOT / "scicat_ingestor.py"
    assert script.read_text().startswith("#!/usr/bin/env python3\n")
    assert script.stat().st_mode & stat.S_IXUSR
