"""The ingestor as a user runs it: a subprocess, a real Kafka broker, the SciCat stand-in."""

from __future__ import annotations

import json
import os

import pytest

from ingestor_harness import FileWriter, IngestorProcess, ingestor_config, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def setup(tmp_path, kafka_bootstrap, kafka_topic, scicat, api):
    """A file writer, and a config for an ingestor, on this test's own topic; each test using it
    runs in both SciCat API versions (the `api` fixture)."""
    data = tmp_path / "data"
    data.mkdir()
    writer = FileWriter(kafka_bootstrap, kafka_topic, data)
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url, api=api)
    return writer, config


def datasets_of(scicat, job_id):
    return scicat.datasets_for_job(job_id)


def blocks_of(scicat, pid):
    return [b for b in scicat.origdatablocks if b["datasetId"] == pid]


def test_a_finished_file_becomes_a_dataset_with_its_file_list(tmp_path, scicat, setup):
    writer, config = setup
    with IngestorProcess(tmp_path, config) as ingestor:
        run = writer.run(proposal="654321", metadata='{"sample_id": "S-1", "temperature": {"value": 4.2, "unit": "K"}}')
        wait_until(lambda: datasets_of(scicat, run["job_id"]), 60, "the dataset")
        ingestor.wait_for_log(f"ingested job {run['job_id']}")
        assert ingestor.running()

    [dataset] = datasets_of(scicat, run["job_id"])
    assert dataset["type"] == "raw"
    assert dataset["proposalId"] == "654321"
    assert dataset["datasetName"] == run["run_name"]
    assert dataset["description"] == run["title"]
    assert dataset["sourceFolder"] == os.path.dirname(run["path"])
    assert dataset["ownerGroup"] == "ess" and dataset["accessGroups"] == ["dream"]
    assert dataset["creationLocation"] == "/ESS/DREAM"
    assert dataset["creationTime"].endswith("Z")
    science = dataset["scientificMetadata"]
    assert science["job_id"]["value"] == run["job_id"]
    assert science["run_name"]["value"] == run["run_name"]
    assert science["temperature"]["value"] == 4.2 and science["temperature"]["unit"] == "K"
    assert science["sample_id"]["value"] == "S-1"
    assert science["file_writer_service_id"]["value"].startswith("kafka-to-nexus:")

    [block] = blocks_of(scicat, dataset["pid"])
    [entry] = block["dataFileList"]
    assert entry["path"] == os.path.basename(run["path"])
    assert entry["size"] == os.path.getsize(run["path"]) == run["size"]
    # SciCat's own sums, recomputed from the origdatablock.
    assert scicat.datasets[dataset["pid"]]["size"] == run["size"]
    assert scicat.datasets[dataset["pid"]]["numberOfFiles"] == 1

    [audit] = ingestor.audit()
    assert audit["outcome"] == "ingested" and audit["pid"] == dataset["pid"] and audit["job_id"] == run["job_id"]
    # Where the time went, stage by stage.
    assert set(audit["durations_s"]) == {"decode_s", "metadata_s", "checksum_s", "thumbnail_s", "scicat_s"}


def test_sigterm_stops_cleanly_and_the_offset_is_committed(tmp_path, scicat, setup):
    writer, config = setup
    ingestor = IngestorProcess(tmp_path, config).start()
    run = writer.run()
    wait_until(lambda: datasets_of(scicat, run["job_id"]), 60, "the dataset")
    assert ingestor.stop() == 0
    assert "consumer closed" in ingestor.log()

    # The same group starts again: the committed messages are not read twice.
    again = IngestorProcess(tmp_path, config).start()
    second = writer.run()
    wait_until(lambda: datasets_of(scicat, second["job_id"]), 60, "the second dataset")
    assert again.stop() == 0
    assert run["job_id"] not in again.log()
    assert len(datasets_of(scicat, run["job_id"])) == 1


def test_a_flood_of_heartbeats_is_passed_over_and_committed_with_nothing_after_it(tmp_path, scicat, setup,
                                                                                   kafka_bootstrap, kafka_topic):
    """Heartbeats are committed in batches, not one by one; still the flood's last one is
    committed soon, though no message follows, and a restart reads none of them again."""
    from confluent_kafka import Consumer, TopicPartition
    from streaming_data_types.status_x5f2 import serialise_x5f2

    writer, config = setup
    heartbeat = serialise_x5f2("kafka-to-nexus", "6.0.0", "fw-1", "host", 1, 2000, "{}")
    writer.send(*[heartbeat] * 5000)
    group = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": config["kafka"]["group_id"]})
    try:
        with IngestorProcess(tmp_path, config) as ingestor:
            wait_until(lambda: group.committed([TopicPartition(kafka_topic, 0)], timeout=10)[0].offset == 5000,
                       60, "the last heartbeat's offset committed")
            assert ingestor.running()
    finally:
        group.close()
    with IngestorProcess(tmp_path, config) as again:
        run = writer.run()
        wait_until(lambda: datasets_of(scicat, run["job_id"]), 60, "the dataset after the flood")
        again.wait_for_log("statistics:")
        assert "x5f2" not in again.log()


def test_noise_and_garbage_are_passed_over_and_the_loop_goes_on(tmp_path, scicat, setup):
    import producer

    writer, config = setup
    with IngestorProcess(tmp_path, config) as ingestor:
        writer.send(b"", b"\x00\x01", b"garbage that is no flatbuffer", b"\x00\x00\x00\x00zzzz and more",
                    *producer.make_noise(job_id="noise-job"))
        run = writer.run()
        wait_until(lambda: datasets_of(scicat, run["job_id"]), 60, "the dataset after the noise")
        log = ingestor.log()
        assert ingestor.running()
    assert "undecodable message" in log and "unknown schema id 'zzzz'" in log
    assert "passing over a x5f2 message" in log
    assert len(scicat.datasets) == 1


def test_a_file_the_writer_reports_broken_is_not_ingested_but_spooled(tmp_path, scicat, setup):
    writer, config = setup
    with IngestorProcess(tmp_path, config) as ingestor:
        broken = writer.run(error=True)
        good = writer.run()
        wait_until(lambda: datasets_of(scicat, good["job_id"]), 60, "the good dataset")
        assert ingestor.running()
    assert datasets_of(scicat, broken["job_id"]) == []
    [record] = ingestor.spooled()
    assert record["finished"]["job_id"] == broken["job_id"]
    assert "disk full" in record["reason"]
    assert [a["outcome"] for a in ingestor.audit()] == ["skipped", "ingested"]


def test_a_missing_file_is_waited_for_then_recorded_as_failed(tmp_path, scicat, setup):
    writer, config = setup
    with IngestorProcess(tmp_path, config) as ingestor:
        lost = writer.run(write_file=False)
        wait_until(ingestor.spooled, 60, "the spool record")
        assert ingestor.running()
    [record] = ingestor.spooled()
    assert "no such file" in record["reason"] and "waited" in record["reason"]
    assert record["finished"]["job_id"] == lost["job_id"]
    assert scicat.datasets == {}


def test_a_file_outside_the_allowed_roots_is_refused(tmp_path, scicat, kafka_bootstrap, kafka_topic):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    writer = FileWriter(kafka_bootstrap, kafka_topic, outside)
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url,
                             **{"files.allowed_roots": [str(tmp_path / "data")]})
    with IngestorProcess(tmp_path, config) as ingestor:
        writer.run()
        wait_until(ingestor.spooled, 60, "the spool record")
    assert "outside the allowed roots" in ingestor.spooled()[0]["reason"]
    assert scicat.datasets == {}


def test_the_writers_path_is_mapped_to_this_hosts_mount(tmp_path, scicat, kafka_bootstrap, kafka_topic):
    """The writer names /writer/out/...; this host sees the same file under tmp/data."""
    data = tmp_path / "data"
    data.mkdir()
    writer = FileWriter(kafka_bootstrap, kafka_topic, data)
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url,
                             **{"files.path_map": {"/writer/out": str(data)}})
    run = writer.run()
    # Re-announce the same file under the writer's own mount point.
    import producer

    writers_name = "/writer/out/" + os.path.basename(run["path"])
    writer.send(producer.make_finished_writing(job_id="mapped-job", file_name=writers_name))
    with IngestorProcess(tmp_path, config):
        wait_until(lambda: datasets_of(scicat, "mapped-job"), 60, "the mapped dataset")
    assert datasets_of(scicat, "mapped-job")[0]["sourceFolder"] == str(data)


def test_an_expired_token_is_renewed_by_logging_in_again(tmp_path, scicat, setup):
    writer, config = setup
    with IngestorProcess(tmp_path, config) as ingestor:
        first = writer.run()
        wait_until(lambda: datasets_of(scicat, first["job_id"]), 60, "the first dataset")
        logins = scicat.logins
        scicat.expire_all_tokens()
        second = writer.run()
        wait_until(lambda: datasets_of(scicat, second["job_id"]), 60, "the dataset after expiry")
        assert scicat.logins == logins + 1
        assert "logging in again" in ingestor.log()


def test_a_refused_dataset_is_spooled_with_scicats_answer_and_replay_ingests_it(tmp_path, scicat, setup):
    writer, config = setup
    scicat.reject_dataset_if(lambda doc: doc.get("proposalId") == "999999")
    with IngestorProcess(tmp_path, config) as ingestor:
        refused = writer.run(proposal="999999")
        accepted = writer.run()
        wait_until(lambda: datasets_of(scicat, accepted["job_id"]), 60, "the accepted dataset")
        wait_until(ingestor.spooled, 30, "the spool record")
    [record] = ingestor.spooled()
    assert record["finished"]["job_id"] == refused["job_id"]
    assert "HTTP 400" in record["reason"]

    scicat.reject_dataset_if(None)
    replay = IngestorProcess(tmp_path, config, "--replay")
    replay.start()
    assert replay.process.wait(60) == 0, replay.log()
    assert len(datasets_of(scicat, refused["job_id"])) == 1
    assert replay.spooled() == []


def test_dry_run_writes_nothing_and_logs_what_it_would_create(tmp_path, scicat, setup, api):
    writer, config = setup
    with IngestorProcess(tmp_path, config, "--dry-run") as ingestor:
        run = writer.run()
        ingestor.wait_for_log(f"ingested job {run['job_id']}", timeout=60)
        assert "would create dataset" in ingestor.log() and "would create origdatablock" in ingestor.log()
    [shown] = [json.loads(line.split("would create dataset ", 1)[1]) for line in ingestor.log().splitlines()
               if "would create dataset " in line]
    # As the configured version would be sent it: v4's lists, or v3's single names.
    assert ("principalInvestigators" in shown, "principalInvestigator" in shown) == (api == "v4", api == "v3")
    assert scicat.datasets == {} and scicat.logins == 0 and scicat.requests_log == []


def test_the_password_never_appears_in_log_audit_or_spool(tmp_path, scicat, setup):
    writer, config = setup
    with IngestorProcess(tmp_path, config) as ingestor:
        writer.run(error=True)
        run = writer.run()
        wait_until(lambda: datasets_of(scicat, run["job_id"]), 60, "the dataset")
        ingestor.wait_for_log("statistics:")
    tokens = scicat.issued_tokens()
    assert tokens
    for text in (ingestor.log(), str(ingestor.audit()), str(ingestor.spooled())):
        assert "secret" not in text
        for token in tokens:
            assert token not in text
