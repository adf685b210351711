"""Starting as a newcomer does: the right interpreter, a stop at any moment, one line saying what was done."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ingestor_harness import SCRIPT, FileWriter, ingestor_config, wait_until
from kafka_broker import free_port

PYTHON_WITHOUT_PACKAGES = [sys.executable, "-S"]  # -S: no site-packages, as a bare system python3


def script_copy(folder: Path, with_venv: bool) -> Path:
    """The script in a checkout of its own, with or without a .venv made by make."""
    folder.mkdir()
    script = folder / "scicat_ingestor.py"
    shutil.copy(SCRIPT, script)
    if with_venv:
        (folder / ".venv").symlink_to(sys.prefix)  # the tests' own virtual environment
    return script


def test_started_by_a_python_without_the_packages_it_carries_on_in_the_checkouts_venv(tmp_path):
    script = script_copy(tmp_path / "checkout", with_venv=True)
    result = subprocess.run([*PYTHON_WITHOUT_PACKAGES, str(script), "-c", str(tmp_path / "none.json"),
                             "--check-config"], capture_output=True, text=True, timeout=60)
    # It got past its imports: the configuration is what it stops on now.
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"scicat_ingestor: configuration error: {tmp_path / 'none.json'}: " \
                                    "no such configuration file"


def test_without_the_packages_anywhere_one_line_names_what_to_install(tmp_path):
    script = script_copy(tmp_path / "bare", with_venv=False)
    result = subprocess.run([*PYTHON_WITHOUT_PACKAGES, str(script), "--version"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"scicat_ingestor: {sys.executable} lacks the Python packages confluent-kafka, "
                           "ess-streaming-data-types, h5py, requests, pillow: pip install -r requirements_SFI.txt")
    assert result.stdout == ""


@pytest.mark.integration
def test_sigterm_while_the_login_is_retried_exits_0_with_one_line(tmp_path, kafka_bootstrap, kafka_topic):
    nobody = f"http://127.0.0.1:{free_port()}/api/v3"  # no SciCat listens there
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, nobody,
                             **{"scicat.max_retries": 50, "scicat.retry_backoff_s": 0.2})
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    path.chmod(0o600)  # else a warning that others may read its password comes first
    process = subprocess.Popen([sys.executable, str(SCRIPT), "-c", str(path)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: [stderr.append(line) for line in process.stderr], daemon=True)
    reader.start()
    try:
        # Without -v, warnings go to stderr: wait for the second retry's.
        wait_until(lambda: any("retry 2/50" in line for line in stderr), 60, "the login's second retry")
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
    reader.join(10)
    assert process.returncode == 0, "".join(stderr)
    # Each retry named the host; nothing else was said on stderr, no traceback.
    assert stderr and all(f"SciCat at {nobody}: POST /auth/login: ConnectionError" in line and "; retry" in line
                          for line in stderr), "".join(stderr)
    assert process.stdout.read().splitlines() == ["SIGTERM received while starting: stopped, nothing ingested"]


@pytest.mark.integration
def test_the_daemon_says_what_it_did_when_stopped(tmp_path, kafka_bootstrap, kafka_topic, scicat):
    (tmp_path / "data").mkdir()
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    log = tmp_path / "ingestor.log"
    process = subprocess.Popen([sys.executable, str(SCRIPT), "-c", str(path), "--file-log", str(log)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: log.exists() and "consuming" in log.read_text(), 30, "the consumer to start")
        run = FileWriter(kafka_bootstrap, kafka_topic, tmp_path / "data").run()
        wait_until(lambda: scicat.datasets_for_job(run["job_id"]), 60, "the dataset")
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    [summary] = stdout.splitlines()
    assert summary.startswith("stopped on SIGTERM after ")
    assert summary.endswith(": 2 messages, 1 file: 1 created")


def test_a_dry_run_of_ingest_file_writes_no_spool_and_says_what_it_would_do(tmp_path):
    import producer  # examples/producer/producer.py, on the path through ingestor_harness

    data = tmp_path / "data"
    data.mkdir()
    for run in (1, 2):
        producer.write_nexus_file(str(data / f"dream_123456_{run:08d}.hdf"), job_id=f"job-{run}",
                                  instrument="DREAM", proposal="123456", run_number=run, title="t", events=10)
    (data / "broken.nxs").write_text("not HDF5")
    config = ingestor_config(tmp_path, "127.0.0.1:1", "unused", "http://127.0.0.1:1/api/v3")
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    result = subprocess.run([sys.executable, str(SCRIPT), "-c", str(path), "--dry-run", "--ingest-file", str(data)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1  # one file would fail
    assert result.stdout.splitlines() == ["--ingest-file: 3 files: 2 would be created, 1 failed"]
    assert "not spooled: dry run" in result.stderr and "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "spool")


@pytest.fixture
def one_spooled_file(tmp_path, scicat):
    """A configuration whose spool holds one failed file, and that spool's text."""
    (tmp_path / "data").mkdir()
    broken = tmp_path / "data" / "broken.nxs"
    broken.write_text("not HDF5")
    config = ingestor_config(tmp_path, "127.0.0.1:1", "unused", scicat.url)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    result = subprocess.run([sys.executable, str(SCRIPT), "-c", str(path), "--ingest-file", str(broken)],
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.splitlines() == ["--ingest-file: 1 file: 1 failed (spooled for --replay)"]
    spool = tmp_path / "spool" / "failed.jsonl"
    return path, spool, spool.read_text()


def test_a_dry_run_replay_leaves_the_spool_as_it_was(one_spooled_file):
    path, spool, before = one_spooled_file
    result = subprocess.run([sys.executable, str(SCRIPT), "-c", str(path), "--dry-run", "--replay"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["--replay (dry run, the spool left as it was): 1 records: "
                                          "0 would be ingested, 1 would still fail"]
    assert spool.read_text() == before


def test_a_replay_whose_login_fails_leaves_the_spool_as_it_was(one_spooled_file):
    path, spool, before = one_spooled_file
    config = json.loads(path.read_text())
    config["scicat"]["password"] = "wrong"
    path.write_text(json.dumps(config))
    result = subprocess.run([sys.executable, str(SCRIPT), "-c", str(path), "--replay"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 77  # EXIT_LOGIN_REFUSED: not restarted under systemd
    assert "cannot start: login as ingestor failed: HTTP 401" in result.stderr
    assert spool.read_text() == before
