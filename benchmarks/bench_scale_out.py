#!/usr/bin/env python3
"""Scale out: 1, 2 and 3 ingestors sharing the work through one Kafka consumer group.

    .venv/bin/python benchmarks/bench_scale_out.py [--runs 500] [--instances 1,2,3] [--partitions 6] [--delay-ms 20]

Each count of instances gets a fresh topic of --partitions partitions, one
consumer group, and the SciCat stand-in with --delay-ms per request. A burst
of N finished files (each job's pl72 and wrdn on one partition, keyed by job
id) is timed from the first message produced to the last file list created.
Prints files per second for each count, the speed-up over one instance, and
where the limit is: the CPU the ingestors and the stand-in use, against the
machine's cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from harness import add_common_arguments, kafka, machine_line, measure_ingestors, table, write_runs

OVERRIDES = {"dataset.pid_prefix": "20.500.12269"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=500, help="files in each burst (500)")
    parser.add_argument("--instances", default="1,2,3", help="ingestor counts to measure (1,2,3)")
    parser.add_argument("--partitions", type=int, default=6,
                        help="partitions of the topic (6: shared evenly by 1, 2 or 3 instances)")
    parser.add_argument("--delay-ms", type=float, default=20, help="SciCat delay per request (20)")
    add_common_arguments(parser)
    args = parser.parse_args()
    print(machine_line())
    print(f"{args.runs} files of about 35 kB per burst; topic of {args.partitions} partitions; "
          f"SciCat stand-in {args.delay_ms:.0f} ms per request; checksum sha256; dataset.pid_prefix set")

    rows, single = [], None
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work, kafka(args.kafka) as broker:
        for count in (int(n) for n in args.instances.split(",")):
            where = Path(work) / f"instances-{count}"
            burst = write_runs(where / "burst", args.runs)
            figures = measure_ingestors(broker, where, burst, delay_s=args.delay_ms / 1000,
                                        instances=count, partitions=args.partitions, overrides=OVERRIDES)
            single = single or figures.files_per_s
            # Cores kept busy during the burst: CPU per file times files per second.
            ingestors_busy = figures.files_per_s * figures.cpu_s_per_file
            standin_busy = figures.files_per_s * figures.standin_cpu_s_per_file
            rows.append((count, "/".join(map(str, figures.files_per_instance)),
                         f"{figures.files_per_s:.1f}", f"{figures.files_per_s / single:.2f}",
                         f"{figures.files / max(figures.files_per_instance):.2f}",
                         f"{figures.cpu_s_per_file * 1000:.1f}", f"{ingestors_busy:.2f}", f"{standin_busy:.2f}",
                         f"{ingestors_busy + standin_busy:.2f}", f"{max(figures.peak_rss_mb):.0f}"))
    table("scale-out: ingestors in one consumer group",
          ("instances", "files each", "files/s", "speed-up", "balance bound", "CPU ms/file", "ingestor cores",
           "stand-in cores", "cores busy", "peak RSS MB"), rows,
          "balance bound: the speed-up if the busiest instance alone set the pace (files / its files); "
          f"cores busy during the burst (files/s x CPU per file), of the machine's {os.cpu_count()}: the ingestors "
          "(all instances, all threads), the SciCat stand-in, and the two; the Kafka broker's come on top")
    return 0


if __name__ == "__main__":
    sys.exit(main())
