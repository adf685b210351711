"""What the benchmark scripts share: tables, process figures, and the end-to-end rig.

The end-to-end rig is the test suite's own parts, as a user would run them: a
real Kafka-protocol broker (tests/kafka_broker.py), the strict SciCat stand-in
with a delay per request (tests/scicat_standin.py) and scicat_ingestor.py as
one or more subprocesses (tests/ingestor_harness.py). `measure_ingestors`
sends a burst of finished files, times how fast they become datasets, then
sends files at a steady pace to time the latency of each; `measure_bare_floor`
makes the same HTTP requests with nothing around them.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition  # noqa: E402
from ingestor_harness import FAST_CONSUMER, IngestorProcess, ingestor_config, producer, wait_until  # noqa: E402
from kafka_broker import TansuBroker, create_topic, produce  # noqa: E402
from scicat_standin import SciCatStandIn  # noqa: E402

import scicat_ingestor as si  # noqa: E402  (ingestor_harness put the project root on the path)

# -- printing ---------------------------------------------------------------------


def table(title: str, header: tuple, rows: list[tuple], verdict_line: str = "") -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]
    print(f"\n{title}")
    for row in (header, tuple("-" * w for w in widths), *rows):
        print("  " + "  ".join(str(x).rjust(w) for x, w in zip(row, widths, strict=True)))
    if verdict_line:
        print(f"  {verdict_line}")
    sys.stdout.flush()


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def machine_line() -> str:
    import h5py

    return (f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start, "
            f"Python {sys.version.split()[0]}, h5py {h5py.__version__}")


@contextlib.contextmanager
def kafka(bootstrap: Optional[str]) -> Iterator[str]:
    """An existing Kafka's bootstrap servers, or else those of a Tansu broker started for the run."""
    if bootstrap:
        yield bootstrap
        return
    with TansuBroker() as broker:
        yield broker.bootstrap


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--work-dir", help="where to make the files (default: a temporary folder)")
    parser.add_argument("--kafka", metavar="HOST:PORT",
                        help="an existing Kafka to use (default: start a Tansu broker for the run)")


# -- a process's figures (Linux /proc) ----------------------------------------------


def memory_mb(pid: Any = "self", field_name: str = "VmRSS") -> float:
    """VmRSS (resident now) or VmHWM (peak resident) of a process, in MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (librdkafka's too)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# -- finished files and their messages --------------------------------------------------


@dataclass
class Run:
    """One file the writer finished, and its two messages."""

    job_id: str
    path: str
    run_start: bytes
    finished: bytes


def write_runs(folder: Path, count: int) -> list[Run]:
    """Real NeXus files (about 35 kB, as the producer writes them) and their pl72 and wrdn."""
    folder.mkdir(parents=True, exist_ok=True)
    runs = []
    for _ in range(count):
        job_id = str(uuid.uuid4())
        path = str(folder / f"dream_123456_{job_id}.hdf")
        producer.write_nexus_file(path, job_id=job_id, events=100)
        runs.append(Run(job_id, path,
                        producer.make_run_start(job_id=job_id, filename=path, run_name=f"run {job_id[:8]}"),
                        producer.make_finished_writing(job_id=job_id, file_name=path)))
    return runs


def send(bootstrap: str, topic: str, runs: list[Run]) -> None:
    """All the runs' messages in one batch, each job's two on one partition (keyed by job id)."""
    produce(bootstrap, topic, [m for run in runs for m in (run.run_start, run.finished)],
            keys=[run.job_id.encode() for run in runs for _ in range(2)])


def wrdn_times(bootstrap: str, topic: str, expected: int, timeout_s: float = 60) -> dict[str, float]:
    """job id -> when its wrdn was produced (the message's Kafka timestamp, ms)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-reader-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "log_level": 0})
    # Assigned, not subscribed: no group to join, which takes seconds.
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    found: dict[str, float] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(found) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            message = si.decode_message(msg.value())
            if isinstance(message, si.FinishedWriting):
                found[message.job_id] = msg.timestamp()[1] / 1000
    finally:
        consumer.close()
    return found


# -- the ingestor, end to end ----------------------------------------------------------


@dataclass
class IngestorFigures:
    """What one measurement of one or more ingestors sharing a consumer group gave."""

    instances: int
    files: int
    seconds: float  # from the burst's first message produced to its last file list created
    cpu_s_per_file: float  # all instances, all threads
    standin_cpu_s_per_file: float  # this process's, which is the stand-in's but for a poll every 0.5 s
    peak_rss_mb: list[float]  # per instance
    files_per_instance: list[int]  # of the burst, as the consumer group shared its partitions
    stage_s: dict[str, float]  # mean seconds per file of each stage, from the audit trails
    latencies_s: list[float] = field(default_factory=list)  # wrdn produced -> file list created, paced runs
    # CPU seconds per file of each stage, sampled by py-spy in the first instance's main thread.
    cpu_stage_s: dict[str, float] = field(default_factory=dict)

    @property
    def files_per_s(self) -> float:
        return self.files / self.seconds


def _file_list_times(scicat: SciCatStandIn) -> dict[str, float]:
    """job id -> when SciCat created its dataset's origdatablock: the file is in the catalogue."""
    job_of = {pid: d["scientificMetadata"]["job_id"]["value"] for pid, d in scicat.datasets.items()}
    return {job_of[b["datasetId"]]: parse_iso(b["createdAt"]) for b in scicat.origdatablocks}


def _file_lists_created(scicat: SciCatStandIn) -> int:
    return sum(1 for method, path, status in scicat.requests_log
               if method == "POST" and path.lower().endswith("origdatablocks") and status == 201)


def _wait_for_file_lists(scicat: SciCatStandIn, count: int, ingestors: list[IngestorProcess], what: str) -> None:
    def done() -> bool:
        for ingestor in ingestors:
            assert ingestor.running(), f"an ingestor died:\n{ingestor.log()[-3000:]}"
        return _file_lists_created(scicat) >= count
    # Polled slowly: the stand-in shares this process, and every look takes its lock.
    wait_until(done, timeout=max(120.0, count * 2.0), what=what, interval=0.5)


def measure_ingestors(broker: str, work: Path, burst: list[Run], *, delay_s: float, instances: int = 1,
                      partitions: int = 1, latency_runs: int = 0, overrides: Optional[dict] = None,
                      profile: bool = False) -> IngestorFigures:
    """``instances`` ingestors in one consumer group on a fresh topic, against a fresh stand-in;
    the files of ``burst`` must lie in ``work``."""
    runs = len(burst)
    topic = f"bench-{uuid.uuid4().hex[:12]}"
    create_topic(broker, topic, partitions=partitions)
    group = f"bench-{uuid.uuid4().hex[:8]}"
    with SciCatStandIn(delay_s=delay_s) as scicat:
        ingestors = []
        for i in range(instances):
            config = ingestor_config(work, broker, topic, scicat.url, **{
                "files.checksum": "sha256", "audit.file": str(work / f"audit-{group}-{i}.jsonl"),
                "spool.directory": str(work / f"spool-{group}-{i}"),
                "options.run_start_state_file": str(work / f"run_starts-{group}-{i}.jsonl"), **(overrides or {})})
            config["kafka"]["group_id"] = group
            # INFO as in production: the harness's DEBUG would log every message.
            ingestors.append(IngestorProcess(work, config, "--debug", "INFO").start())
        try:
            # Warm up until every instance has ingested a file: all have joined the group
            # and been assigned their partitions, logged in, and imported what they need.
            warm = write_runs(work / "files", 10 + 5 * instances)
            for sent in range(len(warm) + 1):
                if all(ingestor.audit() for ingestor in ingestors):
                    break
                assert sent < len(warm), "warm-up: not every ingestor got a file"
                send(broker, topic, [warm[sent]])
                time.sleep(1.0)
            warmed = len(warm)
            send(broker, topic, warm[sent:])
            _wait_for_file_lists(scicat, warmed, ingestors, "the warm-up files")

            sampler = StageSampler(ingestors[0].process.pid, work / f"py-spy-{group}.txt") if profile else None
            cpu_before, standin_cpu_before = sum(cpu_seconds(i.process.pid) for i in ingestors), time.process_time()
            started = time.time()
            send(broker, topic, burst)
            _wait_for_file_lists(scicat, warmed + runs, ingestors, f"{runs} files")
            cpu_stage = {k: v / len(audit_lines_of(ingestors[0], burst)) for k, v in sampler.stop().items()} \
                if sampler else {}
            cpu = sum(cpu_seconds(i.process.pid) for i in ingestors) - cpu_before
            standin_cpu = time.process_time() - standin_cpu_before
            finished_at = _file_list_times(scicat)
            seconds = max(finished_at[run.job_id] for run in burst) - started

            latencies: list[float] = []
            if latency_runs:
                paced = write_runs(work / "files", latency_runs)
                interval = 2 * seconds / runs  # half the rate the burst reached
                for run in paced:
                    send(broker, topic, [run])
                    time.sleep(interval)
                _wait_for_file_lists(scicat, warmed + runs + latency_runs, ingestors, "the paced files")
                produced_at = wrdn_times(broker, topic, expected=warmed + runs + latency_runs)
                finished_at = _file_list_times(scicat)
                latencies = [finished_at[run.job_id] - produced_at[run.job_id] for run in paced]
            peak_rss = [memory_mb(i.process.pid, "VmHWM") for i in ingestors]
        finally:
            codes = [i.stop() for i in ingestors]
        assert codes == [0] * instances, f"ingestors exited with {codes}"
        assert not scicat.internal_errors, scicat.internal_errors
        audit_of = [audit_lines_of(i, burst) for i in ingestors]
        audits = [line for lines in audit_of for line in lines]
        assert len(audits) == runs and all(a["outcome"] == "ingested" for a in audits), "not every file was ingested"
    stages = sorted({name for a in audits for name in a["durations_s"]})
    return IngestorFigures(instances, runs, seconds, cpu / runs, standin_cpu / runs, peak_rss,
                           [len(lines) for lines in audit_of],
                           {name: statistics.fmean(a["durations_s"].get(name, 0.0) for a in audits)
                            for name in stages}, latencies, cpu_stage)


def audit_lines_of(ingestor: IngestorProcess, runs: list[Run]) -> list[dict]:
    jobs = {run.job_id for run in runs}
    return [line for line in ingestor.audit() if line["job_id"] in jobs]


# -- CPU by stage: py-spy samples of the ingestor's main thread ------------------------------

# A sample's stage: the first of these whose pattern one of its frames holds. The loop's
# own frame comes last, as it encloses every other: alone, it is in poll or commit.
STAGE_OF_FRAME = (
    ("decode_message", "decode"),
    ("read_nexus_metadata", "metadata read"),
    ("read_scientific_metadata", "metadata read"),
    ("compute_checksum", "checksum"),
    ("describe_file", "checksum"),  # stat, user and group names
    ("SciCatClient.", "SciCat HTTP"),
    ("append_line_durably", "audit trail"),
    ("logging/", "log lines"),
    ("build_", "building the payloads"),
    ("Ingestor.commit_handled", "Kafka poll and commit"),
    ("Ingestor.handle", "other"),
    ("Ingestor.run", "Kafka poll and commit"),
    # A sample taken without pausing the process may hold only the innermost frames.
    ("h5py/", "metadata read"),
    ("requests/", "SciCat HTTP"),
    ("urllib3/", "SciCat HTTP"),
)
SAMPLES_PER_S = 200


class StageSampler:
    """py-spy attached to a running process; stop() gives CPU seconds by stage.

    Only samples of a thread on the CPU count (py-spy leaves idle ones out), so
    waiting for SciCat's answer or for a Kafka message costs nothing here."""

    def __init__(self, pid: int, output: Path):
        import shutil
        import subprocess

        self.output = output
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
        assert spy, "py-spy is not installed (pip install py-spy), or leave out --profile"
        self.process = subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", str(SAMPLES_PER_S),
                                         "--nonblocking", "--format", "raw", "--output", str(output)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # attached before the first message comes

    def stop(self) -> dict[str, float]:
        import signal

        self.process.send_signal(signal.SIGINT)  # py-spy writes what it has and exits
        self.process.wait(30)
        seconds: dict[str, float] = {}
        for line in self.output.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = stack.split(";")[::-1]
            stage = next((name for pattern, name in STAGE_OF_FRAME for frame in frames if pattern in frame), "other")
            seconds[stage] = seconds.get(stage, 0.0) + int(count) / SAMPLES_PER_S
        return seconds


# -- the floor: the same requests, nothing around them ---------------------------------------


@dataclass
class Payload:
    """What the ingestor posts for one file: the dataset, and the origdatablock less its datasetId."""

    dataset: dict[str, Any]
    block: dict[str, Any]


def payloads_for(runs: list[Run], work: Path, overrides: Optional[dict] = None) -> list[Payload]:
    """The ingestor's own payloads for these files, built in this process by its own functions."""
    config = si.parse_config(ingestor_config(work, "unused:9092", "unused", "http://unused/api/v3",
                                             **{"files.checksum": "sha256", **(overrides or {})}))
    payloads = []
    for run in runs:
        run_start, finished = si.decode_message(run.run_start), si.decode_message(run.finished)
        nexus, data_file = si.read_nexus_metadata(run.path), si.describe_file(run.path, config.files.checksum)
        dataset = si.build_dataset(run_start, finished, nexus, data_file, config.dataset).dataset
        block = si.build_origdatablock("", dataset, data_file)
        del block["datasetId"]
        payloads.append(Payload(dataset, block))
    return payloads


def _bare_loop(url: str, payloads: list[Payload]) -> tuple[float, float]:
    """Log in, then POST each dataset and its origdatablock: (seconds, CPU seconds)."""
    import requests

    started, cpu_started = time.perf_counter(), time.process_time()
    session = requests.Session()
    answer = session.post(url + "/auth/login", json={"username": "ingestor", "password": "secret"}, timeout=30)
    answer.raise_for_status()
    session.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
    for payload in payloads:
        created = session.post(url + "/Datasets", json=payload.dataset, timeout=30)
        created.raise_for_status()
        session.post(url + "/OrigDatablocks", json={**payload.block, "datasetId": created.json()["pid"]},
                     timeout=30).raise_for_status()
    return time.perf_counter() - started, time.process_time() - cpu_started


@dataclass
class FloorFigures:
    files: int
    seconds: float
    cpu_s_per_file: float

    @property
    def files_per_s(self) -> float:
        return self.files / self.seconds


def measure_bare_floor(payloads: list[Payload], delay_s: float) -> FloorFigures:
    """A bare requests.Session loop, in a process of its own, against a fresh stand-in."""
    with SciCatStandIn(delay_s=delay_s) as scicat:
        # Spawned, not forked: this process runs the stand-in's threads.
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            seconds, cpu = pool.apply(_bare_loop, (scicat.url, payloads))
        assert len(scicat.origdatablocks) == len(payloads) and not scicat.internal_errors
    return FloorFigures(len(payloads), seconds, cpu / len(payloads))



# -- passing over a flood ------------------------------------------------------------------


def measure_pass_over(broker: str, work: Path, payload: bytes, count: int) -> float:
    """Messages per second one ingestor subprocess passes over, Kafka poll and commit included.

    The ingestor runs dry (no SciCat); the clock stops when its group's committed
    offset reaches the end of the flood."""
    topic = f"bench-{uuid.uuid4().hex[:12]}"
    create_topic(broker, topic, partitions=1)
    config = ingestor_config(work, broker, topic, "http://127.0.0.1:9/api/v3", **{"options.dry_run": True})
    reader = Consumer({"bootstrap.servers": broker, "group.id": config["kafka"]["group_id"], "log_level": 0})

    def committed() -> int:
        return reader.committed([TopicPartition(topic, 0)], timeout=10)[0].offset

    with IngestorProcess(work, config, "--debug", "INFO") as ingestor:
        produce(broker, topic, [payload])  # one first: the clock starts once the ingestor is in its group
        wait_until(lambda: committed() >= 1, 60, "the ingestor to join its group")
        started = time.monotonic()
        produce(broker, topic, [payload] * count)
        wait_until(lambda: committed() >= count + 1 or not ingestor.running(), max(60.0, count / 100),
                   f"{count} messages passed over", interval=0.05)
        seconds = time.monotonic() - started
        assert ingestor.running(), ingestor.log()[-3000:]
    reader.close()
    return count / seconds
