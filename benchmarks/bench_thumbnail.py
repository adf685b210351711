#!/usr/bin/env python3
"""What a dataset's thumbnail costs: milliseconds per picture of a large 2-D signal.

    .venv/bin/python benchmarks/bench_thumbnail.py [--size-gb 1] [--repeat 10] [--work-dir DIR]

Prints one table: for a float32 image of --size-gb (chunked 512 x 512, 1 MiB a chunk, gzip,
every chunk written already compressed: the size is real, the file a few MB), and for the
producer's own file (a 256 x 320 detector image and a spectrum), the median time of
si.picture_of_file (open, find the default plot, read within thumbnail.max_read_mb, draw,
PNG), the megabytes HDF5 decompressed for it, and the PNG's size. Runs in this process on
the ingestor's own functions; in the ingestor it runs in the file reader's child process.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from harness import machine_line, si, table, verdict
from ingestor_harness import producer

MB = 2**20
TARGET_MS = 500  # a picture must not slow a file's ingestion noticeably
CHUNK = (512, 512)


def measure(path: Path, repeat: int) -> tuple[float, si.ThumbnailOutcome]:
    settings = si.ThumbnailConfig()
    times, outcome = [], si.ThumbnailOutcome()
    for _ in range(repeat):
        started = time.perf_counter()
        outcome = si.picture_of_file(str(path), settings)
        times.append(time.perf_counter() - started)
    if outcome.thumbnail is None:
        raise SystemExit(f"{path}: no picture ({outcome.problem or 'nothing to plot'})")
    return 1000 * statistics.median(times), outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gb", type=float, default=1.0, help="the large signal's size (default 1)")
    parser.add_argument("--repeat", type=int, default=10, help="pictures timed each (default 10)")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the files go (default a temporary one)")
    args = parser.parse_args()
    print(machine_line())
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work:
        large = Path(work) / "large.nxs"
        columns = 16384
        rows = max(CHUNK[0], int(args.size_gb * 2**30 / 4 / columns) // CHUNK[0] * CHUNK[0])
        size = producer.write_large_plot(str(large), (rows, columns), CHUNK)
        small = Path(work) / "producer.hdf"
        producer.write_nexus_file(str(small), job_id="bench", run_number=1)
        results = []
        for name, path, signal_bytes in ((f"{rows} x {columns} float32", large, size),
                                         ("the producer's 256 x 320 uint32", small, 256 * 320 * 4)):
            ms, outcome = measure(path, args.repeat)
            results.append((name, f"{signal_bytes / MB:,.1f}", f"{path.stat().st_size / MB:.1f}",
                            f"{outcome.thumbnail.read_bytes / MB:.1f}", f"{len(outcome.thumbnail.png) / 1000:.1f}",
                            f"{ms:.0f}"))
    table(f"1. milliseconds per thumbnail (median of {args.repeat}; thumbnail.max_read_mb 64, 400 x 300)",
          ("signal", "signal MB", "file MB", "MB read", "PNG kB", "ms"), results,
          f"target <= {TARGET_MS} ms for the large one: {verdict(float(results[0][-1]) <= TARGET_MS)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
