"""The benchmark scripts still run: each, with tiny sizes, prints its tables and targets.

They are scripts that print figures, not tests; this only keeps them from rotting
unnoticed. The figures of such small runs mean nothing and are not checked.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

pytestmark = pytest.mark.integration


def run_benchmark(script: str, kafka_bootstrap: str, tmp_path: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), "--kafka", kafka_bootstrap,
                           "--work-dir", str(tmp_path), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_end_to_end_benchmark_prints_throughput_latency_stages_and_the_floor(kafka_bootstrap, tmp_path):
    out = run_benchmark("bench_end_to_end.py", kafka_bootstrap, tmp_path, "--runs", "4", "--latency-runs", "2",
                        "--delays-ms", "0,20")
    assert "1. end to end" in out and "2. milliseconds per file in each stage" in out and "3. the floor" in out
    assert "CPU, main thread" in out  # py-spy sampled the ingestor
    assert "<= 1.5:" in out and "<= 1.1:" in out  # each delay's ratio beside its target
    assert "20 ms" in out


def test_scale_out_benchmark_prints_files_per_second_for_each_count(kafka_bootstrap, tmp_path):
    out = run_benchmark("bench_scale_out.py", kafka_bootstrap, tmp_path, "--runs", "6", "--instances", "1,2")
    rows = [line.split() for line in out.splitlines() if line.strip()[:2] in ("1 ", "2 ")]
    assert [row[0] for row in rows] == ["1", "2"]
    assert "speed-up" in out and "cores busy" in out


def test_growth_benchmark_prints_its_four_tables(kafka_bootstrap, tmp_path):
    out = run_benchmark("bench_growth.py", kafka_bootstrap, tmp_path, "--checksum-mb", "64",
                        "--messages", "100,200,300", "--heartbeats", "1000")
    for title in ("1. metadata read time", "2. checksum throughput", "3. resident memory", "4. passing over"):
        assert title in out
    assert "through Kafka" in out and "target" in out


def test_thumbnail_benchmark_prints_milliseconds_per_picture_of_a_large_signal(tmp_path):
    done = subprocess.run([sys.executable, str(BENCHMARKS / "bench_thumbnail.py"), "--size-gb", "0.02",
                           "--repeat", "1", "--work-dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1. milliseconds per thumbnail" in done.stdout and "target <= 500 ms" in done.stdout
    assert "the producer's 256 x 320 uint32" in done.stdout
