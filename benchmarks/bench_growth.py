#!/usr/bin/env python3
"""How the ingestor's costs grow: file size, checksums, months of messages.

    .venv/bin/python benchmarks/bench_growth.py [--checksum-mb 1024] [--messages 1000,10000,50000]
        [--heartbeats 200000] [--work-dir DIR]

Prints four tables, each with its target:
1. metadata read time for NeXus files of 1 MB .. 4 GB (sparse data arrays,
   made in milliseconds: the size is real, the disk blocks are not);
2. checksum throughput per algorithm against a plain read (`cat > /dev/null`),
   on a file of random bytes in the page cache;
3. resident memory after 1k, 10k and 50k messages, run starts that never get
   their wrdn included;
4. how many x5f2 heartbeats per second the loop passes over: in this process
   (decode and dispatch alone), and through Kafka (scicat_ingestor.py as a
   subprocess on a real broker, poll and commit included).
All but the last run in this process on the ingestor's own functions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import h5py
import numpy as np
from h5py import h5d, h5p, h5s, h5t
from streaming_data_types.finished_writing_wrdn import serialise_wrdn
from streaming_data_types.run_start_pl72 import serialise_pl72
from streaming_data_types.status_x5f2 import serialise_x5f2

from harness import add_common_arguments, kafka, machine_line, measure_pass_over, memory_mb, si, table, verdict

MB = 1024 * 1024


def write_nexus_with_sparse_data(path: Path, data_bytes: int) -> None:
    """An ESS-like /entry with users, and one uint32 event array of ``data_bytes``."""
    with h5py.File(path, "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        for name, value in {"title": "bench", "experiment_identifier": "123456", "entry_identifier": "42",
                            "start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-01T01:00:00Z",
                            "experiment_description": "growth benchmark", "definition": "NXtomo"}.items():
            entry[name] = value.encode()
        instrument = entry.create_group("instrument")
        instrument.attrs["NX_class"] = "NXinstrument"
        instrument["name"] = b"DREAM"
        for i in range(10):
            user = entry.create_group(f"user_{i}")
            user.attrs["NX_class"] = "NXuser"
            user["name"] = f"User {i}".encode()
            user["email"] = f"user{i}@example.org".encode()
        detector = instrument.create_group("detector")
        detector.attrs["NX_class"] = "NXevent_data"
        # Allocated at creation and never filled: a file of the full size in no time.
        dcpl = h5p.create(h5p.DATASET_CREATE)
        dcpl.set_alloc_time(h5d.ALLOC_TIME_EARLY)
        dcpl.set_fill_time(h5d.FILL_TIME_NEVER)
        space = h5s.create_simple((max(data_bytes // 4, 1),))
        h5d.create(detector.id, b"event_id", h5t.NATIVE_UINT32, space, dcpl=dcpl)


def median_seconds(action, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_metadata_read(work: Path) -> None:
    rows, times = [], {}
    for label, size in (("1 MB", MB), ("100 MB", 100 * MB), ("1 GB", 1024 * MB), ("4 GB", 4096 * MB)):
        path = work / f"growth-{label.replace(' ', '')}.hdf"
        write_nexus_with_sparse_data(path, size)
        times[label] = median_seconds(lambda p=str(path): si.read_nexus_metadata(p), 30)
        rows.append((label, f"{os.path.getsize(path) / MB:,.0f}", f"{times[label] * 1000:.2f}"))
        path.unlink()
    ratio = times["4 GB"] / times["1 MB"]
    table("1. metadata read time (median of 30)", ("file", "size MB", "ms"), rows,
          f"4 GB / 1 MB = {ratio:.2f} (target <= 1.5: {verdict(ratio <= 1.5)})")


def bench_checksums(work: Path, size_mb: int) -> None:
    path = work / "random.bin"
    chunk = np.random.default_rng(1).integers(0, 256, size=64 * MB, dtype=np.uint8).tobytes()
    with open(path, "wb") as f:
        for _ in range(max(size_mb // 64, 1)):
            f.write(chunk)
    size = os.path.getsize(path)

    def cat() -> None:
        subprocess.run(f"cat '{path}' > /dev/null", shell=True, check=True)

    def storage() -> None:
        # O_DIRECT: what the disk gives a file not in the page cache, as a file just written on
        # a file server is for the ingestor's host.
        subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=4M", "iflag=direct"], check=True,
                       capture_output=True)

    cat()  # into the page cache: both sides then read from memory
    plain = min(median_seconds(cat, 3), median_seconds(cat, 3))
    try:
        from_storage = median_seconds(storage, 3)
    except subprocess.CalledProcessError:  # a file system without O_DIRECT (tmpfs)
        from_storage = float("nan")
    rows = [("cat > /dev/null", f"{size / MB / plain:,.0f}", "100%", f"{from_storage / plain:.0%}"),
            ("dd iflag=direct", f"{size / MB / from_storage:,.0f}", f"{plain / from_storage:.0%}", "100%")]
    verdicts = []
    for algorithm in ("md5", "sha256", "blake2b"):
        seconds = median_seconds(lambda a=algorithm: si.compute_checksum(str(path), a), 3)
        rows.append((algorithm, f"{size / MB / seconds:,.0f}", f"{plain / seconds:.0%}",
                     f"{from_storage / seconds:.0%}"))
        verdicts.append(f"{algorithm} {verdict(plain / seconds >= 0.8)}")
    path.unlink()
    table(f"2. checksum throughput, {size / MB:,.0f} MB file (hashed from the page cache)",
          ("read by", "MB/s", "of cat", "of storage"), rows,
          "target >= 80% of the plain read (cat, from the page cache): " + ", ".join(verdicts)
          + "; 'of storage': against the disk without the page cache (dd iflag=direct)")


def quiet_ingestor(work: Path) -> si.Ingestor:
    config = si.parse_config({
        "kafka": {"bootstrap_servers": "unused:9092"},
        "scicat": {"host": "http://unused/api/v3"},
        "dataset": {"contact_email": "dm@example.org", "creation_location": "/ESS/X", "ownable": {"ownerGroup": "g"}},
        "files": {"wait_s": 0},
        "spool": {"directory": str(work / "spool")},
        "audit": {"file": ""},
        "options": {"dry_run": True},
    })
    si.logger.setLevel("CRITICAL")
    return si.Ingestor(config)


def realistic_run_start(i: int) -> bytes:
    # Real nexus_structure JSON runs to megabytes; 50 kB keeps the benchmark quick and still shows retention.
    structure = {"children": [{"name": "entry", "type": "group", "children": [
        {"module": "dataset", "config": {"name": "experiment_identifier", "values": "123456"}},
        {"module": "dataset", "config": {"name": "title", "values": f"run {i}"}},
        *({"module": "f144", "config": {"source": f"motor{k}", "topic": "motion", "pad": "x" * 400}}
          for k in range(100)),
    ]}]}
    return serialise_pl72(job_id=f"job-{i}", filename=f"/data/run_{i}.hdf", run_name=f"run {i}",
                          nexus_structure=json.dumps(structure), metadata='{"proposal_id": "123456"}')


def bench_memory(work: Path, marks_at: list[int]) -> None:
    ingestor = quiet_ingestor(work)
    heartbeat = serialise_x5f2("kafka-to-nexus", "1.0", "fw-1", "host", 1, 1000, "{}")
    broken = serialise_wrdn(service_id="fw", job_id="x", error_encountered=True, file_name="/data/x.hdf",
                            message="writer error")
    rows, marks = [], {}
    sent = 0
    for target in marks_at:
        while sent < target:
            # Of ten messages: 3 run starts never finished, 6 heartbeats, 1 failed file (spooled).
            kind = sent % 10
            payload = realistic_run_start(sent) if kind < 3 else broken if kind == 9 else heartbeat
            ingestor.handle(si.Delivery(payload, "t", 0, sent))
            sent += 1
        marks[target] = memory_mb()
        rows.append((f"{target:,}", f"{marks[target]:.1f}", len(ingestor.run_starts)))
    growth = marks[marks_at[-1]] - marks[marks_at[0]]
    table("3. resident memory while handling messages", ("messages", "RSS MB", "run starts kept"), rows,
          f"growth {marks_at[0]:,} -> {marks_at[-1]:,}: {growth:+.1f} MB "
          f"(target < 20 MB: {verdict(growth < 20)})")


def bench_pass_over(work: Path, count: int, bootstrap: Optional[str]) -> None:
    ingestor = quiet_ingestor(work)
    heartbeat = serialise_x5f2("kafka-to-nexus", "1.0", "fw-1", "host", 1, 1000, "{}")
    started = time.perf_counter()
    for offset in range(count):
        ingestor.handle(si.Delivery(heartbeat, "t", 0, offset))
    rates = {"in process: decode + dispatch": count / (time.perf_counter() - started)}
    with kafka(bootstrap) as broker:
        rates["through Kafka: poll, decode, dispatch, commit"] = measure_pass_over(broker, work, heartbeat, count)
    table("4. passing over x5f2 heartbeats", ("where", "messages", "per second", "target >= 20,000/s"),
          [(where, f"{count:,}", f"{rate:,.0f}", verdict(rate >= 20_000)) for where, rate in rates.items()])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checksum-mb", type=int, default=1024, help="size of the checksum test file (1024)")
    parser.add_argument("--messages", default="1000,10000,50000",
                        help="message counts at which to read the resident memory (1000,10000,50000)")
    parser.add_argument("--heartbeats", type=int, default=200_000, help="heartbeats to pass over (200000)")
    add_common_arguments(parser)
    args = parser.parse_args()
    print(machine_line())
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work:
        bench_metadata_read(Path(work))
        bench_checksums(Path(work), args.checksum_mb)
        bench_memory(Path(work), [int(n) for n in args.messages.split(",")])
        bench_pass_over(Path(work), args.heartbeats, args.kafka)
    return 0


if __name__ == "__main__":
    sys.exit(main())
