"""Decoding what arrives on the command topic, and remembering run starts."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path

import pytest
from streaming_data_types.action_response_answ import ActionOutcome, ActionType, serialise_answ
from streaming_data_types.finished_writing_wrdn import serialise_wrdn
from streaming_data_types.logdata_f144 import serialise_f144
from streaming_data_types.run_start_pl72 import serialise_pl72
from streaming_data_types.run_stop_6s4t import serialise_6s4t
from streaming_data_types.status_x5f2 import serialise_x5f2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import scicat_ingestor as si  # noqa: E402
from ingestor_harness import wait_until  # noqa: E402

MODERN_STRUCTURE = {"children": [{"name": "entry", "type": "group", "children": [
    {"module": "dataset", "config": {"name": "experiment_identifier", "values": "443503"}},
    {"module": "dataset", "config": {"name": "title", "values": "odin"}},
    {"module": "dataset", "config": {"name": "start_time", "values": "not kept"}},
    {"module": "ev44", "config": {"source": "detector", "topic": "events"}},
]}]}
OLDER_STRUCTURE = {"children": [{"name": "entry", "type": "group", "children": [
    {"type": "dataset", "name": "experiment_identifier", "values": 876380},
    {"type": "dataset", "name": "entry_identifier", "values": "11465"},
]}]}


def pl72(**fields) -> bytes:
    return serialise_pl72(**{"job_id": "job-1", "filename": "/data/f.hdf", **fields})


def wrdn(**fields) -> bytes:
    return serialise_wrdn(**{"service_id": "fw", "job_id": "job-1", "error_encountered": False,
                             "file_name": "/data/f.hdf", **fields})


def test_run_start_keeps_what_the_ingestor_needs():
    message = si.decode_message(pl72(run_name="run 7", instrument_name="ODIN", start_time=1_700_000_000_000,
                                     stop_time=1_700_000_060_000, metadata='{"proposal_id": "1"}',
                                     nexus_structure=json.dumps(MODERN_STRUCTURE), control_topic="ctl"))
    assert isinstance(message, si.RunStart)
    assert (message.job_id, message.filename, message.run_name, message.instrument_name) == (
        "job-1", "/data/f.hdf", "run 7", "ODIN")
    assert (message.start_time_ms, message.stop_time_ms, message.control_topic) == (
        1_700_000_000_000, 1_700_000_060_000, "ctl")
    assert message.metadata == {"proposal_id": "1"} and message.metadata_error == ""
    assert message.structure_values == {"experiment_identifier": "443503", "title": "odin"}


def test_run_start_reads_the_older_nexus_structure_form_too():
    message = si.decode_message(pl72(nexus_structure=json.dumps(OLDER_STRUCTURE)))
    assert message.structure_values == {"experiment_identifier": "876380", "entry_identifier": "11465"}


@pytest.mark.parametrize("structure", ["", "{not json", "[1, 2]", '{"children": "x"}', '{"children": [1]}'])
def test_a_nexus_structure_that_cannot_be_read_gives_no_values_but_a_run_start(structure):
    assert si.decode_message(pl72(nexus_structure=structure)).structure_values == {}


def test_metadata_that_is_not_json_is_reported_not_fatal():
    message = si.decode_message(pl72(metadata="{proposal: 1"))
    assert message.metadata == {}
    assert "not valid JSON" in message.metadata_error and "{proposal: 1" in message.metadata_error


def test_metadata_that_is_json_but_not_an_object_is_reported():
    message = si.decode_message(wrdn(metadata="[1, 2]"))
    assert message.metadata == {} and "not an object" in message.metadata_error


def test_finished_writing_with_and_without_error():
    ok = si.decode_message(wrdn(metadata='{"a": 1}'))
    assert isinstance(ok, si.FinishedWriting)
    assert (ok.job_id, ok.file_name, ok.service_id, ok.error_encountered, ok.metadata) == (
        "job-1", "/data/f.hdf", "fw", False, {"a": 1})
    broken = si.decode_message(wrdn(error_encountered=True, message="disk full"))
    assert broken.error_encountered and broken.message == "disk full" and broken.metadata == {}


def test_the_writers_other_messages_are_passed_over_by_schema():
    others = {
        "6s4t": serialise_6s4t(job_id="job-1", run_name="r", service_id="fw", command_id="c", stop_time=1),
        "f144": serialise_f144("motor", 1.5, 1_700_000_000_000_000_000),
    }
    for schema, payload in others.items():
        assert si.decode_message(payload) == si.PassedOver(schema)


def test_answers_and_heartbeats_name_the_job_for_the_watchdog():
    now = dt.datetime.now(dt.timezone.utc)
    accepted = serialise_answ("fw", "job-1", "cmd", ActionType.StartJob, ActionOutcome.Success, "ok", 0, now)
    refused = serialise_answ("fw", "job-2", "cmd", ActionType.StartJob, ActionOutcome.Failure, "no such broker", 0,
                             now)
    stop_refused = serialise_answ("fw", "job-3", "cmd", ActionType.SetStopTime, ActionOutcome.Failure, "late", 0, now)
    assert si.decode_message(accepted) == si.JobAnswer("job-1", start_failed=False, message="ok")
    assert si.decode_message(refused) == si.JobAnswer("job-2", start_failed=True, message="no such broker")
    assert not si.decode_message(stop_refused).start_failed
    writing = json.dumps({"state": "writing", "job_id": "job-1", "file_being_written": "/data/f.hdf"})
    assert si.decode_message(serialise_x5f2("kafka-to-nexus", "6", "fw", "host", 1, 2000, writing)) == si.Heartbeat(
        "job-1", "/data/f.hdf")
    assert si.decode_message(serialise_x5f2("kafka-to-nexus", "6", "fw", "host", 1, 2000, "{}")) == si.Heartbeat("")


@pytest.mark.parametrize("payload, reason", [
    (b"", "too short"),
    (b"\x01\x02\x03", "too short"),
    (b"\x00\x00\x00\x00zzzz rest", "unknown schema id 'zzzz'"),
    (b"\x00\x00\x00\x00\xff\xfe\xfd\xfc", "no schema id"),
    (b"\x40\x00\x00\x00pl72" + b"\xff" * 12, "damaged pl72"),  # root table past the end
])
def test_garbage_is_undecodable_with_the_reason(payload, reason):
    with pytest.raises(si.UndecodableMessage) as caught:
        si.decode_message(payload)
    assert reason in str(caught.value)


def test_a_wrdn_without_a_job_id_cannot_be_joined_and_is_refused():
    with pytest.raises(si.UndecodableMessage, match="without a job id"):
        si.decode_message(wrdn(job_id=""))


def test_preview_shows_the_first_bytes_and_the_length():
    assert si.preview(b"\x00\x01") == "00 01"
    long = si.preview(bytes(range(100)))
    assert long.startswith("00 01 02") and long.endswith("(100 bytes)")


def test_run_start_store_joins_by_job_and_forgets_the_oldest_first(caplog):
    store = si.RunStartStore(capacity=2)
    for job in ("a", "b", "c"):
        assert store.remember(si.RunStart(job_id=job, filename=f"/{job}.hdf"))
    assert len(store) == 2
    assert store.get("a") is None  # the oldest went first
    assert "forgetting run start of job a" in caplog.text
    assert store.get("c").filename == "/c.hdf"
    store.finish("c")
    assert store.get("c") is None


def test_a_copy_of_a_run_start_is_known_waiting_or_finished():
    store = si.RunStartStore(capacity=10)
    assert store.remember(si.RunStart(job_id="a", filename="/pool-copy.hdf"))
    assert not store.remember(si.RunStart(job_id="a", filename="/echo.hdf"))  # the control topic's echo
    assert store.get("a").filename == "/pool-copy.hdf"
    store.finish("b")  # its wrdn came first, from another partition
    assert not store.remember(si.RunStart(job_id="b", filename="/b.hdf")) and store.get("b") is None


def test_a_run_start_is_as_old_as_its_kafka_timestamp(caplog):
    store = si.RunStartStore(capacity=10, max_age_s=60)
    store.remember(si.RunStart(job_id="old", filename="/old.hdf"), sent_at=time.time() - 120)
    store.remember(si.RunStart(job_id="new", filename="/new.hdf"), sent_at=time.time())
    store.forget_expired()
    assert store.get("old") is None and store.get("new") is not None
    assert "forgetting run start of job old (/old.hdf): its wrdn has not come within 60 s" in caplog.text


def deep(levels: int) -> str:
    """A JSON object nested ``levels`` deep, as a hostile or broken writer might send."""
    return '{"a": ' * levels + "1" + "}" * levels


@pytest.mark.parametrize("levels", [500, 5_000, 100_000])
def test_metadata_nested_too_deep_is_dropped_with_a_reason_and_the_message_still_decodes(levels):
    for message in (si.decode_message(pl72(metadata=deep(levels))), si.decode_message(wrdn(metadata=deep(levels)))):
        assert message.job_id == "job-1" and message.metadata == {}
        assert f"nested deeper than {si.MESSAGE_JSON_MAX_DEPTH} levels" in message.metadata_error


@pytest.mark.parametrize("levels", [500, 5_000, 100_000])
def test_a_nexus_structure_nested_too_deep_is_dropped_but_the_metadata_is_kept(levels):
    message = si.decode_message(pl72(metadata='{"proposal_id": "1"}', nexus_structure=deep(levels)))
    assert message.metadata == {"proposal_id": "1"} and message.structure_values == {}
    assert "nexus_structure is nested deeper" in message.metadata_error


def test_metadata_as_deep_as_allowed_is_kept():
    assert si.decode_message(wrdn(metadata=deep(si.MESSAGE_JSON_MAX_DEPTH))).metadata_error == ""


def test_metadata_with_an_integer_too_long_to_read_is_dropped_and_the_wrdn_still_decodes():
    message = si.decode_message(wrdn(metadata='{"n": ' + "7" * 5000 + "}"))
    assert message.job_id == "job-1" and message.metadata == {} and "metadata cannot be read" in message.metadata_error


def test_the_store_file_survives_a_restart_bounded_and_compacted(tmp_path, caplog):
    path = str(tmp_path / "state" / "run_starts.jsonl")
    store = si.RunStartStore(capacity=5, max_age_s=60).open(path)
    store.remember(si.RunStart(job_id="waits", filename="/w.hdf", metadata={"proposal_id": "1"}))
    store.remember(si.RunStart(job_id="too-old", filename="/o.hdf"), sent_at=time.time() - 120)
    for i in range(300):  # runs that start and finish: history, compacted away
        store.remember(si.RunStart(job_id=f"run-{i}", filename=f"/{i}.hdf"))
        store.finish(f"run-{i}")
    store.close()
    with open(path, "a") as f:
        f.write('{"start": {"job_id": "torn')  # a crash in the middle of a line
    lines_before = len(open(path).read().splitlines())
    again = si.RunStartStore(capacity=5, max_age_s=60).open(path)
    assert again.get("waits").metadata == {"proposal_id": "1"}
    assert again.get("too-old") is None and len(again) == 1
    assert not again.remember(si.RunStart(job_id="run-299", filename="/299.hdf"))  # finished before the restart
    assert "line %d: cannot read it" % lines_before in caplog.text
    assert len(open(path).read().splitlines()) <= 1 + 5  # one waiting, five finished kept
    with pytest.raises(si.ConfigError, match="in use by another running instance"):
        si.RunStartStore(capacity=5).open(path)
    again.close()


def test_the_watchdog_counts_a_job_once_whatever_topic_shows_it_first_and_reports_once():
    reports = []
    watchdog = si.JobWatchdog(silence_s=0.2, capacity=10, report=lambda *r: reports.append(r[:3]))
    start = si.RunStart(job_id="a", filename="/a.hdf")
    watchdog.started(start)
    watchdog.started(start)  # the echo on the control topic
    watchdog.answered(si.JobAnswer("b", start_failed=True, message="no disk"))  # before b's pl72 came
    watchdog.started(si.RunStart(job_id="b", filename="/b.hdf"))
    watchdog.finished("c")  # its pl72 on a partition not read yet
    watchdog.started(si.RunStart(job_id="c", filename="/c.hdf"))
    assert reports == [("failed_to_start", "b", "")]
    wait_until(lambda: watchdog.check() or reports[1:], 10, "a silent report")
    watchdog.check()
    assert reports[1:] == [("silent", "a", "/a.hdf")]
    watchdog.finished("a")  # came after all: counted finished, not silent again
    assert dict(watchdog.counts) == {"started": 3, "failed_to_start": 1, "finished": 2, "silent": 1}
