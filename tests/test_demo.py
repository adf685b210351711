"""`make demo` and `make broker`: a newcomer sees runs flow, and Ctrl-C stops everything cleanly."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from confluent_kafka import KafkaException

from ingestor_harness import wait_until
from kafka_broker import admin_client, free_port
from terminal import Terminal

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.integration


def pids_shown(output: str) -> list[int]:
    """The processes the demo says it started (the broker's, the ingestor's)."""
    return [int(pid) for pid in re.findall(r"\bpid (\d+)\)", output)]


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_make_demo_shows_every_run_and_cleans_up_after_itself(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(["make", "-s", "demo", f"DEMO_ARGS=--output-dir {out}"], cwd=ROOT,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    out_text = result.stdout
    assert "what the ingestor built (5 of 5 runs)" in out_text
    rows = [line for line in out_text.splitlines() if re.match(r"\s+\w{8}…\s+dream_123456_\d{8}\.hdf", line)]
    assert len(rows) == 5
    # The real writer's traffic: each pl72 twice (pool and control topic), answ twice a run and once for
    # the refused start, the abandoned job's too; counted in the closing statistics.
    assert re.search(r"messages: 6s4t 5, answ 12, pl72 13, wrdn 5, x5f2 32;", out_text), out_text
    assert "files: ingested 5" in out_text
    # The watchdog: the refused start and the job whose writer died, once each.
    assert "its watchdog reported 2 of the writer's jobs" in out_text
    assert "run starts waiting 1; writer jobs: started 7, finished 5, failed to start 1, silent 1" in out_text
    assert "producer: 5 runs sent to ess_filewriter_pool and the control topics" in out_text
    # Everything in the folder asked for; nothing of it left running.
    assert (out / "config.json").exists() and len(list((out / "data").glob("*.hdf"))) == 5
    # Each dataset's picture: its size in the table, the PNG in the folder, one a person can open.
    assert all(re.search(r"\s\d+\.\d kB\s*$", row) for row in rows), rows
    pictures = list((out / "thumbnails").glob("*.png"))
    assert len(pictures) == 5 and all(p.read_bytes().startswith(b"\x89PNG\r\n") for p in pictures)
    pids = pids_shown(out_text)
    assert len(pids) == 2, out_text
    assert [pid for pid in pids if running(pid)] == [], "the demo left its broker or ingestor running"
    assert "Traceback" not in out_text + result.stderr


def test_ctrl_c_on_make_demo_prints_one_line_and_exits_0(tmp_path):
    terminal = Terminal(ROOT, ["make", "-s", "demo", f"DEMO_ARGS=--output-dir {tmp_path / 'demo'} --runs 50"])
    try:
        terminal.wait_for("3. producer", timeout=90)
        terminal.wait_for(" bytes\n", timeout=30)  # the producer is at work
        terminal.ctrl_c()
        status = terminal.wait(timeout=60)
    finally:
        terminal.kill()
    output = terminal.output
    assert status == 0, output
    after = output[output.index("^C"):]
    assert after.strip().splitlines()[1:] == ["interrupted: stopped what the demo started"], output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
    assert "Interrupt" not in after.replace("interrupted", "") and "Error" not in output, output
    pids = pids_shown(output)
    assert len(pids) == 2, output
    assert [pid for pid in pids if running(pid)] == []


def test_the_demo_keeps_its_broker_on_request_until_ctrl_c(tmp_path):
    terminal = Terminal(ROOT, ["make", "-s", "demo", f"DEMO_ARGS=--output-dir {tmp_path / 'demo'} --runs 1 --keep-broker"])
    try:
        terminal.wait_for("until Ctrl-C", timeout=120)
        bootstrap = re.search(r"The broker stays at (\S+) \(topics ess_filewriter_pool, ", terminal.output)[1]
        assert "dream_filewriter" in admin_client(bootstrap).list_topics(timeout=10).topics
        assert f'"bootstrap_servers": "{bootstrap}"' in (tmp_path / "demo" / "config.json").read_text()
        terminal.ctrl_c()
        status = terminal.wait(timeout=30)
    finally:
        terminal.kill()
    assert status == 0, terminal.output
    assert "Traceback" not in terminal.output
    broker_pid = pids_shown(terminal.output)[0]
    assert not running(broker_pid)


def test_make_broker_serves_the_command_topic_until_ctrl_c():
    port = free_port()
    terminal = Terminal(ROOT, ["make", "-s", "broker", f"BROKER_PORT={port}"])
    try:
        terminal.wait_for("Ctrl-C stops it", timeout=60)
        assert f"Kafka broker (Tansu) listening at 127.0.0.1:{port}, topic command_channel made" in terminal.output
        assert "command_channel" in admin_client(f"127.0.0.1:{port}").list_topics(timeout=10).topics
        terminal.ctrl_c()
        status = terminal.wait(timeout=30)
    finally:
        terminal.kill()
    assert status == 0, terminal.output
    assert terminal.output.rstrip().endswith("broker stopped"), terminal.output
    assert "Traceback" not in terminal.output and "Interrupt" not in terminal.output
    wait_until(lambda: not answers(f"127.0.0.1:{port}"), 15, "the broker to be gone")


def answers(bootstrap: str) -> bool:
    try:
        admin_client(bootstrap).list_topics(timeout=1)
    except KafkaException:
        return False
    return True
