"""Whatever arrives on the topic, the loop goes on, and every wrdn ends in SciCat or the spool."""

from __future__ import annotations

import json
import sys
import tempfile
import uuid
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streaming_data_types.finished_writing_wrdn import serialise_wrdn
from streaming_data_types.run_start_pl72 import serialise_pl72

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import scicat_ingestor as si  # noqa: E402

SPOOL = tempfile.mkdtemp(prefix="sfi-fuzz-spool-")


def offline_ingestor(dry_run: bool = True) -> si.Ingestor:
    """An ingestor without Kafka; dry_run=False to see it spool (a dry run spools nothing), with a
    SciCat that is never reached as long as the files it is given do not exist."""
    config = si.parse_config({
        "kafka": {"bootstrap_servers": "unused:9092"},
        "scicat": {"host": "http://unused/api/v3", "username": "u", "password": "p", "max_retries": 0},
        "dataset": {"contact_email": "dm@example.org", "creation_location": "/ESS/X", "ownable": {"ownerGroup": "g"}},
        "files": {"wait_s": 0},
        "spool": {"directory": SPOOL},
        "audit": {"file": ""},
        "options": {"dry_run": dry_run},
    })
    return si.Ingestor(config)


VALID_RUN_START = serialise_pl72(job_id="job-1", filename="/data/x.hdf", metadata='{"proposal_id": "1"}',
                                 nexus_structure='{"children": []}')
VALID_WRDN = serialise_wrdn(service_id="fw", job_id="job-1", error_encountered=False,
                            file_name="/nonexistent/x.hdf", metadata='{"a": 1}')


def watched(ingestor: si.Ingestor) -> list:
    """The outcomes of every file the ingestor tries, to check none came from a bug."""
    outcomes = []
    ingest = ingestor.ingest

    def recording(finished, run_start):
        outcomes.append(ingest(finished, run_start))
        return outcomes[-1]

    ingestor.ingest = recording
    return outcomes


def damaged(payload: bytes, data: st.DataObject) -> bytes:
    kind = data.draw(st.sampled_from(["truncate", "flip", "both"]))
    buf = bytearray(payload)
    if kind in ("flip", "both"):
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(buf) - 1))
            buf[i] ^= 1 << data.draw(st.integers(0, 7))
    if kind in ("truncate", "both"):
        buf = buf[: data.draw(st.integers(0, len(buf)))]
    return bytes(buf)



@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_never_stop_the_loop(payload):
    ingestor = offline_ingestor()
    outcomes = watched(ingestor)
    ingestor.handle(si.Delivery(payload, "t", 0, 1))
    assert not [o.reason for o in outcomes if "unexpected error" in o.reason]
    assert sum(ingestor.stats.messages.values()) == 1  # counted under some schema or as undecodable


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([VALID_RUN_START, VALID_WRDN]), st.data())
def test_truncated_and_bit_flipped_messages_never_stop_the_loop(payload, data):
    ingestor = offline_ingestor()
    outcomes = watched(ingestor)
    ingestor.handle(si.Delivery(damaged(payload, data), "t", 0, 1))
    assert sum(ingestor.stats.messages.values()) == 1
    assert not [o.reason for o in outcomes if "unexpected error" in o.reason]


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=80))
def test_metadata_that_is_not_json_still_ingests_or_spools_the_file(metadata):
    ingestor = offline_ingestor(dry_run=False)
    # A job of its own each time: a failure of the same job and file is spooled only once.
    wrdn = serialise_wrdn(service_id="fw", job_id=f"job-{uuid.uuid4()}", error_encountered=False,
                          file_name="/nonexistent/y.hdf", metadata=metadata)
    ingestor.handle(si.Delivery(wrdn, "t", 0, 1))
    # The file does not exist: the outcome is a failure, recorded, not an exception.
    assert ingestor.stats.outcomes["failed"] == 1
    assert ingestor.stats.spooled == 1


def test_a_damaged_wrdn_is_kept_in_the_spool_for_a_human():
    ingestor = offline_ingestor(dry_run=False)
    before = Path(ingestor.spool.path).read_text().count("\n") if Path(ingestor.spool.path).exists() else 0
    # A wrdn header with a body that is no FlatBuffer.
    ingestor.handle(si.Delivery(b"\x00\x00\x00\x00wrdn" + b"\xff" * 20, "commands", 3, 42))
    lines = Path(ingestor.spool.path).read_text().splitlines()
    assert len(lines) == before + 1
    record = json.loads(lines[-1])
    assert (record["topic"], record["partition"], record["offset"]) == ("commands", 3, 42)
    assert "damaged wrdn" in record["reason"] and record["message_b64"]


def test_a_failure_delivered_again_is_spooled_once_until_replay_takes_it():
    ingestor = offline_ingestor(dry_run=False)
    damaged = si.Delivery(b"\x00\x00\x00\x00wrdn" + uuid.uuid4().bytes, "commands", 0, 7)
    missing = si.Delivery(serialise_wrdn(service_id="fw", job_id=f"job-{uuid.uuid4()}", error_encountered=False,
                                         file_name="/nonexistent/z.hdf"), "commands", 0, 8)
    for delivery in (damaged, missing, damaged, missing):
        assert ingestor.handle(delivery)
    assert ingestor.stats.outcomes["failed"] == 2 and ingestor.stats.spooled == 2
    records = si.Spool.take_all(ingestor.spool.path)  # what --replay does first
    assert len(records) >= 2
    ingestor.handle(missing)  # failing again after the replay took the spool: a record again
    assert ingestor.stats.spooled == 3
