"""`make demo`: a newcomer sees runs flow from the producer through the ingestor."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.integration
def test_make_demo_shows_every_run_and_cleans_up_after_itself():
    result = subprocess.run(["make", "-s", "demo"], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "what the ingestor built (5 of 5 runs)" in out
    rows = [line for line in out.splitlines() if re.match(r"\s+\w{8}…\s+dream_123456_\d{8}\.hdf", line)]
    assert len(rows) == 5
    # The real writer's traffic: each pl72 twice (pool and control topic), answ twice a run and once for
    # the refused start, the abandoned job's too; counted in the closing statistics.
    assert re.search(r"messages: 6s4t 5, answ 12, pl72 13, wrdn 5, x5f2 32;", out), out
    assert "files: ingested 5" in out
    # The watchdog: the refused start and the job whose writer died, once each.
    assert "its watchdog reported 2 of the writer's jobs" in out
    assert "run starts waiting 1; writer jobs: started 7, finished 5, failed to start 1, silent 1" in out
    leftover = subprocess.run(["pgrep", "-f", "demo-output/config.json"], capture_output=True, text=True)
    assert leftover.stdout == "", "the demo left its ingestor running"
