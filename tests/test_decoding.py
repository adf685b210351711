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
    now = dt.datetime.now(dt.timezone.utc)
    others = {
        "answ": serialise_answ("fw", "job-1", "cmd", ActionType.StartJob, ActionOutcome.Success, "ok", 0, now),
        "x5f2": serialise_x5f2("kafka-to-nexus", "6", "fw", "host", 1, 2000, "{}"),
        "6s4t": serialise_6s4t(job_id="job-1", run_name="r", service_id="fw", command_id="c", stop_time=1),
        "f144": serialise_f144("motor", 1.5, 1_700_000_000_000_000_000),
    }
    for schema, payload in others.items():
        assert si.decode_message(payload) == si.PassedOver(schema)


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


def test_run_start_cache_joins_by_job_and_forgets_the_oldest_first(caplog):
    cache = si.RunStartCache(capacity=2)
    for job in ("a", "b", "c"):
        cache.remember(si.RunStart(job_id=job, filename=f"/{job}.hdf"))
    assert len(cache) == 2
    assert cache.take("a") is None  # the oldest went first
    assert "forgetting run start of job a" in caplog.text
    assert cache.take("c").filename == "/c.hdf"
    assert cache.take("c") is None  # taken once


def test_a_run_start_sent_again_counts_as_the_newest():
    cache = si.RunStartCache(capacity=2)
    for job in ("a", "b", "a", "c"):
        cache.remember(si.RunStart(job_id=job, filename=f"/{job}.hdf"))
    assert cache.take("a") is not None and cache.take("b") is None


def test_a_run_start_is_as_old_as_its_kafka_timestamp_so_one_read_again_after_a_restart_ages_on(caplog):
    cache = si.RunStartCache(capacity=10, max_age_s=60)
    cache.remember(si.RunStart(job_id="old", filename="/old.hdf"), "t", 0, 5, sent_at=time.time() - 120)
    cache.remember(si.RunStart(job_id="new", filename="/new.hdf"), "t", 0, 7, sent_at=time.time())
    cache.remember(si.RunStart(job_id="other", filename="/other.hdf"), "t", 1, 3, sent_at=time.time())
    assert cache.oldest_offsets() == {("t", 0): 5, ("t", 1): 3}
    cache.forget_expired()
    assert cache.get("old") is None
    assert "forgetting run start of job old (/old.hdf): its wrdn has not come within 60 s" in caplog.text
    assert cache.oldest_offsets() == {("t", 0): 7, ("t", 1): 3}
    cache.forget_partitions({("t", 1)})  # a rebalance took it
    assert cache.oldest_offsets() == {("t", 0): 7}


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
