#!/usr/bin/env python3
"""The ingestor end to end, and the floor under it.

    .venv/bin/python benchmarks/bench_end_to_end.py [--runs 500] [--delays-ms 0,20] [--latency-runs 100]

For each delay per SciCat request (0 ms, and 20 ms like a real backend):
1. end to end: a burst of N finished files (pl72 + wrdn each) through a real
   Kafka-protocol broker, scicat_ingestor.py as a subprocess, and the strict
   SciCat stand-in: files per second, time per file in each stage, CPU per
   file, peak resident memory; then files sent at half the burst's rate, one
   at a time: latency from the wrdn produced to the file list created in SciCat;
2. the floor: the same login + dataset POST + origdatablock POST for the same
   N payloads by a bare requests.Session loop against the same stand-in; the
   ratio ingestor time / bare time is the price of everything the ingestor adds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from harness import (FAST_CONSUMER, add_common_arguments, kafka, machine_line, measure_bare_floor, measure_ingestors,
                     payloads_for, percentile, table, verdict, write_runs)

# The ingestor's settings for the benchmark: sha256 checksums, and deterministic pids (the
# recommended way to never make a dataset twice).
OVERRIDES = {"dataset.pid_prefix": "20.500.12269"}
RATIO_TARGETS = {0.0: 1.5, 0.020: 1.10}  # ingestor / bare, by delay per request
STAGES = ("decode", "metadata read", "checksum", "picture", "SciCat HTTP", "building the payloads", "Kafka poll and commit",
          "audit trail", "log lines", "other")
# The audit trail's durations_s of a file, by stage.
WALL_STAGES = {"decode": "decode_s", "metadata read": "metadata_s", "checksum": "checksum_s",
               "picture": "thumbnail_s", "SciCat HTTP": "scicat_s"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=500, help="files in the burst (500)")
    parser.add_argument("--delays-ms", default="0,20", help="SciCat delays per request to measure (0,20)")
    parser.add_argument("--latency-runs", type=int, default=100, help="files sent at a steady pace (100)")
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True,
                        help="CPU by stage from py-spy samples (needs py-spy and leave to ptrace; default: on)")
    add_common_arguments(parser)
    args = parser.parse_args()
    delays = [float(ms) / 1000 for ms in args.delays_ms.split(",")]
    print(machine_line())
    print(f"{args.runs} files of about 35 kB in a burst, {args.latency_runs} at a steady pace; "
          f"checksum sha256; dataset.pid_prefix set; kafka.consumer {FAST_CONSUMER} (as in the tests)")

    speed, stages, floor = [], [], []
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work, kafka(args.kafka) as broker:
        for delay in delays:
            where = Path(work) / f"delay-{delay * 1000:.0f}ms"
            burst = write_runs(where / "burst", args.runs)
            figures = measure_ingestors(broker, where, burst, delay_s=delay, latency_runs=args.latency_runs,
                                        overrides=OVERRIDES, profile=args.profile)
            latency = [f"{percentile(figures.latencies_s, p) * 1000:.0f}" if figures.latencies_s else "-"
                       for p in (0.50, 0.95, 0.99)]
            speed.append((f"{delay * 1000:.0f} ms", figures.files, f"{figures.files_per_s:.1f}", *latency,
                          f"{figures.peak_rss_mb[0]:.0f}"))
            wall = {name: figures.stage_s.get(key, 0.0) for name, key in WALL_STAGES.items()}
            for what, by_stage in (("wall", wall), ("CPU, main thread", figures.cpu_stage_s)):
                if by_stage:
                    stages.append((f"{delay * 1000:.0f} ms", what,
                                   *(f"{by_stage[name] * 1000:.2f}" if name in by_stage else "-" for name in STAGES),
                                   f"{sum(by_stage.values()) * 1000:.1f}"))
            stages.append((f"{delay * 1000:.0f} ms", "CPU, process", *("" for _ in STAGES),
                           f"{figures.cpu_s_per_file * 1000:.1f}"))

            bare = measure_bare_floor(payloads_for(burst, where, OVERRIDES), delay)
            ratio = figures.seconds / bare.seconds
            target = RATIO_TARGETS.get(delay)
            floor.append((f"{delay * 1000:.0f} ms", f"{figures.seconds:.1f}", f"{bare.seconds:.1f}",
                          f"{bare.files_per_s:.1f}", f"{bare.cpu_s_per_file * 1000:.1f}", f"{ratio:.2f}",
                          f"<= {target}: {verdict(ratio <= target)}" if target else "-"))

    table("1. end to end: burst throughput, and latency at half that rate",
          ("SciCat delay", "files", "files/s", "p50 ms", "p95 ms", "p99 ms", "peak RSS MB"), speed,
          "latency: from the wrdn produced (its Kafka timestamp) to the origdatablock created in SciCat")
    table("2. milliseconds per file in each stage",
          ("SciCat delay", "", *STAGES, "total"), stages,
          "wall: the audit trail's durations; CPU, main thread: py-spy samples while on the CPU (--no-profile "
          "leaves them out); CPU, process: user + system of all threads, librdkafka's too")
    table("3. the floor: the same requests from a bare requests.Session loop",
          ("SciCat delay", "ingestor s", "bare s", "bare files/s", "bare CPU ms/file", "ratio", "target"), floor,
          "ratio: the ingestor's burst time / the bare loop's time for the same payloads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
