"""--check-config: one line per check, exit 0 or 1, naming what fails; nothing ingested."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ingestor_harness import SCRIPT, FileWriter, ingestor_config
from kafka_broker import free_port
from scicat_standin import SciCatStandIn

pytestmark = pytest.mark.integration


def check_config(tmp_path, config: dict) -> tuple[int, list[str], str]:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    result = subprocess.run([sys.executable, str(SCRIPT), "-c", str(path), "--check-config"],
                            capture_output=True, text=True, timeout=60)
    return result.returncode, result.stdout.splitlines(), result.stderr


def failing(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("FAIL")]


@pytest.fixture
def good_config(tmp_path, kafka_bootstrap, kafka_topic, scicat):
    (tmp_path / "data").mkdir()
    return ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url,
                           **{"files.allowed_roots": [str(tmp_path / "data")]})


def test_a_good_configuration_passes_every_check_and_ingests_nothing(tmp_path, good_config, scicat,
                                                                      kafka_bootstrap, kafka_topic):
    FileWriter(kafka_bootstrap, kafka_topic, tmp_path / "data").run()  # waiting on the topic
    status, lines, stderr = check_config(tmp_path, good_config)
    assert status == 0, lines + [stderr]
    assert failing(lines) == []
    *lines, summary = lines
    assert summary == "--check-config: 7 checks, all passed"
    checked = [line.split(":")[0] for line in lines]
    assert checked == ["ok   kafka", f"ok   kafka topic {kafka_topic}", "ok   scicat",
                       f"ok   files root {tmp_path / 'data'}", f"ok   spool folder {tmp_path / 'spool'}",
                       f"ok   audit folder {tmp_path}", f"ok   run start store folder {tmp_path}"]
    assert f"ok   kafka topic {kafka_topic}: 1 partition" in lines  # the test topics have one
    assert scicat.logins == 1
    assert scicat.datasets == {}


def test_a_wrong_password_fails_the_scicat_check_only(tmp_path, good_config):
    good_config["scicat"]["password"] = "wrong-password"
    status, lines, stderr = check_config(tmp_path, good_config)
    assert status == 1
    [line] = failing(lines)
    assert line.startswith("FAIL scicat: login as ingestor failed: HTTP 401")
    assert lines[-1] == "--check-config: 7 checks, 1 failed"
    assert "wrong-password" not in "\n".join(lines) + stderr


def test_an_unreachable_broker_fails_the_kafka_check_only(tmp_path, good_config):
    good_config["kafka"]["bootstrap_servers"] = f"127.0.0.1:{free_port()}"  # nobody listens there
    status, lines, _ = check_config(tmp_path, good_config)
    assert status == 1
    [line] = failing(lines)
    assert line.startswith(f"FAIL kafka: cannot reach {good_config['kafka']['bootstrap_servers']}")
    assert "ok   scicat: logged in" in "\n".join(lines)


def test_a_missing_topic_is_named(tmp_path, good_config):
    good_config["kafka"]["topics"].append("no-such-topic")
    status, lines, _ = check_config(tmp_path, good_config)
    assert status == 1
    assert failing(lines) == ["FAIL kafka topic no-such-topic: no such topic"]


def test_a_missing_root_is_named(tmp_path, good_config):
    missing = str(tmp_path / "not-mounted")
    good_config["files"]["allowed_roots"].append(missing)
    status, lines, _ = check_config(tmp_path, good_config)
    assert status == 1
    assert failing(lines) == [f"FAIL files root {missing}: not a readable folder"]


@pytest.mark.parametrize("served, api, says", [
    (("v4",), "auto", "datasets through v4 at "), (("v3",), "auto", "datasets through v3 at "),
    (("v3", "v4"), "v3", "datasets through v3 at "), (("v4",), "v4", "datasets through v4 at "),
])
def test_the_scicat_check_reports_the_api_datasets_go_through_and_reads_there(tmp_path, kafka_bootstrap,
                                                                               kafka_topic, served, api, says):
    (tmp_path / "data").mkdir()
    with SciCatStandIn(apis=served) as standin:
        config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, standin.url, api,
                                 **{"files.allowed_roots": [str(tmp_path / "data")]})
        status, lines, stderr = check_config(tmp_path, config)
    assert status == 0, lines + [stderr]
    [line] = [line for line in lines if line.startswith("ok   scicat:")]
    assert says in line and ("scicat.api auto: GET" in line) == (api == "auto")
