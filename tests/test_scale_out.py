"""Several ingestors in one consumer group share a command topic's partitions, through rebalances.

Each instance gets its own audit file, so the tests can tell who ingested what;
all share one group id, one topic of 4 partitions and one SciCat stand-in.

The main scenario (two instances sharing a topic) runs in both SciCat API versions (`api`:
scicat.api v3, and v4 on a backend without v3); the others with scicat.api auto on a backend
that serves both, so in v4. Who holds which partition through a crash or a rebalance does not
depend on the API version, and running those in v3 too would cost the suite some 60 s more.
"""

from __future__ import annotations

import copy
import re
import threading
import uuid
from collections import Counter

import pytest

from ingestor_harness import FileWriter, IngestorProcess, ingestor_config, one_dataset_each, wait_until
from kafka_broker import create_topic

import producer  # noqa: E402  (examples/producer, on the path ingestor_harness sets)

pytestmark = pytest.mark.integration

PARTITIONS = 4


@pytest.fixture
def topic(kafka_bootstrap):
    name = f"sfi-test-{uuid.uuid4().hex[:12]}"
    create_topic(kafka_bootstrap, name, partitions=PARTITIONS)
    return name


@pytest.fixture
def writer(tmp_path, kafka_bootstrap, topic):
    data = tmp_path / "data"
    data.mkdir()
    return FileWriter(kafka_bootstrap, topic, data)


@pytest.fixture
def config(request, tmp_path, kafka_bootstrap, topic, scicat):
    api = request.getfixturevalue("api") if "api" in request.fixturenames else ""
    return ingestor_config(tmp_path, kafka_bootstrap, topic, scicat.url, api=api)


def member(tmp_path, config: dict, name: str) -> IngestorProcess:
    """One more instance in the configuration's group, with its own audit trail and spool."""
    own = copy.deepcopy(config)
    own["audit"]["file"] = str(tmp_path / f"audit-{name}.jsonl")
    own["spool"]["directory"] = str(tmp_path / f"spool-{name}")
    own["options"]["run_start_state_file"] = str(tmp_path / f"run_starts-{name}.jsonl")
    return IngestorProcess(tmp_path, own)


def owned(ingestor: IngestorProcess) -> set[int]:
    """The partitions the instance holds now, as its log tells."""
    held: set[int] = set()
    for event, names in re.findall(r"partitions (assigned|revoked|lost): (.*)", ingestor.log()):
        partitions = {int(p) for p in re.findall(r"\[(\d+)\]", names)}
        held = held | partitions if event == "assigned" else held - partitions
    return held


def split_between(*ingestors: IngestorProcess) -> bool:
    """Every partition held by exactly one of them, and each of them holding some."""
    held = [owned(i) for i in ingestors]
    return all(held) and sorted(p for h in held for p in h) == list(range(PARTITIONS))


def ingested_jobs(ingestor: IngestorProcess) -> set[str]:
    return {a["job_id"] for a in ingestor.audit() if a["outcome"] == "ingested"}


def handled_once_each(runs: list[dict], *ingestors: IngestorProcess) -> None:
    """Each run was handled exactly once, by one instance, and ingested: no second look at any."""
    handled = Counter((a["job_id"], a["outcome"]) for i in ingestors for a in i.audit())
    assert handled == Counter((run["job_id"], "ingested") for run in runs)


def test_two_ingestors_share_a_topic_of_4_partitions_and_each_run_has_one_dataset(
        tmp_path, scicat, writer, config, api):
    with member(tmp_path, config, "a") as a, member(tmp_path, config, "b") as b:
        wait_until(lambda: split_between(a, b), 60, "the partitions split between the two")
        runs = [writer.run(events=10) for _ in range(100)]
        wait_until(lambda: one_dataset_each(scicat, runs), 120, "one dataset per run", interval=0.5)
        assert a.running() and b.running()
    assert len(scicat.datasets) == 100
    assert ingested_jobs(a) and ingested_jobs(b), "both instances should have ingested some"
    handled_once_each(runs, a, b)


def test_kill_9_of_one_of_two_the_survivor_takes_over_its_partitions(tmp_path, scicat, writer, config):
    # A slow SciCat keeps work waiting on the victim's partitions when it dies.
    scicat.delay_s = 0.05
    victim, survivor = member(tmp_path, config, "victim"), member(tmp_path, config, "survivor")
    with victim, survivor:
        wait_until(lambda: split_between(victim, survivor), 60, "the partitions split between the two")
        runs = [writer.run(events=10) for _ in range(60)]
        wait_until(lambda: len(victim.audit()) >= 3, 60, "the victim at work")
        victim.kill()
        assert len(scicat.datasets) < len(runs), "the crash came too late to test anything"

        wait_until(lambda: owned(survivor) == set(range(PARTITIONS)), 60, "the survivor holding every partition")
        wait_until(lambda: one_dataset_each(scicat, runs), 120, "one dataset and origdatablock per run",
                   interval=0.5)
        assert survivor.running()
    assert len(scicat.datasets) == len(runs)
    assert survivor.spooled() == []


def test_a_third_ingestor_joining_mid_stream_takes_a_share_without_loss_or_duplicates(
        tmp_path, scicat, writer, config):
    scicat.delay_s = 0.02
    runs: list[dict] = []
    enough = threading.Event()

    def file_writer() -> None:  # about 10 runs a second, until the third has its share
        while not enough.is_set():
            runs.append(writer.run(events=10))
            enough.wait(0.1)

    a, b, c = (member(tmp_path, config, name) for name in "abc")
    with a, b:
        wait_until(lambda: split_between(a, b), 60, "the partitions split between the two")
        stream = threading.Thread(target=file_writer)
        stream.start()
        try:
            wait_until(lambda: len(scicat.datasets) >= 10, 60, "the stream flowing")
            with c:
                wait_until(lambda: split_between(a, b, c), 60, "the partitions split among the three")
                wait_until(lambda: len(ingested_jobs(c)) >= 3, 60, "the third ingesting")
                enough.set()
                stream.join()
                wait_until(lambda: one_dataset_each(scicat, runs), 120, "one dataset per run", interval=0.5)
        finally:
            enough.set()
            stream.join()
    assert len(scicat.datasets) == len(runs)
    handled_once_each(runs, a, b, c)


def test_a_rebalance_while_a_file_is_waited_for_leaves_it_to_its_new_owner(tmp_path, scicat, writer, config):
    """The message in hand is neither finished nor committed once its partition is taken."""
    config["files"]["wait_s"] = 120
    first, second = member(tmp_path, config, "first"), member(tmp_path, config, "second")
    with first:
        wait_until(lambda: owned(first) == set(range(PARTITIONS)), 60, "the first holding every partition")
        late = writer.run(write_file=False)  # announced before it shows on this host
        first.wait_for_log("waiting for it")
        with second:
            wait_until(lambda: split_between(first, second), 60, "the partitions split between the two")
            producer.write_nexus_file(late["path"], job_id=late["job_id"], events=10)
            wait_until(lambda: one_dataset_each(scicat, [late]), 60, "the late file's dataset")
            # Statistics come from the loop, not from a wait: the first holds no message any more.
            first.wait_for_log("statistics:", count=first.log().count("statistics:") + 1)
            assert first.running() and second.running()
    handled_once_each([late], first, second)
    assert "left uncommitted for the partition's new owner" in first.log()
