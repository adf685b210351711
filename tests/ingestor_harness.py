"""Running scicat_ingestor.py as a user does, for the integration tests.

`IngestorProcess` starts the script as a subprocess on a configuration written
for one test (its own topic, consumer group, SciCat stand-in, spool and audit
files) and reads its log; `FileWriter` plays the ESS file writer's part with
the producer's own functions.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Optional

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scicat_ingestor.py"
sys.path.insert(0, str(ROOT / "examples" / "producer"))
sys.path.insert(0, str(ROOT))

import producer  # noqa: E402  (examples/producer/producer.py)

from kafka_broker import produce  # noqa: E402

# Small session timeouts: a new consumer group gets its first message after
# about half of session.timeout.ms with the test broker.
FAST_CONSUMER = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000, "fetch.wait.max.ms": 100}


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def one_dataset_each(scicat, runs):
    """Every run has exactly one dataset, and that dataset its one origdatablock."""
    for run in runs:
        found = scicat.datasets_for_job(run["job_id"])
        if len(found) != 1:
            return False
        blocks = [b for b in scicat.origdatablocks if b["datasetId"] == found[0]["pid"]]
        if len(blocks) != 1:
            return False
    return True


def ingestor_config(tmp_path: Path, bootstrap: str, topic: str, scicat_url: str, api: str = "",
                    **overrides: Any) -> dict:
    """A configuration for one test; ``overrides`` maps "section.key" to a value; ``api`` is
    scicat.api (left out, the default: auto)."""
    config: dict[str, Any] = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "topics": [topic],
            "group_id": f"sfi-test-{uuid.uuid4().hex[:8]}",
            "consumer": dict(FAST_CONSUMER),
            "poll_timeout_s": 0.2,
        },
        "scicat": {"host": scicat_url, "username": "ingestor", "password": "secret",
                   "timeout_s": 5, "max_retries": 3, "retry_backoff_s": 0.2},
        "dataset": {
            "instrument_name": "DREAM",
            "contact_email": "dm@example.org",
            "creation_location": "/ESS/DREAM",
            "ownable": {"ownerGroup": "ess", "accessGroups": ["dream"]},
        },
        "files": {"allowed_roots": [str(tmp_path)], "wait_s": 2},
        "spool": {"directory": str(tmp_path / "spool")},
        "audit": {"file": str(tmp_path / "audit.jsonl")},
        "options": {"stats_interval_s": 2, "run_start_state_file": str(tmp_path / "run_starts.jsonl")},
    }
    if api:
        config["scicat"]["api"] = api
    for dotted, value in overrides.items():
        section, key = dotted.split(".", 1)
        config.setdefault(section, {})[key] = value
    return config


class IngestorProcess:
    """scicat_ingestor.py run as a subprocess, its log in a file."""

    def __init__(self, tmp_path: Path, config: dict, *extra_args: str):
        self.config = config
        self.config_path = tmp_path / f"config-{uuid.uuid4().hex[:6]}.json"
        self.config_path.write_text(json.dumps(config))
        self.config_path.chmod(0o600)  # it holds the password: readable by others, the ingestor warns
        self.log_path = tmp_path / f"ingestor-{uuid.uuid4().hex[:6]}.log"
        self.args = ["-c", str(self.config_path), "-v", "--debug", "DEBUG", *extra_args]
        self.process: Optional[subprocess.Popen] = None

    def start(self) -> "IngestorProcess":
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(SCRIPT), *self.args], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 30, count: int = 1) -> None:
        wait_until(lambda: self.log().count(text) >= count or self._died(), timeout, f"{text!r} in the log")
        assert not self._died(), f"ingestor died:\n{self.log()[-3000:]}"

    def _died(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, as systemd stops it; returns the exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"ingestor did not stop on SIGTERM:\n{self.log()[-3000:]}") from None

    def kill(self) -> None:
        """SIGKILL: a crash, no chance to commit or clean up."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def __enter__(self) -> "IngestorProcess":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        if self.running():
            self.stop()

    def audit(self) -> list[dict]:
        path = Path(self.config["audit"]["file"])
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def spooled(self) -> list[dict]:
        path = Path(self.config["spool"]["directory"]) / "failed.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


class FileWriter:
    """Plays the file writer: run start, a real NeXus file, finished writing."""

    def __init__(self, bootstrap: str, topic: str, output_dir: Path, instrument: str = "DREAM"):
        self.bootstrap = bootstrap
        self.topic = topic
        self.output_dir = output_dir
        self.instrument = instrument
        self.run_number = 1

    def run(self, proposal: str = "123456", metadata: str = "{}", error: bool = False,
            send_run_start: bool = True, write_file: bool = True, events: int = 100,
            title: Optional[str] = None, send_finish: bool = True, plots: bool = True) -> dict:
        """One run; returns job_id, path, size, run_name, title. Without send_finish the wrdn
        waits for finish(); without plots the file has no NXdata to draw."""
        job_id = str(uuid.uuid4())
        run_number = self.run_number
        self.run_number += 1
        path = self.output_dir / f"{self.instrument.lower()}_{proposal}_{run_number:08d}.hdf"
        run_name = f"run_{run_number:08d}"
        title = title or f"test run {run_number}"
        now = time.time()
        messages = []
        if send_run_start:
            messages.append(producer.make_run_start(
                job_id=job_id, filename=str(path), run_name=run_name, instrument=self.instrument,
                proposal=proposal, title=title, start_time_ms=int(now * 1000), metadata=metadata,
            ))
        size = 0
        if write_file:
            size = producer.write_nexus_file(
                str(path), job_id=job_id, instrument=self.instrument, proposal=proposal,
                run_number=run_number, title=title, events=events, plots=plots,
            )
        if send_finish:
            messages.append(producer.make_finished_writing(
                job_id=job_id, file_name=str(path), metadata=metadata, error=error,
                message="disk full" if error else None,
            ))
        produce(self.bootstrap, self.topic, messages, key=job_id.encode())
        return {"job_id": job_id, "path": str(path), "size": size, "run_name": run_name,
                "title": title, "proposal": proposal}

    def finish(self, run: dict, metadata: str = "{}") -> None:
        """The wrdn of a run started with send_finish=False."""
        produce(self.bootstrap, self.topic, [producer.make_finished_writing(
            job_id=run["job_id"], file_name=run["path"], metadata=metadata)], key=run["job_id"].encode())

    def send(self, *payloads: bytes) -> None:
        produce(self.bootstrap, self.topic, list(payloads))
