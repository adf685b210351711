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


def test_service_file_runs_as_a_user_restarts_always_and_takes_secrets_from_an_environment_file():
    import configparser
    import shlex

    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read(ROOT / "examples" / "systemd" / "scicat-ingestor.service")
    service = unit["Service"]
    assert service["User"] not in ("", "root") and service["Group"] not in ("", "root")
    assert service["Restart"] == "always"
    assert service["EnvironmentFile"] == "/etc/scicat-ingestor/secrets.env"
    python, script, *args = shlex.split(service["ExecStart"])
    assert python.endswith("/venv/bin/python") and script.endswith("/scicat_ingestor.py")
    assert args[:2] == ["-c", "/etc/scicat-ingestor/config.json"]
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    # The example configuration's state lives where the unit lets the user write.
    config = (ROOT / "examples" / "systemd" / "config.json").read_text()
    assert f"/var/lib/{service['StateDirectory']}/spool" in config


def test_the_sasl_ssl_example_is_a_configuration_librdkafka_accepts(monkeypatch, tmp_path):
    import shutil

    import certifi  # comes with requests
    import scicat_ingestor as si
    from confluent_kafka import Consumer

    monkeypatch.setenv("SCICAT_INGESTOR_PASSWORD", "scicat-secret")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "kafka-secret")
    example = tmp_path / "config.json"
    shutil.copy(ROOT / "examples" / "systemd" / "config.json", example)
    config = si.load_config(str(example))
    assert config.kafka.consumer["security.protocol"] == "SASL_SSL"
    assert config.kafka.consumer["sasl.password"] == "kafka-secret"
    settings = si.Ingestor(config).consumer_settings()
    settings["ssl.ca.location"] = certifi.where()  # a CA bundle that exists here, in place of the site's
    Consumer(settings).close()  # unknown or contradictory settings would raise here
