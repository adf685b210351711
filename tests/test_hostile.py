"""Hostile input and a sick host, as years of operation bring them: the ingestor neither
crash-loops, nor freezes, nor stops without a word."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from streaming_data_types.run_start_pl72 import serialise_pl72

from ingestor_harness import FileWriter, IngestorProcess, ingestor_config, one_dataset_each, wait_until
from kafka_broker import TansuBroker, create_topic, free_port, produce

import producer  # noqa: E402  (examples/producer, put on the path by ingestor_harness)

pytestmark = pytest.mark.integration


@pytest.fixture
def writer(kafka_bootstrap, kafka_topic, data_dir):
    return FileWriter(kafka_bootstrap, kafka_topic, data_dir)


def deep_list(levels: int) -> str:
    """JSON nested ``levels`` deep in the fewest bytes: 100,000 levels are 200 kB."""
    return "[" * levels + "]" * levels


def deep_object(levels: int) -> str:
    return '{"a": ' * levels + "1" + "}" * levels


def health(port: int, timeout: float = 10) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
    except OSError:  # not listening yet
        return 0, {}


def thread_count(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


def test_metadata_nested_500_5000_and_100000_deep_is_dropped_and_every_file_still_ingested(
        tmp_path, scicat, writer, kafka_bootstrap, kafka_topic):
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url)
    with IngestorProcess(tmp_path, config) as ingestor:
        # In the run start's and the wrdn's metadata both.
        runs = [writer.run(metadata=deep_object(500)), writer.run(metadata=deep_list(5_000)),
                writer.run(metadata=deep_list(100_000))]
        # And in the run start's nexus_structure, with the wrdn's metadata fine.
        job_id, path = str(uuid.uuid4()), writer.output_dir / "deep_structure.hdf"
        producer.write_nexus_file(str(path), job_id=job_id, instrument="DREAM", proposal="123456", run_number=9)
        produce(kafka_bootstrap, kafka_topic, [
            serialise_pl72(job_id=job_id, filename=str(path), nexus_structure=deep_list(100_000), metadata="{}"),
            producer.make_finished_writing(job_id=job_id, file_name=str(path), metadata='{"proposal_id": "123456"}'),
        ])
        runs.append({"job_id": job_id})
        wait_until(lambda: one_dataset_each(scicat, runs), 90, "one dataset per run")
        assert ingestor.running()
        log = ingestor.log()
    assert log.count("metadata is nested deeper than 64 levels") >= 6  # pl72 and wrdn of three runs
    assert "nexus_structure is nested deeper than 64 levels" in log
    assert ingestor.spooled() == []
    assert [entry["outcome"] for entry in ingestor.audit()] == ["ingested"] * 4


def test_a_newline_in_a_file_name_cannot_forge_a_log_line(tmp_path, scicat, writer, kafka_bootstrap,
                                                          kafka_topic, data_dir):
    forged = "2026-01-01 00:00:00,000 [INFO] SFI: ingested job FORGED: file /data/x.hdf"
    name = f"{data_dir}/missing.hdf\n{forged}\x1b[2K"
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url, **{"files.wait_s": 0})
    with IngestorProcess(tmp_path, config) as ingestor:
        produce(kafka_bootstrap, kafka_topic, [producer.make_finished_writing(job_id="job-nl", file_name=name)])
        wait_until(lambda: ingestor.spooled(), 60, "the wrdn spooled")
        ingestor.wait_for_log("FAILED to ingest job job-nl")
        lines = ingestor.log().splitlines()
    assert not any(line.startswith(forged) for line in lines)
    assert any(f"missing.hdf\\n{forged}\\x1b[2K" in line for line in lines)
    # The spool keeps the name as it came: it is data, not a log line.
    assert ingestor.spooled()[0]["finished"]["file_name"] == name


def test_100_parallel_health_requests_ask_scicat_once_on_a_few_threads(tmp_path, scicat, kafka_bootstrap,
                                                                        kafka_topic):
    port = free_port()
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url, **{"health.port": port})
    with IngestorProcess(tmp_path, config) as ingestor:
        wait_until(lambda: health(port)[0] == 200, 60, "a healthy ingestor")
        time.sleep(3.5)  # the answer cached by that first request runs out: the burst must ask anew
        before = thread_count(ingestor.process.pid)
        probes_before = sum(path.endswith("/health") for _, path, _ in scicat.requests_log)
        most = [before]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                most.append(thread_count(ingestor.process.pid))
                time.sleep(0.005)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.monotonic()
        with ThreadPoolExecutor(100) as pool:
            answers = list(pool.map(lambda _: health(port), range(100)))
        burst_s = time.monotonic() - started
        done.set()
        sampler.join()
        probes = sum(path.endswith("/health") for _, path, _ in scicat.requests_log) - probes_before
    assert [status for status, _ in answers] == [200] * 100
    # One ask of SciCat, and one more for each 3 s the burst lasted on a loaded machine.
    assert probes <= 1 + int(burst_s / 3)
    assert max(most) <= before + 4 + 1  # HEALTH_THREADS, and the one asking SciCat


def test_a_password_in_the_scicat_url_is_never_shown(tmp_path, scicat, kafka_bootstrap, kafka_topic):
    port = free_port()
    host = scicat.url.replace("http://", "http://ingestor:hunter2@")
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, host, **{"health.port": port})
    with IngestorProcess(tmp_path, config) as ingestor:
        wait_until(lambda: health(port)[0] == 200, 60, "a healthy ingestor")
        scicat.stop()  # SciCat's address now shows in the health state
        status, report = wait_until(lambda: (h := health(port))[0] == 503 and h, 30, "503 while SciCat is gone")
        scicat.start()
        ingestor.wait_for_log("configuration: ")
        log = ingestor.log()
    assert "***@127.0.0.1" in report["scicat"]["state"] and "hunter2" not in json.dumps(report)
    assert "hunter2" not in log
    assert "http://***@127.0.0.1" in log


def test_kafka_down_for_30_seconds_gives_a_few_log_lines_and_the_ingestor_goes_on(tmp_path, scicat, data_dir):
    broker = TansuBroker(log_path=str(tmp_path / "tansu.log")).start()
    try:
        create_topic(broker.bootstrap, "commands")
        writer = FileWriter(broker.bootstrap, "commands", data_dir)
        config = ingestor_config(tmp_path, broker.bootstrap, "commands", scicat.url)
        with IngestorProcess(tmp_path, config) as ingestor:
            first = writer.run()
            wait_until(lambda: one_dataset_each(scicat, [first]), 60, "the first dataset")
            broker.stop()
            down_at = len(ingestor.log().splitlines())
            time.sleep(30)  # the outage itself: what is measured is how much it logs meanwhile
            during = ingestor.log().splitlines()[down_at:]
            assert ingestor.running()
            # The broker back on the same port (empty: Tansu keeps nothing), and a file again.
            broker = TansuBroker(log_path=str(tmp_path / "tansu-again.log"))
            broker.port, broker.bootstrap = writer.bootstrap.rsplit(":", 1)[1], writer.bootstrap
            broker.start()
            create_topic(broker.bootstrap, "commands")
            after = writer.run()
            wait_until(lambda: one_dataset_each(scicat, [after]), 90, "a dataset after the outage")
    finally:
        broker.stop()
    kafka_lines = [line for line in during if "statistics: " not in line]
    # Before: two lines every 50 ms, some 1,200 in 30 s.
    assert len(kafka_lines) <= 30, "\n".join(kafka_lines)
    assert any("more like it in the last 30 s" in line for line in during) or len(kafka_lines) <= 10


@pytest.mark.parametrize("part", ["spool", "audit"])
def test_an_unwritable_spool_or_audit_is_waited_out_with_503_and_nothing_is_lost(tmp_path, scicat, writer,
                                                                              kafka_bootstrap, kafka_topic, part):
    port = free_port()
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url,
                             **{"health.port": port, "files.wait_s": 0})
    # As the disk refuses it (full, read-only): a file where the spool folder, or the audit file, should be.
    # A plain chmod would not do: the tests may run as root.
    blocked = Path(config["spool"]["directory"]) if part == "spool" else Path(config["audit"]["file"])
    blocked.write_text("") if part == "spool" else blocked.mkdir()
    with IngestorProcess(tmp_path, config) as ingestor:
        ingestor.wait_for_log("partitions assigned")
        missing = writer.run(write_file=False)  # fails: goes to the spool, then the audit trail
        status, report = wait_until(lambda: (h := health(port))[0] == 503 and "cannot write" in h[1][part]["state"]
                                    and h, 60, f"503 naming the {part}")
        assert not report[part]["ok"] and report["loop"]["ok"], report
        ingestor.wait_for_log(f"cannot write the {part}")
        later = writer.run()  # waits behind the message in hand
        time.sleep(3)  # long enough for some tries with backoff; the process must live through them
        assert ingestor.running()
        assert ingestor.log().count(f"cannot write the {part}") == 1  # once a minute, not once a try

        blocked.unlink() if part == "spool" else blocked.rmdir()  # the disk takes writes again
        wait_until(lambda: health(port)[0] == 200, 60, "200 once it is written again")
        wait_until(lambda: one_dataset_each(scicat, [later]), 60, "the file behind it ingested")
        assert [r["finished"]["job_id"] for r in ingestor.spooled()] == [missing["job_id"]]
        wait_until(lambda: len(ingestor.audit()) == 2, 30, "both files audited")
        ingestor.wait_for_log(f"the {part} ")
        ingestor.wait_for_log("is written again")
    assert ingestor.stop() == 0
    assert [a["job_id"] for a in ingestor.audit()] == [missing["job_id"], later["job_id"]]


def test_sighup_reopens_the_log_file_and_the_ingestor_goes_on(tmp_path, scicat, writer, kafka_bootstrap,
                                                              kafka_topic):
    log_file = tmp_path / "ingestor-file.log"
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url)
    with IngestorProcess(tmp_path, config, "--file-log", str(log_file)) as ingestor:
        before = writer.run()
        wait_until(lambda: one_dataset_each(scicat, [before]), 60, "the first dataset")
        # Its line comes after the POSTs: rotated before it, it would rightly go to the new file.
        wait_until(lambda: f"ingested job {before['job_id']}" in log_file.read_text(), 30, "the first file's line")
        rotated = tmp_path / "ingestor-file.log.1"
        log_file.rename(rotated)  # as logrotate does, without copytruncate
        ingestor.process.send_signal(signal.SIGHUP)
        wait_until(lambda: log_file.exists() and "SIGHUP received: log files reopened" in log_file.read_text(),
                   30, "the log file opened anew")
        after = writer.run()
        wait_until(lambda: one_dataset_each(scicat, [after]), 60, "a dataset after SIGHUP")
        wait_until(lambda: f"ingested job {after['job_id']}" in log_file.read_text(), 30, "its line in the new file")
        assert ingestor.running()
    assert ingestor.stop() == 0
    assert f"ingested job {before['job_id']}" in rotated.read_text()
    assert after["job_id"] not in rotated.read_text()


def test_the_systemd_unit_restarts_every_exit_status_but_a_wrong_configuration_and_a_refused_login():
    import scicat_ingestor as si

    unit = (Path(si.__file__).parent / "examples" / "systemd" / "scicat-ingestor.service").read_text()
    [line] = [line for line in unit.splitlines() if line.startswith("RestartPreventExitStatus=")]
    assert sorted(int(code) for code in line.split("=", 1)[1].split()) == sorted(si.EXITS_NOT_RESTARTED)
    assert "Restart=always" in unit.splitlines()
    assert si.EXIT_FAILED not in si.EXITS_NOT_RESTARTED and si.EXIT_OK not in si.EXITS_NOT_RESTARTED


def test_a_password_scicat_refuses_at_start_exits_with_the_status_systemd_does_not_restart(
        tmp_path, scicat, kafka_bootstrap, kafka_topic):
    import scicat_ingestor as si

    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url, **{"scicat.password": "wrong"})
    ingestor = IngestorProcess(tmp_path, config).start()
    assert ingestor.process.wait(60) == si.EXIT_LOGIN_REFUSED
    assert "cannot start: login as ingestor failed" in ingestor.log()


def test_a_fifo_announced_by_a_wrdn_is_refused_unopened_and_the_good_files_after_it_are_ingested(
        tmp_path, scicat, writer, kafka_bootstrap, kafka_topic, data_dir):
    port = free_port()
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url, **{"health.port": port})
    fifo = data_dir / "dream_123456_00000099.hdf"
    os.mkfifo(fifo)  # open(2) on it blocks for good, as on a hung NFS mount
    with IngestorProcess(tmp_path, config) as ingestor:
        wait_until(lambda: health(port)[0] == 200, 60, "a healthy ingestor")
        produce(kafka_bootstrap, kafka_topic, [producer.make_finished_writing(job_id="job-fifo", file_name=str(fifo))])
        good = [writer.run() for _ in range(3)]
        slowest = 0.0
        while not one_dataset_each(scicat, good):
            started = time.monotonic()
            status, report = health(port, timeout=1)
            slowest = max(slowest, time.monotonic() - started)
            assert status in (200, 503) and report["loop"]["ok"], report
            assert ingestor.running()
            time.sleep(0.1)
            assert time.monotonic() - started < 90, "the good files were not ingested"
        [spooled] = ingestor.spooled()
    assert spooled["finished"]["job_id"] == "job-fifo" and "not a regular file" in spooled["reason"]
    assert slowest < 1.0


def test_a_read_past_files_read_timeout_s_is_abandoned_spooled_and_named_by_health_meanwhile(
        tmp_path, scicat, writer, kafka_bootstrap, kafka_topic, data_dir):
    port = free_port()
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url,
                             **{"health.port": port, "files.checksum": "sha256", "files.read_timeout_s": 3})
    with IngestorProcess(tmp_path, config) as ingestor:
        wait_until(lambda: health(port)[0] == 200, 60, "a healthy ingestor")
        # A real file that takes far longer than 3 s to checksum, as a slow mount would make it:
        # 64 GB, sparse on disk, hashed at a few GB/s at best.
        slow = writer.run(send_finish=False)
        os.truncate(slow["path"], 64 * 1024 ** 3)
        writer.finish(slow)
        status, report = wait_until(lambda: (h := health(port, timeout=1))[1].get("files", {}).get("state", "")
                                    .startswith("reading") and h, 60, "/health naming the file being read")
        assert slow["path"] in report["files"]["state"] and report["loop"]["ok"]
        after = writer.run()
        wait_until(lambda: one_dataset_each(scicat, [after]), 90, "the file after it ingested")
        [spooled] = ingestor.spooled()
        assert spooled["finished"]["job_id"] == slow["job_id"]
        assert "did not finish within files.read_timeout_s (3 s)" in spooled["reason"]
        ingestor.wait_for_log("file reader process")
    assert ingestor.stop() == 0


def test_the_scicat_password_may_come_from_a_file_and_a_world_readable_one_is_warned_about(
        tmp_path, scicat, writer, kafka_bootstrap, kafka_topic):
    secret = tmp_path / "scicat-password"
    secret.write_text("secret\n")  # as `echo secret > file` leaves it
    secret.chmod(0o644)
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url)
    config["scicat"] = {**config["scicat"], "password": "", "password_file": secret.name}  # relative to the config
    with IngestorProcess(tmp_path, config) as ingestor:
        run = writer.run()
        wait_until(lambda: one_dataset_each(scicat, [run]), 60, "the dataset, created after a login")
        log = ingestor.log()
    assert scicat.logins >= 1
    assert f"scicat.password_file: {secret} holds a credential and every user of this host may read it" in log
    [dump] = [line for line in log.splitlines() if "configuration: {" in line]
    assert '"password": "***"' in dump and '"secret"' not in dump


def test_replay_handles_every_kind_of_record_the_ingestor_writes(tmp_path, data_dir, scicat):
    import scicat_ingestor as si
    from streaming_data_types.finished_writing_wrdn import serialise_wrdn

    config = si.parse_config(ingestor_config(tmp_path, "unused:9092", "unused", scicat.url, **{"files.wait_s": 0}))
    ingestor = si.Ingestor(config)
    late, deep = data_dir / "late.hdf", data_dir / "deep.hdf"

    def wrdn(path: Path, metadata: str = "{}") -> bytes:
        return serialise_wrdn(service_id="fw", job_id=path.stem, error_encountered=False, file_name=str(path),
                              metadata=metadata)

    ingestor.handle(si.Delivery(wrdn(late), "t", 0, 1))  # a file not there yet: failed, with the wrdn decoded
    ingestor.handle(si.Delivery(wrdn(deep, deep_list(5_000)), "t", 0, 2))  # the same, its metadata dropped
    ingestor.handle(si.Delivery(b"\x00\x00\x00\x00wrdn" + b"\xff" * 20, "t", 0, 3))  # damaged: kept as bytes
    run_start = serialise_pl72(job_id="j", filename="/x.hdf")
    # What the ingestor spools for a message that failed unforeseen: the message as it came.
    ingestor.spool_once(si.spool_record(si.Delivery(run_start, "t", 0, 4), None, None, "unexpected error: X", 1))
    assert len(Path(ingestor.spool.path).read_text().splitlines()) == 4

    assert si.Ingestor(config).replay("") == si.EXIT_FAILED
    kept = [json.loads(line) for line in Path(ingestor.spool.path).read_text().splitlines()]
    assert sorted(r["offset"] for r in kept) == [1, 2, 3]  # the run start names no file: dropped

    for path in (late, deep):  # the files show up; replayed, they are ingested
        producer.write_nexus_file(str(path), job_id=path.stem, instrument="DREAM", proposal="123456", run_number=1)
    assert si.Ingestor(config).replay("") == si.EXIT_FAILED
    [left] = [json.loads(line) for line in Path(ingestor.spool.path).read_text().splitlines()]
    assert left["offset"] == 3 and "damaged wrdn" in left["reason"]
    assert len(scicat.datasets) == 2  # late.hdf and deep.hdf, once each


def test_ingest_file_of_a_folder_holding_a_fifo_ingests_the_rest_and_ends(tmp_path, scicat, data_dir):
    import scicat_ingestor as si

    os.mkfifo(data_dir / "dream_123456_00000001.hdf")
    good = data_dir / "dream_123456_00000002.hdf"
    producer.write_nexus_file(str(good), job_id=str(uuid.uuid4()), instrument="DREAM", proposal="123456",
                              run_number=2)
    config = ingestor_config(tmp_path, "unused:9092", "unused", scicat.url, **{"files.wait_s": 0})
    backfill = IngestorProcess(tmp_path, config, "--ingest-file", str(data_dir)).start()
    assert backfill.process.wait(120) == si.EXIT_FAILED  # one file failed: the FIFO
    assert len(scicat.datasets) == 1
    [spooled] = backfill.spooled()
    assert "not a regular file" in spooled["reason"]


def test_scicat_down_gives_one_retry_warning_per_30_seconds_not_one_per_retry(tmp_path, scicat, writer,
                                                                              kafka_bootstrap, kafka_topic):
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url,
                             **{"scicat.max_retries": 40, "scicat.retry_backoff_s": 0.01})
    with IngestorProcess(tmp_path, config) as ingestor:
        ingestor.wait_for_log("partitions assigned")
        scicat.set_down(True)  # 503 to everything
        run = writer.run()
        # Backoff from 10 ms doubling: eight retries within the first few seconds, one line each before.
        wait_until(lambda: len([r for r in scicat.requests_log if r[2] == 503]) >= 8, 60, "eight refused tries")
        scicat.set_down(False)
        wait_until(lambda: one_dataset_each(scicat, [run]), 90, "the dataset once SciCat is back")
        retries = [line for line in ingestor.log().splitlines() if "; retry " in line]
    assert len(retries) <= 2, "\n".join(retries)
