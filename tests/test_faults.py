"""Nothing lost, nothing duplicated: the ingestor under crashes, outages and redelivery,
in both SciCat API versions (the `api` fixture: scicat.api v3, and v4 on a backend without v3)."""

from __future__ import annotations

import threading
import time
import urllib.parse

import pytest

from ingestor_harness import FileWriter, IngestorProcess, ingestor_config, one_dataset_each, wait_until

pytestmark = pytest.mark.integration


def test_kill_9_mid_stream_then_restart_gives_exactly_one_dataset_per_run(tmp_path, data_dir, scicat,
                                                                           kafka_bootstrap, kafka_topic, api):
    writer = FileWriter(kafka_bootstrap, kafka_topic, data_dir)
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url, api=api)
    # A slow SciCat widens the window between the two POSTs, where a crash hurts most.
    scicat.delay_s = 0.02
    runs = [writer.run(events=10) for _ in range(50)]
    first = IngestorProcess(tmp_path, config).start()
    wait_until(lambda: len(scicat.datasets) >= 15, 90, "15 datasets before the crash")
    first.kill()
    crashed_at = len(scicat.datasets)
    assert crashed_at < 50, "the crash came too late to test anything"

    with IngestorProcess(tmp_path, config) as second:
        wait_until(lambda: one_dataset_each(scicat, runs), 120, "one dataset and origdatablock per run")
        assert second.running()
    assert len(scicat.datasets) == 50
    assert second.spooled() == []


def test_a_dataset_left_without_its_file_list_by_a_crash_is_completed(tmp_path, data_dir, scicat,
                                                                     kafka_bootstrap, kafka_topic, api):
    """A crash between the dataset POST and the origdatablock POST, then the message again."""
    writer = FileWriter(kafka_bootstrap, kafka_topic, data_dir)
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url, api=api)
    with IngestorProcess(tmp_path, config):
        run = writer.run()
        wait_until(lambda: one_dataset_each(scicat, [run]), 60, "the dataset")
    [dataset] = scicat.datasets_for_job(run["job_id"])
    scicat.remove_origdatablocks(dataset["pid"])

    # A new group: reads it all again.
    replayed = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url, api=api)
    with IngestorProcess(tmp_path, replayed) as ingestor:
        wait_until(lambda: one_dataset_each(scicat, [run]), 60, "the origdatablock added")
        ingestor.wait_for_log(f"already in SciCat: job {run['job_id']}")
    assert len(scicat.datasets) == 1


def test_scicat_down_for_20_seconds_is_waited_out_without_leaving_the_group(tmp_path, data_dir, scicat,
                                                                            kafka_bootstrap, kafka_topic, api):
    writer = FileWriter(kafka_bootstrap, kafka_topic, data_dir)
    consumer = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000, "fetch.wait.max.ms": 100,
                # Would throw the ingestor out of its group if it blocked without polling.
                "max.poll.interval.ms": 8000}
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url,
                             api=api,
                             **{"scicat.max_retries": 10, "scicat.retry_backoff_s": 0.5, "kafka.consumer": consumer})
    with IngestorProcess(tmp_path, config) as ingestor:
        before = writer.run()
        wait_until(lambda: one_dataset_each(scicat, [before]), 60, "the first dataset")

        def outage():
            scicat.set_down(True)  # 503 to everything
            time.sleep(10)
            scicat.stop()  # then connections refused
            time.sleep(10)
            scicat.start()
            scicat.set_down(False)

        down = threading.Thread(target=outage)
        down.start()
        time.sleep(0.5)
        during = [writer.run() for _ in range(5)]
        down.join()
        after = writer.run()
        wait_until(lambda: one_dataset_each(scicat, [before, *during, after]), 120, "every run ingested")
        log = ingestor.log()
        assert ingestor.running()
    assert ingestor.spooled() == []
    assert "retry" in log
    assert "maximum poll interval" not in log.lower() and "could not commit" not in log


def test_a_second_consumer_group_reading_from_the_start_creates_no_duplicates(tmp_path, data_dir, scicat,
                                                                            kafka_bootstrap, kafka_topic, api):
    writer = FileWriter(kafka_bootstrap, kafka_topic, data_dir)
    runs = [writer.run() for _ in range(5)]
    with IngestorProcess(tmp_path, ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url, api=api)):
        wait_until(lambda: one_dataset_each(scicat, runs), 60, "five datasets")
    other_group = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url, api=api)
    with IngestorProcess(tmp_path, other_group) as other:
        wait_until(lambda: [a["outcome"] for a in other.audit()].count("duplicate") >= 5, 60, "five duplicates")
    assert len(scicat.datasets) == 5
    assert one_dataset_each(scicat, runs)


def test_deterministic_pids_make_redelivery_harmless(tmp_path, data_dir, scicat, kafka_bootstrap, kafka_topic, api):
    writer = FileWriter(kafka_bootstrap, kafka_topic, data_dir)
    runs = [writer.run() for _ in range(3)]
    for _ in range(2):  # two groups: every message delivered twice
        config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url, api=api)
        config["dataset"]["pid_prefix"] = "20.500.12269"
        config["options"]["check_by_job_id"] = False
        with IngestorProcess(tmp_path, config) as ingestor:
            wait_until(lambda: len(ingestor.audit()) >= 3, 60, "three outcomes")
    assert len(scicat.datasets) == 3
    assert all(pid.startswith("20.500.12269/") for pid in scicat.datasets)
    assert one_dataset_each(scicat, runs)


def test_with_deterministic_pids_a_new_file_costs_two_requests(tmp_path, data_dir, scicat, kafka_bootstrap,
                                                                kafka_topic, api):
    """No lookup before creating: SciCat's 409 tells a duplicate (above), so a new file costs
    SciCat one dataset POST, one origdatablock POST and one POST of its picture (a dataset just
    made has no attachments to look for), after the login (and the cached proposal, instrument
    and sample lookups)."""
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url, api=api)
    config["dataset"]["pid_prefix"] = "20.500.12269"
    with IngestorProcess(tmp_path, config) as ingestor:
        FileWriter(kafka_bootstrap, kafka_topic, data_dir).run()
        wait_until(lambda: ingestor.audit(), 60, "the outcome")
    assert [a["outcome"] for a in ingestor.audit()] == ["ingested"]
    datasets = [(method, path) for method, path, _ in scicat.requests_log
                if not path.startswith(("/api/v3/Proposals", "/api/v3/Instruments", "/api/v3/Samples"))]
    [pid] = scicat.datasets
    picture = {"v3": "/api/v3/Datasets/" + urllib.parse.quote(pid, safe="") + "/attachments",
               "v4": "/api/v4/attachments"}[api]
    collections = {"v3": ["/api/v3/Datasets", "/api/v3/OrigDatablocks"],
                   "v4": ["/api/v4/datasets", "/api/v4/origdatablocks"]}[api]
    assert datasets == [("POST", "/api/v3/auth/login"), *(("POST", path) for path in [*collections, picture])]
