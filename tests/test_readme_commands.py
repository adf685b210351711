"""The README as a new user follows it: on a fresh clone, set up by its first command, every
command of the Run, "From the demo to a real SciCat" and Backfilling sections, as written.

Each command run here is first looked up in its README section, so a README that changes its
commands fails this test until the test runs the new ones. What the README leaves to the user
(editing a configuration, the broker's address, a folder of files) is filled in with the real
broker and the SciCat stand-in. Every command must end without a traceback, with its exit
status and its one-line summary, and the clone must be as clean to git at the end as at the start.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from ingestor_harness import FAST_CONSUMER, wait_until
from terminal import Terminal

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PASSWORD_VARIABLE = "SCICAT_INGESTOR_PASSWORD"

pytestmark = pytest.mark.integration


def section(title: str) -> str:
    """The text of the README section with this heading, up to the next heading of its level or above."""
    found = re.search(rf"^(#+) {re.escape(title)}\n", README, re.MULTILINE)
    assert found, f"README has no section {title!r}"
    level = len(found[1])
    end = re.compile(rf"^#{{1,{level}}} ", re.MULTILINE).search(README, found.end())
    return README[found.end():end.start() if end else len(README)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


class Clone:
    """A fresh clone of the repository, and its commands run as the README writes them."""

    def __init__(self, path: Path):
        self.path = path
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(path)], check=True, timeout=60)
        # What the user's shell would not have: the tests' own environment and the re-exec mark.
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("PYTHONPATH", "VIRTUAL_ENV", "SCICAT_INGESTOR_VENV", "PYTEST_CURRENT_TEST")}
        self.env[PASSWORD_VARIABLE] = "secret"  # the stand-in's password of "ingestor"
        self.transcript: list[str] = []

    def run(self, command: str, in_section: str, *, expect: int = 0, shell_form: str = "", timeout: float = 120
            ) -> list[str]:
        """Run a command written in a README section; returns its lines of standard output."""
        assert (shell_form or command) in section(in_section), f"{shell_form or command!r} not in {in_section!r}"
        result = subprocess.run(["bash", "-c", command], cwd=self.path, env=self.env, capture_output=True,
                                text=True, timeout=timeout)
        self.note(command, result.returncode, result.stdout + result.stderr)
        assert result.returncode == expect, result.stdout + result.stderr
        assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
        return result.stdout.splitlines()

    def start(self, command: str, in_section: str) -> "Started":
        assert command in section(in_section), f"{command!r} not in {in_section!r}"
        return Started(self, command)

    def note(self, command: str, status: int, output: str) -> None:
        last = output.strip().splitlines()[-1] if output.strip() else ""
        self.transcript.append(f"$ {command}\n  exit {status}: {last}")

    def edit(self, name: str, **changes: object) -> None:
        """What "then edit it" asks of the user: dotted keys set in a JSON configuration."""
        path = self.path / name
        config = json.loads(path.read_text())
        for dotted, value in changes.items():
            section_name, key = dotted.split("__")
            config[section_name][key] = value
        path.write_text(json.dumps(config, indent=2))

    def git_status(self) -> str:
        return subprocess.run(["git", "status", "--porcelain"], cwd=self.path, capture_output=True, text=True,
                              check=True).stdout


class Started:
    """A long-running command of the README (the daemon), its output gathered as it comes."""

    def __init__(self, clone: Clone, command: str):
        self.clone, self.command = clone, command
        # exec: the signal goes to the ingestor itself, as from a user's terminal.
        self.process = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=clone.path, env=clone.env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: [self.lines.append(line) for line in self.process.stdout],
                                       daemon=True)
        self.reader.start()

    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        wait_until(lambda: text in self.output() or self.process.poll() is not None, timeout, repr(text))
        assert text in self.output(), self.output()

    def stop(self, signum: int) -> str:
        """The signal, then the last line it printed; asserts a clean exit."""
        self.process.send_signal(signum)
        try:
            self.process.wait(60)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        self.reader.join(10)
        self.clone.note(f"{self.command}   (then {signal.Signals(signum).name})", self.process.returncode,
                        self.output())
        assert self.process.returncode == 0, self.output()
        assert "Traceback" not in self.output(), self.output()
        return self.output().strip().splitlines()[-1]


def test_the_readme_contents_list_every_section_and_the_two_commands_come_first():
    contents = re.search(r"^\*\*Contents:\*\*(.*?)\n\n", README, re.MULTILINE | re.DOTALL)[1]
    listed = re.findall(r"\]\(#([^)]+)\)", contents)
    sections = [slug(title) for title in re.findall(r"^## (.+)$", README, re.MULTILINE)]
    assert listed == sections
    first_screen = "\n".join(README.splitlines()[:40])
    assert "make demo" in first_screen and "make test" in first_screen


def test_every_command_of_the_readme_on_a_fresh_clone(tmp_path, kafka_bootstrap, kafka_topic, scicat):
    clone = Clone(tmp_path / "clone")
    demo_section, run_section, backfill_section = ("From the demo to a real SciCat", "Run",
                                                   "Backfilling: `--ingest-file`")

    # -- the set-up, and the demo kept for the walk-through ---------------------------------------
    assert "make demo   #" in section("Two commands")
    demo = Terminal(clone.path, ["make", "-s", "demo", "DEMO_ARGS=--keep-broker"], env=clone.env)
    assert "make demo DEMO_ARGS=--keep-broker" in section(demo_section)
    try:
        demo.wait_for("until Ctrl-C", timeout=600)  # the first run makes .venv: pip installs
        assert "what the ingestor built (5 of 5 runs)" in demo.output, demo.output
        broker = re.search(r"The broker stays at (\S+) ", demo.output)[1]

        # -- From the demo to a real SciCat ------------------------------------------------------
        clone.run("cp demo-output/config.json my-config.json", demo_section)
        clone.edit("my-config.json", scicat__host=scicat.url, scicat__username="ingestor",
                   scicat__password_env=PASSWORD_VARIABLE, options__dry_run=False)
        assert f"export {PASSWORD_VARIABLE}=" in section(demo_section)
        checked = clone.run("./scicat_ingestor.py -c my-config.json --check-config", demo_section)
        assert checked[-1] == "--check-config: 9 checks, all passed", checked
        ingestor = clone.start("./scicat_ingestor.py -c my-config.json -v", demo_section)
        ingestor.wait_for("consuming ess_filewriter_pool")
        sent = clone.run(f".venv/bin/python examples/producer/producer.py --broker {broker} --count 3 "
                         "--output-dir demo-output/data", demo_section,
                         shell_form=".venv/bin/python examples/producer/producer.py --broker <the demo's broker> "
                                    "--count 3 --output-dir demo-output/data")
        assert sent[-1].startswith(f"producer: 3 runs sent to ess_filewriter_pool and the control topics at {broker}")
        wait_until(lambda: len(scicat.origdatablocks) == 3, 60, "3 datasets in SciCat")
        assert re.search(r"stopped on SIGINT after \d+ s: \d+ messages, 3 files: 3 created$",
                            ingestor.stop(signal.SIGINT))
        demo.ctrl_c()
        assert demo.wait(timeout=60) == 0, demo.output
        clone.note("make demo DEMO_ARGS=--keep-broker   (then Ctrl-C)", demo.exit_code, demo.output)
    finally:
        demo.kill()
    assert demo.output.strip().endswith("interrupted: stopped what the demo started"), demo.output
    assert "Traceback" not in demo.output and "Error" not in demo.output
    for pid in map(int, re.findall(r"\bpid (\d+)\)", demo.output)):  # the demo's broker and ingestor
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

    # -- Run ---------------------------------------------------------------------------------------
    clone.run("cp config.sample.json config.json", run_section)
    nexus_files = clone.path / "state" / "nexus-files"  # the producer's default output folder
    clone.edit("config.json", kafka__bootstrap_servers=kafka_bootstrap, kafka__topics=[kafka_topic],
               kafka__group_id=f"readme-{uuid.uuid4().hex[:8]}", kafka__consumer=FAST_CONSUMER,
               scicat__host=scicat.url, scicat__username="ingestor",
               files__allowed_roots=[str(nexus_files)])
    assert f"export {PASSWORD_VARIABLE}=" in section(run_section)
    ingestor = clone.start("./scicat_ingestor.py -c config.json -v --sys-log", run_section)
    ingestor.wait_for(f"consuming {kafka_topic}")
    sent = clone.run(f".venv/bin/python examples/producer/producer.py --broker {kafka_bootstrap} --keyed "
                     f"--topic {kafka_topic} --count 2", "The file-writer stand-in",
                     shell_form="examples/producer/producer.py")
    wait_until(lambda: len(scicat.origdatablocks) == 5, 60, "2 more datasets in SciCat")
    assert re.search(r"stopped on SIGTERM after \d+ s: 4 messages, 2 files: 2 created$",
                        ingestor.stop(signal.SIGTERM))
    assert len((clone.path / "state" / "audit.jsonl").read_text().splitlines()) == 2

    # -- Backfilling -------------------------------------------------------------------------------
    files = sorted(nexus_files.glob("*.hdf"))
    assert len(files) == 2 and sent[-1].endswith(f"their files in {nexus_files}")
    folder_form = "./scicat_ingestor.py -c config.json -v --ingest-file /data/dream/2024/123456/"
    lines = clone.run(f"./scicat_ingestor.py -c config.json -v --ingest-file {nexus_files}/", backfill_section,
                      shell_form=folder_form)
    assert lines[-1].endswith("--ingest-file: 2 files: 2 already in SciCat")
    lines = clone.run(f"./scicat_ingestor.py -c config.json -v --ingest-file {files[0]} {files[1]}",
                      backfill_section, shell_form="./scicat_ingestor.py -c config.json -v --ingest-file run1.hdf "
                                                   "run2.hdf")
    assert lines[-1].endswith("--ingest-file: 2 files: 2 already in SciCat")
    lines = clone.run(f"./scicat_ingestor.py -c config.json --dry-run --ingest-file {nexus_files}/",
                      backfill_section, shell_form="./scicat_ingestor.py -c config.json --dry-run --ingest-file "
                                                   "/data/dream/2024/123456/")
    assert lines == ["--ingest-file: 2 files: 2 would be created"]  # no -v: the summary alone
    assert len(scicat.datasets) == 5
    assert not (clone.path / "state" / "spool" / "failed.jsonl").exists()

    # Everything the commands wrote is where git does not see it.
    assert clone.git_status() == ""
    (tmp_path / "transcript.txt").write_text("\n".join(clone.transcript) + "\n")
    print("\n".join(clone.transcript))
