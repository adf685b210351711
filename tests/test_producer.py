"""examples/producer: the file-writer stand-in behaves like the ESS file writer."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import h5py
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from streaming_data_types import DESERIALISERS
from streaming_data_types.action_response_answ import ActionOutcome
from streaming_data_types.utils import get_schema

ROOT = Path(__file__).resolve().parents[1]
PRODUCER = ROOT / "examples" / "producer" / "producer.py"
sys.path.insert(0, str(PRODUCER.parent))
sys.path.insert(0, str(ROOT))
import producer  # noqa: E402
import scicat_ingestor as si  # noqa: E402


def read_topic(bootstrap: str, topic: str, at_least: int, timeout: float = 20) -> list:
    """Every message of the topic's one partition, from the start."""
    return read_topics(bootstrap, [topic], at_least, timeout)


def read_topics(bootstrap: str, topics: list[str], at_least: int, timeout: float = 20) -> list:
    """Every message of the topics' first partitions, from the start, each topic in its order."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False, "log_level": 0})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING) for topic in topics])
    messages, deadline = [], time.monotonic() + timeout
    while len(messages) < at_least and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            messages.append(msg)
    consumer.close()
    return messages


def decoded(msg):
    try:
        schema = get_schema(msg.value())
        return schema, DESERIALISERS[schema](msg.value())
    except Exception:
        return "junk", None


def run_producer(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PRODUCER), *args], capture_output=True, text=True, timeout=timeout)


def test_the_file_has_the_ess_layout(tmp_path):
    path = tmp_path / "dream_123456_00000007.hdf"
    size = producer.write_nexus_file(str(path), job_id="job-7", instrument="DREAM", proposal="123456",
                                     run_number=7, title="my run", events=2500)
    assert size == path.stat().st_size > 0
    assert not list(tmp_path.glob(".*writing"))  # written aside, then renamed into place
    with h5py.File(path, "r") as f:
        entry = f["entry"]
        assert entry.attrs["NX_class"] == "NXentry"
        assert entry["experiment_identifier"][()] == b"123456"  # strings as bytes, like the real files
        assert entry["entry_identifier_uuid"][()] == b"job-7"
        assert entry["entry_identifier"][()] == b"7"
        assert entry["instrument"].attrs["NX_class"] == "NXinstrument"
        assert entry["instrument/name"][()] == b"DREAM"
        assert entry["sample"].attrs["NX_class"] == "NXsample"
        users = [g for g in entry.values() if isinstance(g, h5py.Group) and g.attrs.get("NX_class") == "NXuser"]
        assert len(users) == 2 and all("email" in u and "facility_user_id" in u for u in users)
        events = entry["instrument/detector/events"]
        assert events.attrs["NX_class"] == "NXevent_data"
        assert events["event_id"].shape == (2500,) and events["event_time_offset"].attrs["units"] == "ns"
        log = entry["instrument/sample_temperature"]
        assert log.attrs["NX_class"] == "NXlog" and log["value"].attrs["units"] == "K"
        assert entry["end_time"][()].decode().endswith("Z")


def test_the_ingestor_reads_back_what_the_producer_wrote(tmp_path):
    path = tmp_path / "f.hdf"
    producer.write_nexus_file(str(path), job_id="job-1", proposal="654321", title="round trip")
    metadata = si.read_nexus_metadata(str(path))
    assert metadata.text("experiment_identifier") == "654321"
    assert metadata.text("title") == "round trip"
    assert metadata.users[0].email == "ada.lovelace@example.org"


@pytest.mark.integration
def test_keyed_runs_are_announced_on_one_topic_keyed_by_job_id(tmp_path, kafka_bootstrap, kafka_topic):
    result = run_producer("--broker", kafka_bootstrap, "--keyed", "--topic", kafka_topic, "--count", "3", "--noise",
                          "--output-dir", str(tmp_path), "--metadata", '{"proposal_id": "1"}')
    assert result.returncode == 0, result.stderr
    *lines, summary = result.stdout.strip().splitlines()
    assert len(lines) == 3 and all(line.endswith("bytes") for line in lines)
    assert summary == f"producer: 3 runs sent to {kafka_topic} at {kafka_bootstrap}, their files in {tmp_path}"

    messages = [(msg.key(), *decoded(msg)) for msg in read_topic(kafka_bootstrap, kafka_topic, at_least=21)]
    starts = [(k, m) for k, s, m in messages if s == "pl72"]
    finishes = [(k, m) for k, s, m in messages if s == "wrdn"]
    assert len(starts) == 3 and len(finishes) == 3
    assert [m.job_id for _, m in starts] == [m.job_id for _, m in finishes]
    for key, start in starts:
        assert key == start.job_id.encode()  # keyed by job id: same partition, in order
        assert start.filename.startswith(str(tmp_path)) and start.metadata == '{"proposal_id": "1"}'
    for key, finish in finishes:
        assert key == finish.job_id.encode()
        assert Path(finish.file_name).exists() and not finish.error_encountered
        assert finish.metadata == '{"proposal_id": "1"}'  # copied from the run start
        assert finish.service_id.startswith("kafka-to-nexus:") and "-pid:" in finish.service_id
    schemas = {s for _, s, _ in messages}
    assert {"answ", "x5f2", "6s4t", "junk"} <= schemas


@pytest.mark.integration
def test_by_default_runs_go_as_the_real_writer_sends_them(tmp_path, kafka_bootstrap):
    """Unkeyed; the pl72 to the pool and echoed on the control topic, where the writer's integration test
    asserts pl72, answ, x5f2 x >= 6, 6s4t, answ, wrdn; a refused start answered on the status topic."""
    from kafka_broker import create_topic

    pool, status, control = (f"{name}-{uuid.uuid4().hex[:8]}" for name in ("pool", "status", "control"))
    for topic in (pool, status, control):
        create_topic(kafka_bootstrap, topic)
    result = run_producer("--broker", kafka_bootstrap, "--pool-topic", pool, "--status-topic", status,
                          "--control-topic", control, "--count", "2", "--failed-starts", "1", "--abandoned", "1",
                          "--overlap", "3", "--output-dir", str(tmp_path), "--metadata", '{"proposal_id": "1"}')
    assert result.returncode == 0, result.stderr
    *lines, summary = result.stdout.strip().splitlines()
    fates = Counter(line.split("  ")[2].split()[-1] for line in lines)
    assert fates == {"bytes": 2, "start": 1, "abandoned": 1}
    assert summary == f"producer: 2 runs sent to {pool} and the control topics at {kafka_bootstrap}, " \
                      f"their files in {tmp_path.resolve()}"
    # 4 pl72 to the pool, 1 refused start; 3 echoes, 3 answ, 2x8 + 2 x5f2, 2x(6s4t, answ, wrdn)
    messages = read_topics(kafka_bootstrap, [pool, status, control], at_least=4 + 1 + 3 + 3 + 18 + 6)
    assert all(msg.key() is None for msg in messages)
    pooled = [decoded(m) for m in messages if m.topic() == pool]
    assert [schema for schema, _ in pooled] == ["pl72"] * 4
    assert all(start.control_topic == control for _, start in pooled)
    [(schema, refusal)] = [decoded(m) for m in messages if m.topic() == status]
    assert schema == "answ" and refusal.outcome == ActionOutcome.Failure
    by_job: dict[str, list[str]] = {}
    for msg in (m for m in messages if m.topic() == control):
        schema, content = decoded(msg)
        job_id = json.loads(content.status_json)["job_id"] if schema == "x5f2" else content.job_id
        by_job.setdefault(job_id, []).append(schema)
    finished = [schemas for schemas in by_job.values() if schemas[-1] == "wrdn"]
    assert len(finished) == 2 and refusal.job_id not in by_job
    for schemas in finished:
        assert schemas == ["pl72", "answ", *["x5f2"] * 6, "6s4t", "answ", "wrdn"]
    [abandoned] = [schemas for schemas in by_job.values() if schemas[-1] != "wrdn"]
    assert abandoned == ["pl72", "answ", "x5f2", "x5f2"]
    heartbeat = next(decoded(m)[1] for m in messages if m.topic() == control and decoded(m)[0] == "x5f2")
    assert set(json.loads(heartbeat.status_json)) >= {"job_id", "file_being_written"}


@pytest.mark.integration
def test_error_runs_are_finished_with_error_encountered(tmp_path, kafka_bootstrap, kafka_topic):
    result = run_producer("--broker", kafka_bootstrap, "--keyed", "--topic", kafka_topic, "--error", "--output-dir",
                          str(tmp_path), "--quiet")
    assert result.returncode == 0 and result.stdout == ""
    [finish] = [m for _, s, m in ((None, *decoded(x)) for x in read_topic(kafka_bootstrap, kafka_topic, 2))
                if s == "wrdn"]
    assert finish.error_encountered and finish.message


def test_an_unreachable_broker_is_a_clear_error_not_a_hang(tmp_path):
    started = time.monotonic()
    result = run_producer("--broker", "127.0.0.1:1", "--output-dir", str(tmp_path), timeout=30)
    assert result.returncode == 1
    assert "cannot reach the Kafka broker at 127.0.0.1:1" in result.stderr
    assert time.monotonic() - started < 20
    assert not list(tmp_path.iterdir())  # nothing written for runs that could not be announced


def test_metadata_must_be_a_json_object():
    result = run_producer("--metadata", "{broken")
    assert result.returncode == 2 and "--metadata is not valid JSON" in result.stderr


def test_help_names_every_option():
    result = run_producer("--help")
    for option in ("--broker", "--topic", "--count", "--rate", "--output-dir", "--instrument", "--proposal",
                   "--events", "--metadata", "--error", "--noise", "--control-topic", "--keyed", "--pool-topic",
                   "--status-topic", "--overlap", "--heartbeats", "--failed-starts", "--abandoned", "--partitions"):
        assert option in result.stdout


@pytest.mark.integration
def test_the_producer_drives_the_ingestor_end_to_end(tmp_path, kafka_bootstrap, kafka_topic, scicat):
    """The producer and the ingestor as a user runs them, the real broker and the SciCat stand-in between."""
    from ingestor_harness import IngestorProcess, ingestor_config, wait_until

    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url)
    with IngestorProcess(tmp_path, config) as ingestor:
        result = run_producer("--broker", kafka_bootstrap, "--keyed", "--topic", kafka_topic, "--count", "4", "--noise",
                              "--proposal", "987654", "--events", "5000", "--output-dir", str(tmp_path))
        assert result.returncode == 0, result.stderr
        *lines, _summary = result.stdout.strip().splitlines()
        runs = [line.split() for line in lines]  # job id, path, size, "bytes"
        assert len(runs) == 4
        wait_until(lambda: all(scicat.datasets_for_job(job) for job, *_ in runs), 60, "a dataset for every run")
        ingestor.wait_for_log("undecodable", timeout=30)
        assert ingestor.running()

    for job_id, path, size, _ in runs:
        [dataset] = scicat.datasets_for_job(job_id)  # exactly once
        assert dataset["proposalId"] == "987654"
        run_number = Path(path).stem.rsplit("_", 1)[1]  # dream_<proposal>_<run number>.hdf
        assert dataset["datasetName"] == f"run_{run_number}"
        assert dataset["sourceFolder"] == str(tmp_path)
        assert scicat.datasets[dataset["pid"]]["size"] == int(size) == Path(path).stat().st_size
    assert len(scicat.datasets) == 4
    audit = ingestor.audit()
    assert sorted(a["job_id"] for a in audit) == sorted(job for job, *_ in runs)
    assert {a["outcome"] for a in audit} == {"ingested"}
    # The noise was passed over, every kind of it, and nothing was spooled for it.
    log = ingestor.log()
    for schema in ("answ", "x5f2", "6s4t"):
        assert f"passing over a {schema} message" in log
    assert ingestor.spooled() == []
