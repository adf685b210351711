"""A lost answer never makes a second record, and faults repair themselves.

The ingestor talks to the SciCat stand-in through a real TCP proxy (tests/fault_proxy.py)
that loses, delays, trickles or garbles answers the way a gateway in front of SciCat does.
Every test ends with exactly one dataset and one origdatablock per file, an empty spool,
and the ingestor alive in its consumer group.

Each runs in both SciCat API versions (scicat.api v3 and v4) and, across them, with and without
dataset.pid_prefix: pairwise, not the full product, for the suite's time. Every fault mode runs
in both versions; a mode's dataset case pairs v3 with generated pids and v4 with pid_prefix, its
origdatablock case the other way round, so every (version, pid_prefix) pair is covered.
"""

from __future__ import annotations

import time
import uuid

import pytest

from fault_proxy import FaultProxy
from ingestor_harness import FileWriter, IngestorProcess, ingestor_config, one_dataset_each, producer, wait_until

pytestmark = pytest.mark.integration

# version -> record -> the collection its POST goes to. Login stays on v3 in both.
POSTED_TO = {"v3": {"dataset": "/api/v3/Datasets", "origdatablock": "/api/v3/OrigDatablocks"},
             "v4": {"dataset": "/api/v4/datasets", "origdatablock": "/api/v4/origdatablocks"}}
LOGIN = "/api/v3/auth/login"
PID_PREFIX = "20.500.12269"
PAIRS = [("v3", ""), ("v4", PID_PREFIX)]
CROSSED = [("v3", PID_PREFIX), ("v4", "")]


def pair_id(api, pid_prefix):
    return f"{api}-{'pid_prefix' if pid_prefix else 'generated pids'}"


def in_versions(pairs=PAIRS):
    return pytest.mark.parametrize("api, pid_prefix", pairs, ids=[pair_id(*p) for p in pairs])


# Both records in both versions, each record with its own pid_prefix pairing (see above).
each_record = pytest.mark.parametrize(
    "record, api, pid_prefix", [("dataset", *p) for p in PAIRS] + [("origdatablock", *p) for p in CROSSED],
    ids=[f"dataset-{pair_id(*p)}" for p in PAIRS] + [f"origdatablock-{pair_id(*p)}" for p in CROSSED])
# A loop that stopped polling for longer than this would be thrown out of its group.
CONSUMER = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000, "fetch.wait.max.ms": 100,
            "max.poll.interval.ms": 7000}


@pytest.fixture
def proxy(scicat):
    proxy = FaultProxy(("127.0.0.1", scicat.port))
    yield proxy
    proxy.close()


def config_through(proxy, tmp_path, kafka_bootstrap, kafka_topic, api, pid_prefix, **overrides):
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, proxy.url + "/api/v3", api,
                             **{"scicat.timeout_s": 2, "scicat.max_retries": 5, "scicat.retry_backoff_s": 0.2,
                                "kafka.consumer": dict(CONSUMER), **overrides})
    if pid_prefix:
        config["dataset"]["pid_prefix"] = pid_prefix
    return config


def assert_healthy(ingestor, scicat, runs):
    """One dataset and one file list per run, nothing spooled, alive and never out of its group."""
    wait_until(lambda: one_dataset_each(scicat, runs), 60, "one dataset and one origdatablock per run")
    assert len(scicat.datasets) == len(runs)
    assert len(scicat.origdatablocks) == len(runs)
    wait_until(lambda: len(ingestor.audit()) >= len(runs), 30, "an outcome per run")
    assert [a["outcome"] for a in ingestor.audit()] == ["ingested"] * len(runs)
    assert ingestor.spooled() == []
    assert ingestor.running()
    log = ingestor.log()
    assert "maximum poll interval" not in log.lower() and "partitions lost" not in log
    assert "partitions revoked" not in log


@each_record
@pytest.mark.parametrize("mode", ["502-after-forward", "stall-after-forward", "reset-after-forward",
                                  "body-after-forward"])
def test_a_post_whose_answer_is_lost_is_checked_not_repeated(tmp_path, data_dir, scicat, proxy, kafka_bootstrap,
                                                             kafka_topic, api, pid_prefix, record, mode):
    """SciCat carried the POST out; the ingestor never heard so (502, no answer within timeout_s,
    a reset, 201 with an empty body). It asks SciCat and finds the record instead of making another."""
    writer = FileWriter(kafka_bootstrap, kafka_topic, data_dir)
    proxy.fail(mode, "POST", POSTED_TO[api][record], stall_s=6)
    config = config_through(proxy, tmp_path, kafka_bootstrap, kafka_topic, api, pid_prefix)
    with IngestorProcess(tmp_path, config) as ingestor:
        runs = [writer.run(), writer.run()]
        assert_healthy(ingestor, scicat, runs)
        assert proxy.applied(mode) == 1
        ingestor.wait_for_log("not created again")


@each_record
@pytest.mark.parametrize("body, reason", [
    (b"not json", "with no JSON"), (b"[]", "with [] (no"), (b"{}", "with {} (no"),
    (b"<html><body><h1>201 Created</h1></body></html>", "with HTML"),
], ids=["non-JSON", "[]", "{}", "HTML"])
def test_a_201_without_the_record_is_checked_with_a_clear_reason(tmp_path, data_dir, scicat, proxy, kafka_bootstrap,
                                                               kafka_topic, api, pid_prefix, record, body, reason):
    writer = FileWriter(kafka_bootstrap, kafka_topic, data_dir)
    proxy.fail("body-after-forward", "POST", POSTED_TO[api][record], body=body)
    config = config_through(proxy, tmp_path, kafka_bootstrap, kafka_topic, api, pid_prefix)
    with IngestorProcess(tmp_path, config) as ingestor:
        run = writer.run()
        assert_healthy(ingestor, scicat, [run])
        log = ingestor.log()
        assert reason in log and "may have been created" in log
        assert "unexpected error" not in log and "Traceback" not in log


@in_versions()
def test_a_trickled_answer_is_given_up_at_the_deadline_while_the_loop_stays_in_its_group(
        tmp_path, data_dir, scicat, proxy, kafka_bootstrap, kafka_topic, api, pid_prefix):
    """One byte every 0.3 s would take minutes; timeout_s bounds the whole exchange. The deadline
    is longer than max.poll.interval.ms: only a loop polling Kafka meanwhile keeps its group."""
    writer = FileWriter(kafka_bootstrap, kafka_topic, data_dir)
    proxy.fail("trickle", "POST", POSTED_TO[api]["dataset"], trickle_s=0.3)
    config = config_through(proxy, tmp_path, kafka_bootstrap, kafka_topic, api, pid_prefix, **{"scicat.timeout_s": 9})
    with IngestorProcess(tmp_path, config) as ingestor:
        run = writer.run()
        ingestor.wait_for_log("may have been created", timeout=60)
        started = time.monotonic()
        assert_healthy(ingestor, scicat, [run])
        assert time.monotonic() - started < 30
        assert "no complete answer within 9 s" in ingestor.log()
        after = writer.run()  # and the loop goes on with the next file
        wait_until(lambda: one_dataset_each(scicat, [run, after]), 60, "the next file too")
        assert ingestor.spooled() == []


@in_versions(CROSSED)
@pytest.mark.parametrize("status", [401, 503])
def test_a_login_refused_for_a_few_seconds_is_retried(tmp_path, data_dir, scicat, proxy, kafka_bootstrap,
                                                      kafka_topic, api, pid_prefix, status):
    """At start, and when the token has expired mid-run: the login is retried, nothing spooled."""
    writer = FileWriter(kafka_bootstrap, kafka_topic, data_dir)
    proxy.fail("answer", "POST", LOGIN, times=3, status=status)
    config = config_through(proxy, tmp_path, kafka_bootstrap, kafka_topic, api, pid_prefix)
    with IngestorProcess(tmp_path, config) as ingestor:
        first = writer.run()
        wait_until(lambda: one_dataset_each(scicat, [first]), 60, "the first file")
        scicat.expire_all_tokens()
        proxy.fail("answer", "POST", LOGIN, times=3, status=status)
        second = writer.run()
        assert_healthy(ingestor, scicat, [first, second])
        assert proxy.applied("answer") == 6
        assert ingestor.log().count(f"POST /auth/login: HTTP {status}; retry") == 6


@in_versions()
def test_an_origdatablock_refused_four_times_is_retried_on_the_same_message(
        tmp_path, data_dir, scicat, proxy, kafka_bootstrap, kafka_topic, api, pid_prefix):
    writer = FileWriter(kafka_bootstrap, kafka_topic, data_dir)
    proxy.fail("answer", "POST", POSTED_TO[api]["origdatablock"], times=4, status=500)
    config = config_through(proxy, tmp_path, kafka_bootstrap, kafka_topic, api, pid_prefix)
    with IngestorProcess(tmp_path, config) as ingestor:
        run = writer.run()
        assert_healthy(ingestor, scicat, [run])
        assert proxy.applied("answer") == 4


@in_versions(CROSSED)
def test_a_dataset_whose_file_list_failed_past_the_retries_is_completed_by_replay(
        tmp_path, data_dir, scicat, proxy, kafka_bootstrap, kafka_topic, api, pid_prefix):
    """Without pid_prefix and without the job id check, only the spooled pid can tell
    --replay which dataset to complete."""
    writer = FileWriter(kafka_bootstrap, kafka_topic, data_dir)
    refusals = proxy.fail("answer", "POST", POSTED_TO[api]["origdatablock"], times=1000, status=500)
    config = config_through(proxy, tmp_path, kafka_bootstrap, kafka_topic, api, pid_prefix,
                            **{"scicat.max_retries": 2, "options.check_by_job_id": False})
    with IngestorProcess(tmp_path, config) as ingestor:
        run = writer.run()
        wait_until(ingestor.spooled, 60, "the file spooled")
        assert ingestor.running()
    [spooled] = ingestor.spooled()
    [dataset] = scicat.datasets_for_job(run["job_id"])
    assert spooled["reason"].startswith(f"dataset without file list: {dataset['pid']}")
    assert spooled["dataset_pid"] == dataset["pid"]
    assert scicat.origdatablocks == []

    refusals.times = 0  # SciCat recovers
    replay = IngestorProcess(tmp_path, config, "--replay").start()
    assert replay.process.wait(60) == 0, replay.log()[-3000:]
    assert one_dataset_each(scicat, [run])
    assert len(scicat.datasets) == 1
    assert replay.spooled() == []


@each_record
def test_ingest_file_checks_a_lost_answer_too(tmp_path, data_dir, scicat, proxy, kafka_bootstrap, kafka_topic,
                                              api, pid_prefix, record):
    files = [data_dir / f"backfill_{i}.hdf" for i in range(2)]
    for i, file in enumerate(files):
        producer.write_nexus_file(str(file), job_id=str(uuid.uuid4()), run_number=i + 1)
    proxy.fail("502-after-forward", "POST", POSTED_TO[api][record], times=2)
    config = config_through(proxy, tmp_path, kafka_bootstrap, kafka_topic, api, pid_prefix)
    backfill = IngestorProcess(tmp_path, config, "--ingest-file", str(data_dir)).start()
    assert backfill.process.wait(120) == 0, backfill.log()[-3000:]
    assert proxy.applied("502-after-forward") == 2
    assert len(scicat.datasets) == 2 and len(scicat.origdatablocks) == 2
    assert sorted(b["datasetId"] for b in scicat.origdatablocks) == sorted(scicat.datasets)
    assert backfill.log().count("not created again") == 2
    assert backfill.spooled() == []


@in_versions()
def test_a_login_refused_past_the_retries_spools_the_file_with_that_reason(
        tmp_path, data_dir, scicat, proxy, kafka_bootstrap, kafka_topic, api, pid_prefix):
    writer = FileWriter(kafka_bootstrap, kafka_topic, data_dir)
    config = config_through(proxy, tmp_path, kafka_bootstrap, kafka_topic, api, pid_prefix, **{"scicat.max_retries": 2})
    with IngestorProcess(tmp_path, config) as ingestor:
        first = writer.run()
        wait_until(lambda: one_dataset_each(scicat, [first]), 60, "the first file")
        scicat.expire_all_tokens()
        refusals = proxy.fail("answer", "POST", LOGIN, times=1000, status=401)  # the password changed
        refused = writer.run()
        wait_until(ingestor.spooled, 60, "the file spooled")
        [spooled] = ingestor.spooled()
        assert spooled["reason"].startswith("login as ingestor failed: HTTP 401")
        assert refusals.hits == 3  # the first try and two retries
        assert ingestor.running()
    refusals.times = 0
    replay = IngestorProcess(tmp_path, config, "--replay").start()
    assert replay.process.wait(60) == 0, replay.log()[-3000:]
    assert one_dataset_each(scicat, [first, refused]) and len(scicat.datasets) == 2
