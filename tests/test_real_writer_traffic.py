"""The real file writer's traffic, as examples/producer sends it by default: every message
unkeyed, the pl72 to the job pool and echoed on the instrument's control topic, answ, x5f2,
6s4t, answ and wrdn there, runs overlapping. And the watchdog of the writer's jobs."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from ingestor_harness import IngestorProcess, ingestor_config, wait_until
from kafka_broker import create_topic, free_port
from test_operations import metrics
from test_scale_out import member  # one instance of the group: its own audit, spool, run start store

pytestmark = pytest.mark.integration

PRODUCER = Path(__file__).resolve().parents[1] / "examples" / "producer" / "producer.py"


class Deployment:
    """A job pool, a status topic and one instrument's control topic, and the producer writing to them."""

    def __init__(self, bootstrap: str, data: Path, control_partitions: int = 1):
        self.bootstrap, self.data = bootstrap, data
        suffix = uuid.uuid4().hex[:8]
        self.pool, self.status, self.control = (f"{name}-{suffix}" for name in ("pool", "status", "control"))
        create_topic(bootstrap, self.pool)
        create_topic(bootstrap, self.status)
        create_topic(bootstrap, self.control, partitions=control_partitions)
        self.run_number = 1

    @property
    def topics(self) -> list[str]:
        return [self.pool, self.status, self.control]

    def produce(self, *args: str) -> list[dict]:
        """Runs of the producer in its realistic mode: job_id, path, run_name and what became of each."""
        result = subprocess.run(
            [sys.executable, str(PRODUCER), "--broker", self.bootstrap, "--pool-topic", self.pool,
             "--status-topic", self.status, "--control-topic", self.control, "--output-dir", str(self.data),
             "--events", "10", "--run-start", str(self.run_number), *args],
            capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        runs = []
        *lines, summary = result.stdout.strip().splitlines()
        assert summary.startswith("producer: "), summary
        for line in lines:
            job_id, path, what = line.split("  ")
            number = int(Path(path).stem.rsplit("_", 1)[1])
            runs.append({"job_id": job_id, "path": path, "run_name": f"run_{number:08d}",
                         "fate": "finished" if what.endswith("bytes") else what})
            self.run_number = max(self.run_number, number + 1)
        return runs


def finished_runs(runs: list[dict]) -> list[dict]:
    return [run for run in runs if run["fate"] == "finished"]


def config_for(tmp_path: Path, deployment: Deployment, scicat, name: str = "a", **overrides) -> dict:
    config = ingestor_config(tmp_path, deployment.bootstrap, deployment.pool, scicat.url, **overrides)
    config["kafka"]["topics"] = deployment.topics
    return config


def owned(ingestor: IngestorProcess) -> set[str]:
    """The topic partitions the instance holds now, as its log tells."""
    held: set[str] = set()
    for event, names in re.findall(r"partitions (assigned|revoked|lost): (.*)", ingestor.log()):
        partitions = set(re.findall(r"\S+\[\d+\]", names))
        held = held | partitions if event == "assigned" else held - partitions
    return held


def handled(*ingestors: IngestorProcess) -> Counter:
    """How often each job's finished file was handled, over every instance's audit trail."""
    return Counter(a["job_id"] for i in ingestors for a in i.audit() if not a["outcome"].startswith("job_"))


def one_dataset_each(scicat, runs: list[dict]) -> bool:
    return all(len(scicat.datasets_for_job(run["job_id"])) == 1 for run in runs)


def test_two_ingestors_on_a_pool_and_a_control_topic_of_4_partitions_give_each_of_30_runs_one_dataset(
        tmp_path, scicat, kafka_bootstrap):
    deployment = Deployment(kafka_bootstrap, tmp_path / "data", control_partitions=4)
    config = config_for(tmp_path, deployment, scicat)
    a, b = member(tmp_path, config, "a"), member(tmp_path, config, "b")
    with a, b:
        wait_until(lambda: owned(a) and owned(b) and len(owned(a) | owned(b)) == 6, 60,
                   "the pool, status and 4 control partitions split between the two")
        runs = deployment.produce("--count", "30", "--overlap", "6")
        wait_until(lambda: one_dataset_each(scicat, runs), 120, "one dataset per run", interval=0.5)
        wait_until(lambda: sum(handled(a, b).values()) == 30, 30, "30 outcomes")
        # A clean hand-over: b stops, a takes its partitions, and re-handles nothing b handled.
        assert b.stop() == 0
        wait_until(lambda: len(owned(a)) == 6, 60, "a holding every partition")
        more = deployment.produce("--count", "10", "--overlap", "3")
        wait_until(lambda: one_dataset_each(scicat, more), 120, "one dataset per later run", interval=0.5)
        wait_until(lambda: sum(handled(a, b).values()) == 40, 30, "40 outcomes")
        assert a.running()
    runs += more
    assert len(scicat.datasets) == 40
    assert handled(a, b) == Counter(run["job_id"] for run in runs)  # each file handled once, by one of them
    assert {x["outcome"] for i in (a, b) for x in i.audit()} == {"ingested"}
    assert a.spooled() == [] and b.spooled() == []
    # Built with the run start's information wherever the instance that had the wrdn saw the run start.
    by_instance = {x["job_id"]: i for i in (a, b) for x in i.audit()}
    with_run_start = 0
    for run in runs:
        [dataset] = scicat.datasets_for_job(run["job_id"])
        if f"run start: job {run['job_id']}" in by_instance[run["job_id"]].log():
            assert dataset["scientificMetadata"]["run_name"]["value"] == run["run_name"]
            with_run_start += 1
    assert with_run_start >= 10  # the later ten at least: a alone held every partition


def test_a_run_start_that_never_finishes_makes_a_restart_handle_no_file_again(tmp_path, scicat, kafka_bootstrap):
    """One run start stranded (its writer died), then 40 runs, restart: 0 files handled again."""
    deployment = Deployment(kafka_bootstrap, tmp_path / "data")
    config = config_for(tmp_path, deployment, scicat)
    with IngestorProcess(tmp_path, config) as first:
        [stranded] = deployment.produce("--count", "0", "--abandoned", "1")
        first.wait_for_log(f"run start: job {stranded['job_id']}")
        runs = deployment.produce("--count", "40", "--overlap", "4")
        wait_until(lambda: len(first.audit()) == 40, 120, "40 outcomes", interval=0.5)
    assert first.process.returncode == 0
    with IngestorProcess(tmp_path, config) as second:
        later = deployment.produce("--count", "1")
        wait_until(lambda: len(second.audit()) == 41, 60, "the later run's outcome")
        log = second.log()
    again = sum(handled(second).values()) - 41
    assert again == 0, f"{again} files handled again after the restart"
    assert handled(second) == Counter(run["job_id"] for run in runs + later)
    assert re.search(r"run starts waiting for their wrdn, read back from \S+: 1\n", log)  # the stranded one
    assert len(scicat.datasets) == 41 and one_dataset_each(scicat, runs + later)


def reset_group_offsets(bootstrap: str, config: dict, topics: list[str]) -> None:
    """What an operator's kafka-consumer-groups --reset-offsets --to-earliest does: every message comes again."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": config["kafka"]["group_id"], "log_level": 0})
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, 0) for topic in topics], asynchronous=False)
    finally:
        consumer.close()


def test_a_failed_file_whose_message_comes_again_is_spooled_once(tmp_path, scicat, kafka_bootstrap):
    deployment = Deployment(kafka_bootstrap, tmp_path / "data")
    config = config_for(tmp_path, deployment, scicat)
    with IngestorProcess(tmp_path, config) as first:
        [run] = deployment.produce("--count", "1", "--error")
        wait_until(lambda: first.spooled(), 60, "the failure spooled")
    reset_group_offsets(kafka_bootstrap, config, deployment.topics)
    with IngestorProcess(tmp_path, config) as second:
        wait_until(lambda: len(second.audit()) == 2, 60, "the failure handled a second time")
        second.wait_for_log("in the spool already (its message came again)")
    assert [(x["job_id"], x["outcome"]) for x in second.audit()] == [(run["job_id"], "skipped")] * 2
    [record] = second.spooled()
    assert record["finished"]["job_id"] == run["job_id"]


def test_the_watchdog_reports_a_refused_start_and_a_silent_job_once_each(tmp_path, scicat, kafka_bootstrap):
    deployment = Deployment(kafka_bootstrap, tmp_path / "data")
    port = free_port()
    config = config_for(tmp_path, deployment, scicat, **{"options.job_silence_s": 3, "health.port": port})
    with IngestorProcess(tmp_path, config) as ingestor:
        runs = deployment.produce("--count", "1", "--failed-starts", "1", "--abandoned", "1")
        fate = {run["fate"]: run for run in runs}
        wait_until(lambda: one_dataset_each(scicat, finished_runs(runs)), 60, "the finished run's dataset")
        ingestor.wait_for_log(f"file writer job {fate['abandoned']['job_id']}", timeout=60)
        ingestor.wait_for_log(f"file writer job {fate['failed to start']['job_id']}", timeout=60)
        # Twice the silence later, and a statistics line after that: nothing said twice.
        wait_until(lambda: ingestor.log().count("statistics:") >= 4, 60, "a few statistics lines")
        seen = metrics(port)
        log = ingestor.log()
    for run in runs:
        assert log.count(f"file writer job {run['job_id']}") == (0 if run["fate"] == "finished" else 1)
    assert re.search(rf"WARNING.*file writer job {fate['abandoned']['job_id']} \(.*\) silent: no heartbeat", log)
    assert re.search(rf"WARNING.*file writer job {fate['failed to start']['job_id']} .* failed to start: "
                     "the file writer did not start the job: cannot open the file", log)
    watchdog = [(x["job_id"], x["outcome"]) for x in ingestor.audit() if x["outcome"].startswith("job_")]
    assert sorted(watchdog) == sorted([(fate["abandoned"]["job_id"], "job_silent"),
                                       (fate["failed to start"]["job_id"], "job_failed_to_start")])
    [silent] = [x for x in ingestor.audit() if x["outcome"] == "job_silent"]
    assert silent["file"] == fate["abandoned"]["path"]

    def jobs(event: str) -> float:
        return seen[("scicat_ingestor_writer_jobs_total", (("event", event),))]

    assert (jobs("started"), jobs("finished"), jobs("failed_to_start"), jobs("silent")) == (3, 1, 1, 1)
    assert "writer jobs: started 3, finished 1, failed to start 1, silent 1" in log
