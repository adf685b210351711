#!/usr/bin/env python3
"""A file-writer stand-in: run start, a real NeXus file, finished writing.

Behaves like the ESS file writer (kafka-to-nexus) for one or many runs, so the
ingestor can be driven without a facility:

1. sends a pl72 run start (job id, absolute file name, run name, instrument,
   start time, a small nexus_structure, metadata);
2. writes the NeXus file with h5py in the layout real ESS files have, to a
   temporary name first, then renamed into place (the writer closes the file
   before it reports);
3. sends a wrdn finished writing for the same job, with the run start's
   metadata copied, as the writer does.

Both messages are keyed by job id, as a well-configured writer keys them, so
they land on the same partition and arrive in order.

    ./producer.py --broker localhost:9092 --count 5 --noise --output-dir /tmp/nexus
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
                     events: int = 1000) -> int:
    """Write an ESS-like NeXus file; returns its size in bytes."""
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


def _write_log(log: h5py.Group, start_time: float) -> None:
    time_ns = log.create_dataset("time", data=int(start_time * 1e9) + np.arange(60, dtype=np.uint64) * 10**9)
    time_ns.attrs["units"] = "ns"
    value = log.create_dataset("value", data=np.linspace(290.0, 300.0, 60))
    value.attrs["units"] = "K"


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
        "h5py, and send a wrdn finished writing, as the ESS file writer does.",
        epilog="Prints one line per run: job id, file, size in bytes.",
    )
    parser.add_argument("--broker", default="localhost:9092", help="Kafka bootstrap servers (default %(default)s)")
    parser.add_argument("--topic", default="command_channel", help="topic for pl72 and wrdn (default %(default)s)")
    parser.add_argument("--count", type=int, default=1, help="how many runs (default %(default)s)")
    parser.add_argument("--rate", type=float, default=0, help="runs per second; 0 for as fast as possible")
    parser.add_argument("--output-dir", default="state/nexus-files",
                        help="where the files go (made absolute; default %(default)s, which git ignores in a checkout)")
    parser.add_argument("--instrument", default="DREAM", help="instrument name (default %(default)s)")
    parser.add_argument("--proposal", default="123456", help="proposal id (default %(default)s)")
    parser.add_argument("--events", type=int, default=1000, help="detector events per file, to make files large")
    parser.add_argument("--metadata", default="{}", help="the run start's metadata, a JSON object (default {})")
    parser.add_argument("--error", action="store_true", help="finish every run with error_encountered=true")
    parser.add_argument("--noise", action="store_true",
                        help="interleave answ, x5f2, 6s4t messages and undecodable junk, as a busy topic has")
    parser.add_argument("--control-topic", default="", help="control_topic named in the run start")
    parser.add_argument("--run-start", type=int, default=1, help="first run number (default %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    args = parser.parse_args(argv)
    try:
        if not isinstance(json.loads(args.metadata), dict):
            parser.error("--metadata must be a JSON object")
    except json.JSONDecodeError as e:
        parser.error(f"--metadata is not valid JSON: {e.msg}")
    if args.count < 0 or args.events < 0 or args.rate < 0:
        parser.error("--count, --events and --rate cannot be negative")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_arguments(argv)
    problem = check_broker(args.broker, timeout_s=5)
    if problem:
        print(f"producer: cannot reach the Kafka broker at {args.broker}: {problem}", file=sys.stderr)
        return 1
    producer = Producer({"bootstrap.servers": args.broker, "log_level": 0, "linger.ms": 5})
    failures: list[str] = []

    def on_delivery(error, _message) -> None:
        if error is not None:
            failures.append(str(error))

    def send(payload: bytes, key: Optional[str]) -> None:
        producer.produce(args.topic, payload, key=key.encode() if key else None, on_delivery=on_delivery)
        producer.poll(0)

    output = Path(args.output_dir).resolve()
    writer = service_id()
    for i in range(args.count):
        started = time.monotonic()
        run_number = args.run_start + i
        job_id = str(uuid.uuid4())
        path = output / f"{args.instrument.lower()}_{args.proposal}_{run_number:08d}.hdf"
        title = f"{args.instrument} run {run_number}"
        send(make_run_start(job_id=job_id, filename=str(path), run_name=f"run_{run_number:08d}",
                            instrument=args.instrument, proposal=args.proposal, title=title, metadata=args.metadata,
                            control_topic=args.control_topic, broker=args.broker, run_number=run_number), job_id)
        if args.noise:
            for payload in make_noise(job_id=job_id):
                send(payload, None)
        size = write_nexus_file(str(path), job_id=job_id, instrument=args.instrument, proposal=args.proposal,
                                run_number=run_number, title=title, events=args.events)
        send(make_finished_writing(job_id=job_id, file_name=str(path), metadata=args.metadata, error=args.error,
                                   message="the file writer failed (--error)" if args.error else None,
                                   writer_id=writer), job_id)
        if not args.quiet:
            print(f"{job_id}  {path}  {size} bytes", flush=True)
        if args.rate > 0:
            time.sleep(max(0.0, 1 / args.rate - (time.monotonic() - started)))
    left = producer.flush(15)
    if left or failures:
        print(f"producer: {left + len(failures)} messages not delivered: {failures[:3] or 'flush timed out'}",
              file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"producer: {args.count} runs sent to {args.topic} at {args.broker}, their files in {output}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
