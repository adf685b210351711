#!/usr/bin/env python3
"""A file-writer stand-in: run start, a real NeXus file, finished writing.

Behaves like the ESS experiment control (NICOS) and file writer (kafka-to-nexus)
for one or many runs, so the ingestor can be driven without a facility. By
default as a real deployment does (shared/docs/file-writer-messages.md), every
message with a null key:

1. the pl72 run start (job id, absolute file name, run name, instrument, start
   time, a small nexus_structure, metadata) to the job-pool topic;
2. the writer's echo of it on the instrument's control topic, then there an
   answ (start accepted) and x5f2 heartbeats naming the job and file;
3. the NeXus file, written with h5py in the layout real ESS files have, to a
   temporary name first, then renamed into place; with a default plot (a detector
   image, and a time-of-flight spectrum beside it) that the ingestor draws as the
   dataset's thumbnail;
4. on the control topic: 6s4t (the stop), answ (stop accepted), and the wrdn
   finished writing with the run start's metadata copied.

Several instruments (a control topic each), overlapping runs, starts the writer
refuses and jobs whose writer dies are options. --keyed is the old mode: pl72,
optional noise and wrdn on one topic, keyed by job id.

    ./producer.py --broker localhost:9092 --count 5 --overlap 3 --output-dir /tmp/nexus
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import socket
import sys
import time
import uuid
from pathlib import Path
from dataclasses import dataclass
from typing import Optional

import h5py
import numpy as np
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient
from streaming_data_types.action_response_answ import ActionOutcome, ActionType, serialise_answ
from streaming_data_types.finished_writing_wrdn import serialise_wrdn
from streaming_data_types.run_start_pl72 import serialise_pl72
from streaming_data_types.run_stop_6s4t import serialise_6s4t
from streaming_data_types.status_x5f2 import serialise_x5f2

DEFAULT_USERS = (
    ("Ada Lovelace", "ada.lovelace@example.org", "Analytical Engines Ltd"),
    ("Lise Meitner", "lise.meitner@example.org", "European Spallation Source ERIC (ESS)"),
)
EVENT_CHUNK = 1_000_000  # events written per slice: large files without large memory


def service_id() -> str:
    """The file writer's own form: kafka-to-nexus:<host>-pid:<pid>-<hex>."""
    return f"kafka-to-nexus:{socket.gethostname()}-pid:{os.getpid()}-{uuid.uuid4().hex[:8]}"


def iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


# -- the messages ----------------------------------------------------------------


def nexus_structure(proposal: str, title: str, run_number: int, job_id: str) -> str:
    """A small nexus_structure JSON of the shape the real writer receives."""
    def dataset(name: str, value: str) -> dict:
        return {"module": "dataset", "config": {"name": name, "values": value}}

    entry = {
        "name": "entry",
        "type": "group",
        "attributes": [{"name": "NX_class", "dtype": "string", "values": "NXentry"}],
        "children": [
            dataset("experiment_identifier", proposal),
            dataset("title", title),
            dataset("entry_identifier", str(run_number)),
            dataset("entry_identifier_uuid", job_id),
            {"name": "instrument", "type": "group",
             "attributes": [{"name": "NX_class", "dtype": "string", "values": "NXinstrument"}],
             "children": [{"module": "ev44", "config": {"source": "detector", "topic": "detector_events"}}]},
        ],
    }
    return json.dumps({"children": [entry]})


def make_run_start(*, job_id: str, filename: str, run_name: str = "test_run", instrument: str = "DREAM",
                   proposal: str = "123456", title: str = "test run", start_time_ms: Optional[int] = None,
                   metadata: str = "{}", control_topic: str = "", broker: str = "", run_number: int = 1) -> bytes:
    return serialise_pl72(
        job_id=job_id, filename=filename, run_name=run_name, instrument_name=instrument,
        start_time=start_time_ms if start_time_ms is not None else int(time.time() * 1000),
        nexus_structure=nexus_structure(proposal, title, run_number, job_id),
        metadata=metadata, control_topic=control_topic, broker=broker, service_id="",
    )


def make_finished_writing(*, job_id: str, file_name: str, metadata: Optional[str] = "{}", error: bool = False,
                          message: Optional[str] = None, writer_id: Optional[str] = None) -> bytes:
    return serialise_wrdn(
        service_id=writer_id or service_id(), job_id=job_id, error_encountered=error, file_name=file_name,
        metadata=metadata, message=message,
    )


def make_answer(*, job_id: str, writer: str, action: int = ActionType.StartJob, failed: bool = False,
                message: str = "") -> bytes:
    outcome = ActionOutcome.Failure if failed else ActionOutcome.Success
    return serialise_answ(writer, job_id, str(uuid.uuid4()), action, outcome, message or
                          ("job started" if action == ActionType.StartJob else "stop time set"),
                          500 if failed else 0, dt.datetime.now(dt.timezone.utc))


def make_heartbeat(*, writer: str, job_id: str = "", file_name: str = "") -> bytes:
    """The writer's x5f2 status; while writing its status_json names the job and the file."""
    status = {"state": "writing", "job_id": job_id, "file_being_written": file_name} if job_id else {"state": "idle"}
    return serialise_x5f2("kafka-to-nexus", "6.0.0", writer, socket.gethostname(), os.getpid(), 2000,
                          json.dumps(status))


def make_noise(*, job_id: str) -> list[bytes]:
    """What else a busy command topic carries: answers, heartbeats, a run stop, and junk."""
    writer = service_id()
    now = dt.datetime.now(dt.timezone.utc)
    return [
        serialise_answ(writer, job_id, str(uuid.uuid4()), ActionType.StartJob, ActionOutcome.Success,
                       "job started", 0, now),
        serialise_x5f2("kafka-to-nexus", "6.0.0", writer, socket.gethostname(), os.getpid(), 2000,
                       json.dumps({"state": "writing", "job_id": job_id})),
        serialise_6s4t(job_id=job_id, run_name="", service_id=writer, command_id=str(uuid.uuid4()),
                       stop_time=int(time.time() * 1000)),
        b"\x00\x00\x00\x00junk: not a flatbuffer",
        bytes(random.getrandbits(8) for _ in range(24)),
    ]


# -- the file ----------------------------------------------------------------------


def _text(group: h5py.Group, name: str, value: str) -> None:
    """A string as real ESS files store it: a variable-length bytes scalar."""
    group.create_dataset(name, data=value.encode(), dtype=h5py.string_dtype("utf-8"))


def _group(parent: h5py.Group, name: str, nx_class: str) -> h5py.Group:
    group = parent.create_group(name)
    group.attrs["NX_class"] = nx_class
    return group


def write_nexus_file(path: str, *, job_id: str, instrument: str = "DREAM", proposal: str = "123456",
                     run_number: int = 1, title: str = "test run", start_time: Optional[float] = None,
                     end_time: Optional[float] = None, users=DEFAULT_USERS, sample: str = "a sample",
                     events: int = 1000, plots: bool = True) -> int:
    """Write an ESS-like NeXus file; returns its size in bytes. With ``plots``, a default plot
    (NeXus "default" from the root to /entry/detector_image) and a spectrum beside it."""
    start_time = start_time if start_time is not None else time.time()
    end_time = end_time if end_time is not None else start_time + 60
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.writing")
    with h5py.File(temporary, "w") as f:
        entry = _group(f, "entry", "NXentry")
        for name, value in {
            "title": title, "experiment_identifier": proposal,
            "experiment_description": f"{instrument} proposal {proposal}",
            "entry_identifier": str(run_number), "entry_identifier_uuid": job_id,
            "start_time": iso(start_time), "end_time": iso(end_time), "definition": "NXtomo",
        }.items():
            _text(entry, name, value)
        nx_instrument = _group(entry, "instrument", "NXinstrument")
        _text(nx_instrument, "name", instrument)
        nx_sample = _group(entry, "sample", "NXsample")
        _text(nx_sample, "name", sample)
        for name, email, affiliation in users:
            user = _group(entry, "user_" + "".join(name.split()), "NXuser")
            for field, value in (("name", name), ("email", email), ("affiliation", affiliation),
                                 ("facility_user_id", name.lower().replace(" ", ""))):
                _text(user, field, value)
        _write_event_data(_group(nx_instrument, "detector", "NXdetector"), events, start_time)
        _write_log(_group(nx_instrument, "sample_temperature", "NXlog"), start_time)
        if plots:
            _write_plots(f, entry, run_number)
    os.replace(temporary, target)
    return target.stat().st_size


def _write_event_data(detector: h5py.Group, events: int, start_time: float) -> None:
    data = _group(detector, "events", "NXevent_data")
    pulses = max(events // 1000, 1)
    kwargs = {"chunks": True, "maxshape": (None,)}
    event_id = data.create_dataset("event_id", shape=(events,), dtype="uint32", **kwargs)
    offset = data.create_dataset("event_time_offset", shape=(events,), dtype="uint32", **kwargs)
    offset.attrs["units"] = "ns"
    rng = np.random.default_rng(events)
    for first in range(0, events, EVENT_CHUNK):
        n = min(EVENT_CHUNK, events - first)
        event_id[first:first + n] = rng.integers(0, 100_000, n, dtype=np.uint32)
        offset[first:first + n] = rng.integers(0, 71_000_000, n, dtype=np.uint32)
    zero = data.create_dataset("event_time_zero", data=int(start_time * 1e9) + np.arange(pulses, dtype=np.uint64)
                               * 71_428_571)
    zero.attrs["units"] = "ns"
    data.create_dataset("event_index", data=np.arange(pulses, dtype=np.uint64) * (events // pulses))


IMAGE_PIXELS = (256, 320)  # rows (y), columns (x) of the detector image
SPECTRUM_BINS = 500


def _write_plots(f: h5py.File, entry: h5py.Group, run_number: int) -> None:
    """A detector image (a Debye-Scherrer ring on a noisy background, the ring's radius the run's
    own) and a time-of-flight spectrum (Bragg peaks), each an NXdata with signal, axes and units;
    the "default" attributes lead from the root to the image."""
    rng = np.random.default_rng(run_number)
    rows, columns = IMAGE_PIXELS
    y = np.linspace(-80.0, 80.0, rows)
    x = np.linspace(-100.0, 100.0, columns)
    radius = np.hypot(*np.meshgrid(x, y))
    ring = 40 + 5 * (run_number % 6)
    counts = rng.poisson(5 + 400 * np.exp(-((radius - ring) / 4) ** 2) + 60 * np.exp(-(radius / 12) ** 2))
    f.attrs["default"] = "entry"
    entry.attrs["default"] = "detector_image"
    image = _group(entry, "detector_image", "NXdata")
    image.attrs["signal"] = "counts"
    image.attrs["axes"] = ["y", "x"]
    image.create_dataset("counts", data=counts.astype(np.uint32), chunks=True, compression="gzip")
    for name, values in (("y", y), ("x", x)):
        image.create_dataset(name, data=values).attrs["units"] = "mm"
    tof = np.linspace(1000.0, 71000.0, SPECTRUM_BINS)
    peaks = sum(h * np.exp(-((tof - c) / 600) ** 2) for c, h in ((18000, 300), (26000, 800), (41000, 500)))
    spectrum = _group(entry, "spectrum", "NXdata")
    spectrum.attrs["signal"] = "intensity"
    spectrum.attrs["axes"] = ["time_of_flight"]
    spectrum.create_dataset("intensity", data=rng.poisson(20 + peaks).astype(np.float64)).attrs["units"] = "counts"
    spectrum.create_dataset("time_of_flight", data=tof).attrs["units"] = "us"


def write_large_plot(path: str, shape: tuple[int, int], chunk: tuple[int, int]) -> int:
    """A NeXus file whose default plot is a float32 image of ``shape``, every chunk written already
    compressed (four values in turn): gigabytes of signal in a file of a few MB, for the thumbnail's
    tests and benchmark. Returns the signal's size in bytes."""
    import zlib

    with h5py.File(path, "w") as f:
        f.attrs["default"] = "entry"
        entry = _group(f, "entry", "NXentry")
        entry.attrs["default"] = "data"
        data = _group(entry, "data", "NXdata")
        data.attrs["signal"] = "signal"
        signal = data.create_dataset("signal", shape=shape, dtype="float32", chunks=chunk, compression="gzip")
        compressed = [zlib.compress(np.full(chunk, value, dtype="float32").tobytes()) for value in range(4)]
        for row in range(0, shape[0], chunk[0]):
            for column in range(0, shape[1], chunk[1]):
                signal.id.write_direct_chunk((row, column), compressed[(row // chunk[0] + column // chunk[1]) % 4])
    return int(np.prod(shape)) * 4


def _write_log(log: h5py.Group, start_time: float) -> None:
    time_ns = log.create_dataset("time", data=int(start_time * 1e9) + np.arange(60, dtype=np.uint64) * 10**9)
    time_ns.attrs["units"] = "ns"
    value = log.create_dataset("value", data=np.linspace(290.0, 300.0, 60))
    value.attrs["units"] = "K"


# -- one job as the real writer runs it -------------------------------------------

JOB_FINISHED, JOB_FAILS_TO_START, JOB_ABANDONED = "finished", "failed to start", "abandoned"


@dataclass
class Topics:
    pool: str  # where the experiment control sends the pl72
    status: str  # where a refused start is answered
    control: str  # the instrument's: the echo, answ, x5f2, 6s4t, wrdn


@dataclass
class Job:
    """One run's messages, in the order the writer sends them, sent one step at a time."""

    job_id: str
    path: Path
    topics: Topics
    steps: list  # (topic, payload) or a callable writing the file
    fate: str
    size: int = 0


def realistic_job(*, job_id: str, path: Path, topics: Topics, run_start: bytes, finished: bytes, writer: str,
                  write_file, heartbeats: int, fate: str = JOB_FINISHED) -> Job:
    """pl72 to the pool; on the control topic its echo, answ, x5f2 heartbeats, [the file], 6s4t, answ, wrdn."""
    if fate == JOB_FAILS_TO_START:
        return Job(job_id, path, topics, [(topics.pool, run_start), (topics.status, make_answer(
            job_id=job_id, writer=writer, failed=True, message="cannot open the file: no such folder"))], fate)
    beat = make_heartbeat(writer=writer, job_id=job_id, file_name=str(path))
    steps = [(topics.pool, run_start), (topics.control, run_start),
             (topics.control, make_answer(job_id=job_id, writer=writer))]
    if fate == JOB_ABANDONED:  # the writer dies while writing: two heartbeats, then nothing
        return Job(job_id, path, topics, steps + [(topics.control, beat)] * 2, fate)
    steps += [(topics.control, beat)] * heartbeats + [write_file]
    steps += [(topics.control, serialise_6s4t(job_id=job_id, run_name="", service_id=writer,
                                              command_id=str(uuid.uuid4()), stop_time=int(time.time() * 1000))),
              (topics.control, make_answer(job_id=job_id, writer=writer, action=ActionType.SetStopTime)),
              (topics.control, finished)]
    return Job(job_id, path, topics, steps, fate)


def ensure_topics(bootstrap: str, names: set[str], partitions: int) -> None:
    """Create the topics not there yet, with this many partitions."""
    from confluent_kafka.admin import NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    missing = names - set(admin.list_topics(timeout=10).topics)
    if missing:
        for future in admin.create_topics([NewTopic(n, num_partitions=partitions) for n in missing]).values():
            future.result(15)


# -- the command line -------------------------------------------------------------


def check_broker(bootstrap: str, timeout_s: float) -> Optional[str]:
    """None if the broker answers a metadata request in time, else why not."""
    try:
        AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(timeout=timeout_s)
        return None
    except KafkaException as e:
        return e.args[0].str()


def parse_arguments(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="A file-writer stand-in: for each run, send a pl72 run start, write a real NeXus file with "
        "h5py, and send a wrdn finished writing, as the ESS experiment control and file writer do: by default "
        "unkeyed, the pl72 to a pool topic and echoed with answ, x5f2, 6s4t, answ and wrdn on the instrument's "
        "control topic.",
        epilog="Prints one line per run: job id, file, size in bytes (or what became of a job without a file).",
    )
    parser.add_argument("--broker", default="localhost:9092", help="Kafka bootstrap servers (default %(default)s)")
    parser.add_argument("--count", type=int, default=1, help="how many runs that finish (default %(default)s)")
    parser.add_argument("--rate", type=float, default=0, help="runs started per second; 0 for as fast as possible")
    parser.add_argument("--output-dir", default="state/nexus-files",
                        help="where the files go (made absolute; default %(default)s, which git ignores in a checkout)")
    parser.add_argument("--instrument", default="DREAM",
                        help="instrument name; several comma-separated, runs go to each in turn (default %(default)s)")
    parser.add_argument("--proposal", default="123456", help="proposal id (default %(default)s)")
    parser.add_argument("--events", type=int, default=1000, help="detector events per file, to make files large")
    parser.add_argument("--metadata", default="{}", help="the run start's metadata, a JSON object (default {})")
    parser.add_argument("--error", action="store_true", help="finish every run with error_encountered=true")
    parser.add_argument("--run-start", type=int, default=1, help="first run number (default %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    real = parser.add_argument_group("as a real deployment (the default)")
    real.add_argument("--pool-topic", default="ess_filewriter_pool", help="the job pool (default %(default)s)")
    real.add_argument("--status-topic", default="ess_filewriter_status",
                      help="where a refused start is answered (default %(default)s)")
    real.add_argument("--control-topic", default="",
                      help="the instrument's control topic (default <instrument>_filewriter, one per instrument)")
    real.add_argument("--overlap", type=int, default=1, help="runs being written at once (default %(default)s)")
    real.add_argument("--heartbeats", type=int, default=6, help="x5f2 heartbeats per run (default %(default)s)")
    real.add_argument("--failed-starts", type=int, default=0,
                      help="also this many jobs whose start the writer refuses (answ failure, no file)")
    real.add_argument("--abandoned", type=int, default=0,
                      help="also this many jobs whose writer dies while writing (heartbeats stop, no wrdn)")
    real.add_argument("--partitions", type=int, default=0,
                      help="create the topics not there yet with this many partitions (default: leave them)")
    keyed = parser.add_argument_group("the old keyed mode")
    keyed.add_argument("--keyed", action="store_true",
                       help="pl72 and wrdn on --topic only, keyed by job id, one run after the other")
    keyed.add_argument("--topic", default="command_channel", help="the topic of --keyed (default %(default)s)")
    keyed.add_argument("--noise", action="store_true",
                       help="with --keyed, interleave answ, x5f2, 6s4t messages and undecodable junk")
    args = parser.parse_args(argv)
    try:
        if not isinstance(json.loads(args.metadata), dict):
            parser.error("--metadata must be a JSON object")
    except json.JSONDecodeError as e:
        parser.error(f"--metadata is not valid JSON: {e.msg}")
    if min(args.count, args.events, args.rate, args.heartbeats, args.failed_starts, args.abandoned,
           args.partitions) < 0:
        parser.error("--count, --events, --rate, --heartbeats, --failed-starts, --abandoned and --partitions "
                     "cannot be negative")
    if args.overlap < 1:
        parser.error("--overlap must be at least 1")
    args.instruments = [name.strip() for name in args.instrument.split(",") if name.strip()]
    if not args.instruments:
        parser.error("--instrument: give at least one name")
    if args.control_topic and len(args.instruments) > 1:
        parser.error("--control-topic names one topic; with several instruments each has <instrument>_filewriter")
    return args


class Sender:
    """Produces to Kafka and remembers what was not delivered."""

    def __init__(self, bootstrap: str):
        # No sticky partitioning: each unkeyed message to a partition of its own choosing, as spread as it can be.
        self.producer = Producer({"bootstrap.servers": bootstrap, "log_level": 0, "linger.ms": 5,
                                  "sticky.partitioning.linger.ms": 0})
        self.failures: list[str] = []

    def send(self, topic: str, payload: bytes, key: Optional[str] = None) -> None:
        self.producer.produce(topic, payload, key=key.encode() if key else None, on_delivery=self._delivered)
        self.producer.poll(0)

    def _delivered(self, error, _message) -> None:
        if error is not None:
            self.failures.append(str(error))

    def finish(self) -> int:
        left = self.producer.flush(15)
        if left or self.failures:
            print(f"producer: {left + len(self.failures)} messages not delivered: "
                  f"{self.failures[:3] or 'flush timed out'}", file=sys.stderr)
            return 1
        return 0


@dataclass
class Run:
    job_id: str
    path: Path
    instrument: str
    run_number: int
    title: str


def plan_runs(args: argparse.Namespace) -> list[tuple[Run, str]]:
    """Every run with its fate: those that finish, then the refused starts and the abandoned jobs spread among them."""
    fates = [JOB_FINISHED] * args.count + [JOB_FAILS_TO_START] * args.failed_starts + [JOB_ABANDONED] * args.abandoned
    random.shuffle(fates)
    output = Path(args.output_dir).resolve()
    runs = []
    for i, fate in enumerate(fates):
        instrument, run_number = args.instruments[i % len(args.instruments)], args.run_start + i
        path = output / f"{instrument.lower()}_{args.proposal}_{run_number:08d}.hdf"
        runs.append((Run(str(uuid.uuid4()), path, instrument, run_number, f"{instrument} run {run_number}"), fate))
    return runs


def run_messages(args: argparse.Namespace, run: Run, control_topic: str) -> tuple[bytes, bytes]:
    run_start = make_run_start(job_id=run.job_id, filename=str(run.path), run_name=f"run_{run.run_number:08d}",
                               instrument=run.instrument, proposal=args.proposal, title=run.title,
                               metadata=args.metadata, control_topic=control_topic, broker=args.broker,
                               run_number=run.run_number)
    finished = make_finished_writing(job_id=run.job_id, file_name=str(run.path), metadata=args.metadata,
                                     error=args.error, message="the file writer failed (--error)" if args.error
                                     else None, writer_id=WRITER)
    return run_start, finished


def write_run_file(args: argparse.Namespace, run: Run) -> int:
    return write_nexus_file(str(run.path), job_id=run.job_id, instrument=run.instrument, proposal=args.proposal,
                            run_number=run.run_number, title=run.title, events=args.events)


def report(args: argparse.Namespace, job_id: str, path: Path, what: str) -> None:
    if not args.quiet:
        print(f"{job_id}  {path}  {what}", flush=True)


def produce_keyed(args: argparse.Namespace, sender: Sender) -> None:
    """The old mode: per run pl72, [noise], the file, wrdn, all keyed by job id on one topic."""
    for run, _ in plan_runs(args):
        started = time.monotonic()
        run_start, finished = run_messages(args, run, args.control_topic)
        sender.send(args.topic, run_start, run.job_id)
        for payload in make_noise(job_id=run.job_id) if args.noise else []:
            sender.send(args.topic, payload)
        size = write_run_file(args, run)
        sender.send(args.topic, finished, run.job_id)
        report(args, run.job_id, run.path, f"{size} bytes")
        if args.rate > 0:
            time.sleep(max(0.0, 1 / args.rate - (time.monotonic() - started)))


def produce_realistic(args: argparse.Namespace, sender: Sender) -> None:
    """Up to --overlap jobs at once, one step of a job chosen at random after the other, every message unkeyed."""
    waiting = [realistic_job_of(args, run, fate) for run, fate in plan_runs(args)]
    waiting.reverse()
    open_jobs: list[Job] = []
    next_start = time.monotonic()
    while waiting or open_jobs:
        if waiting and len(open_jobs) < args.overlap and time.monotonic() >= next_start:
            open_jobs.append(waiting.pop())
            next_start = time.monotonic() + (1 / args.rate if args.rate > 0 else 0)
        if not open_jobs:
            time.sleep(max(0.0, next_start - time.monotonic()))
            continue
        job = random.choice(open_jobs)
        step = job.steps.pop(0)
        if callable(step):
            job.size = step()
        else:
            sender.send(*step)
        if not job.steps:
            open_jobs.remove(job)
            report(args, job.job_id, job.path, f"{job.size} bytes" if job.fate == JOB_FINISHED else job.fate)


def realistic_job_of(args: argparse.Namespace, run: Run, fate: str) -> Job:
    control = args.control_topic or f"{run.instrument.lower()}_filewriter"
    run_start, finished = run_messages(args, run, control)
    return realistic_job(job_id=run.job_id, path=run.path, topics=Topics(args.pool_topic, args.status_topic, control),
                         run_start=run_start, finished=finished, writer=WRITER,
                         write_file=lambda: write_run_file(args, run), heartbeats=args.heartbeats, fate=fate)


WRITER = service_id()  # one writer process sends every wrdn of one producer run


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_arguments(argv)
    problem = check_broker(args.broker, timeout_s=5)
    if problem:
        print(f"producer: cannot reach the Kafka broker at {args.broker}: {problem}", file=sys.stderr)
        return 1
    if args.partitions:
        topics = {args.topic} if args.keyed else {args.pool_topic, args.status_topic, *(
            [args.control_topic] if args.control_topic else [f"{i.lower()}_filewriter" for i in args.instruments])}
        ensure_topics(args.broker, topics, args.partitions)
    sender = Sender(args.broker)
    (produce_keyed if args.keyed else produce_realistic)(args, sender)
    if sender.finish():
        return 1
    if not args.quiet:
        topics = args.topic if args.keyed else f"{args.pool_topic} and the control topics"
        print(f"producer: {args.count} runs sent to {topics} at {args.broker}, "
              f"their files in {Path(args.output_dir).resolve()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
