"""A run start survives a restart until its finish comes: it is kept in the run start store
(options.run_start_state_file), and the committed offset is never held back for it, so a
restart reads nothing again that it handled already."""

from __future__ import annotations

import json
import pytest
from confluent_kafka import Consumer, TopicPartition

from ingestor_harness import FileWriter, IngestorProcess, ingestor_config, one_dataset_each, wait_until

import producer  # noqa: E402  (examples/producer, on the path ingestor_harness sets)

pytestmark = pytest.mark.integration

# What the experiment control system puts in the run start; the wrdn below carries none of it.
RUN_METADATA = {"proposal_id": "777777", "sample_id": "S-7", "principal_investigator": "Lise Meitner"}


@pytest.fixture
def writer(tmp_path, kafka_bootstrap, kafka_topic):
    data = tmp_path / "data"
    data.mkdir()
    return FileWriter(kafka_bootstrap, kafka_topic, data)


def committed_offset(bootstrap: str, config: dict) -> int:
    """The offset the ingestor's group has committed on the topic's one partition; < 0 for none."""
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": config["kafka"]["group_id"]})
    try:
        [tp] = reader.committed([TopicPartition(config["kafka"]["topics"][0], 0)], timeout=10)
        return tp.offset
    finally:
        reader.close()


def assert_built_with_its_run_start(dataset: dict, run: dict) -> None:
    science = dataset["scientificMetadata"]
    assert dataset["datasetName"] == run["run_name"]
    assert science["run_name"]["value"] == run["run_name"]
    assert science["run_start_time"]["value"]
    assert dataset["proposalId"] == RUN_METADATA["proposal_id"]
    assert dataset["principalInvestigator"] == RUN_METADATA["principal_investigator"]
    assert science["sample_id"]["value"] == RUN_METADATA["sample_id"]


def started_then_finished_after(stop, tmp_path, writer, scicat, kafka_bootstrap, kafka_topic) -> None:
    """The run start reaches one ingestor, `stop` ends it, its wrdn reaches the next one."""
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url)
    first = IngestorProcess(tmp_path, config).start()
    run = writer.run(metadata=json.dumps(RUN_METADATA), send_finish=False)
    first.wait_for_log(f"run start: job {run['job_id']}")
    # The handled run start is committed within a second, past itself: the store keeps it.
    wait_until(lambda: committed_offset(kafka_bootstrap, config) == 1, 30, "the run start's offset committed")
    stop(first)
    writer.finish(run)
    with IngestorProcess(tmp_path, config) as second:
        wait_until(lambda: one_dataset_each(scicat, [run]), 60, "the dataset")
        log = second.log()
        assert "without its run start" not in log
        assert "read back from" in log and f"run start: job {run['job_id']}" not in log  # not read from Kafka again
    [dataset] = scicat.datasets_for_job(run["job_id"])
    assert_built_with_its_run_start(dataset, run)
    assert len(scicat.datasets) == 1
    assert [a["outcome"] for a in second.audit()] == ["ingested"]


def test_a_run_start_survives_a_stop_before_its_finish(tmp_path, writer, scicat, kafka_bootstrap, kafka_topic):
    def sigterm(ingestor):
        assert ingestor.stop() == 0

    started_then_finished_after(sigterm, tmp_path, writer, scicat, kafka_bootstrap, kafka_topic)


def test_a_run_start_survives_a_kill_9_before_its_finish(tmp_path, writer, scicat, kafka_bootstrap, kafka_topic):
    started_then_finished_after(IngestorProcess.kill, tmp_path, writer, scicat, kafka_bootstrap, kafka_topic)


def test_a_run_start_survives_a_stop_while_its_wrdn_waits_for_the_file(tmp_path, writer, scicat, kafka_bootstrap,
                                                                       kafka_topic):
    """The wrdn left uncommitted by a stop is read again, and so is its run start before it."""
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url, **{"files.wait_s": 60})
    first = IngestorProcess(tmp_path, config).start()
    run = writer.run(metadata=json.dumps(RUN_METADATA), send_finish=False, write_file=False)
    writer.finish(run)
    first.wait_for_log("waiting for it")
    assert first.stop() == 0
    assert "stopped while waiting" in first.log()
    producer.write_nexus_file(run["path"], job_id=run["job_id"], proposal=run["proposal"], title=run["title"],
                              run_number=int(run["run_name"].removeprefix("run_")), events=10)
    with IngestorProcess(tmp_path, config):
        wait_until(lambda: one_dataset_each(scicat, [run]), 60, "the dataset")
    [dataset] = scicat.datasets_for_job(run["job_id"])
    assert_built_with_its_run_start(dataset, run)


@pytest.mark.parametrize("pid_prefix", ["", "20.500.12269"])
def test_interleaved_runs_over_a_restart_each_have_one_dataset_and_none_is_handled_again(
        tmp_path, writer, scicat, kafka_bootstrap, kafka_topic, pid_prefix):
    """A starts, B starts and finishes, restart, A finishes: A's open run start does not make
    the restart read B's wrdn again, and A's dataset has its run start's metadata."""
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url, **{"dataset.pid_prefix": pid_prefix})
    with IngestorProcess(tmp_path, config) as first:
        a = writer.run(metadata=json.dumps(RUN_METADATA), send_finish=False)
        b = writer.run()
        wait_until(lambda: one_dataset_each(scicat, [b]), 60, "B's dataset")
    assert first.process.returncode == 0
    writer.finish(a)
    with IngestorProcess(tmp_path, config) as second:
        wait_until(lambda: one_dataset_each(scicat, [a]), 60, "A's dataset")
        second.wait_for_log("files: ingested 1, duplicate 0, skipped 0, failed 0")  # a statistics line after A
    # One audit trail for both lives: B, then A; B not again.
    assert [(x["job_id"], x["outcome"]) for x in second.audit()] == [(b["job_id"], "ingested"), (a["job_id"], "ingested")]
    assert one_dataset_each(scicat, [a, b]) and len(scicat.datasets) == 2
    [dataset] = scicat.datasets_for_job(a["job_id"])
    assert_built_with_its_run_start(dataset, a)
    if pid_prefix:
        assert all(pid.startswith(f"{pid_prefix}/") for pid in scicat.datasets)


def test_a_run_start_older_than_the_age_bound_is_forgotten_also_across_a_restart(
        tmp_path, writer, scicat, kafka_bootstrap, kafka_topic):
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url,
                             **{"options.run_start_max_age_s": 3})
    with IngestorProcess(tmp_path, config) as first:
        abandoned = writer.run(metadata=json.dumps(RUN_METADATA), send_finish=False)  # a writer that died
        between = writer.run()
        wait_until(lambda: one_dataset_each(scicat, [between]), 60, "the dataset of the run in between")
        first.wait_for_log(f"forgetting run start of job {abandoned['job_id']}")
    with IngestorProcess(tmp_path, config) as second:
        second.wait_for_log("run starts waiting for their wrdn, read back from")
        writer.finish(abandoned)  # came after all, too late for its run start
        wait_until(lambda: one_dataset_each(scicat, [abandoned]), 60, "the late run's dataset")
        log = second.log()
    assert "read back from" in log and log.split("read back from", 1)[1].split("\n", 1)[0].endswith(": 0")
    assert f"finished writing job {abandoned['job_id']} without its run start" in log
    assert [(x["job_id"], x["outcome"]) for x in second.audit()] == [
        (between["job_id"], "ingested"), (abandoned["job_id"], "ingested")]
    assert len(scicat.datasets) == 2


def test_a_second_instance_on_the_same_run_start_store_stops_at_start(tmp_path, scicat, kafka_bootstrap, kafka_topic):
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url)
    with IngestorProcess(tmp_path, config) as first:
        first.wait_for_log("read back from")
        second = IngestorProcess(tmp_path, config).start()
        assert second.process.wait(60) == 2
        assert "cannot start: options.run_start_state_file" in second.log()
        assert "in use by another running instance" in second.log()
        assert first.running()
