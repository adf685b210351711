"""What an operator on call sees: the health and metrics endpoint, the statistics line, Graylog."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import zlib

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ingestor_harness import SCRIPT, FileWriter, IngestorProcess, ingestor_config, wait_until
from kafka_broker import free_port

import producer  # noqa: E402  (examples/producer, put on the path by ingestor_harness)

pytestmark = pytest.mark.integration


@pytest.fixture
def writer(tmp_path, kafka_bootstrap, kafka_topic):
    data = tmp_path / "data"
    data.mkdir()
    return FileWriter(kafka_bootstrap, kafka_topic, data)


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:  # not listening yet
        return 0, ""


def health(port: int) -> tuple[int, dict]:
    status, body = get(port, "/health")
    return status, json.loads(body) if body else {}


def metrics(port: int) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics, by name and sorted labels."""
    status, body = get(port, "/metrics")
    assert status == 200, body
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def statistics_lines(log: str) -> list[str]:
    return [line[line.index("statistics: "):] for line in log.splitlines() if "statistics: " in line]


def test_health_turns_503_naming_scicat_while_it_is_unreachable_and_200_after(tmp_path, scicat, writer,
                                                                             kafka_bootstrap, kafka_topic):
    port = free_port()
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url, **{"health.port": port})
    with IngestorProcess(tmp_path, config):
        status, report = wait_until(lambda: (h := health(port))[0] == 200 and h, 60, "a healthy ingestor")
        assert report["status"] == "ok"
        assert report["kafka"]["ok"] and report["scicat"]["ok"] and report["spool"]["ok"] and report["loop"]["ok"]

        scicat.set_down(True)  # 503 to everything
        status, report = wait_until(lambda: (h := health(port))[0] == 503 and h, 30, "503 while SciCat answers 503")
        assert report["status"] == "unhealthy"
        assert not report["scicat"]["ok"] and "HTTP 503" in report["scicat"]["state"]
        assert report["kafka"]["ok"] and report["spool"]["ok"]

        scicat.stop()  # connections refused
        status, report = wait_until(lambda: (h := health(port))[0] == 503 and "unreachable" in
                                    h[1]["scicat"]["state"] and h, 30, "503 while SciCat is gone")

        scicat.start()
        scicat.set_down(False)
        wait_until(lambda: health(port)[0] == 200, 30, "200 once SciCat is back")
        # Meanwhile the loop went on: a file still becomes a dataset.
        run = writer.run()
        wait_until(lambda: scicat.datasets_for_job(run["job_id"]), 60, "the dataset")


def test_metrics_and_the_statistics_line_count_what_an_end_to_end_run_did(tmp_path, scicat, writer,
                                                                         kafka_bootstrap, kafka_topic):
    port = free_port()
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url, **{"health.port": port})
    scicat.fail_next(503, path_prefix="/OrigDatablocks")  # one retry
    with IngestorProcess(tmp_path, config) as ingestor:
        runs = [writer.run() for _ in range(3)]
        writer.run(error=True)
        answ, x5f2, run_stop = producer.make_noise(job_id="noise-job")[:3]
        writer.send(answ, x5f2, run_stop, b"garbage, not a flatbuffer")
        wait_until(lambda: len(ingestor.audit()) == 4, 60, "four outcomes")
        wait_until(lambda: metrics(port).get(("scicat_ingestor_consumer_lag", (("partition", f"{kafka_topic}[0]"),)))
                   == 0, 30, "the lag back to 0")
        seen = metrics(port)
        scicat_requests = [r for r in scicat.requests_log if not r[1].endswith("/health")]
    assert ingestor.stop() == 0
    assert all(len(scicat.datasets_for_job(run["job_id"])) == 1 for run in runs)

    def sample(name: str, **labels: str) -> float:
        return seen[(name, tuple(sorted(labels.items())))]

    assert sample("scicat_ingestor_files_total", outcome="ingested") == 3 == len(scicat.datasets)
    assert sample("scicat_ingestor_files_total", outcome="skipped") == 1
    assert sample("scicat_ingestor_files_total", outcome="failed") == 0
    assert sample("scicat_ingestor_messages_total", type="pl72") == 4
    assert sample("scicat_ingestor_messages_total", type="wrdn") == 4
    assert sample("scicat_ingestor_messages_total", type="undecodable") == 1
    assert sample("scicat_ingestor_messages_total", type="answ") == 1
    assert sample("scicat_ingestor_messages_total", type="x5f2") == 1
    assert sample("scicat_ingestor_messages_total", type="6s4t") == 1
    assert sample("scicat_ingestor_spooled_total") == 1
    assert sample("scicat_ingestor_scicat_retries_total") == 1
    # Every request SciCat answered is in the latency histogram (the health probe is not the loop's).
    assert sample("scicat_ingestor_scicat_request_seconds_count") == len(scicat_requests)
    assert sample("scicat_ingestor_scicat_request_seconds_bucket", le="+Inf") == len(scicat_requests)
    assert sample("scicat_ingestor_scicat_request_seconds_sum") > 0
    assert sample("scicat_ingestor_kafka_up") == 1
    assert sample("scicat_ingestor_run_starts_waiting") == 0
    assert sample("process_resident_memory_bytes") > 0

    last = statistics_lines(ingestor.log())[-1]
    assert "files: ingested 3, duplicate 0, skipped 1, failed 0; spooled 1;" in last
    assert "messages: 6s4t 1, answ 1, pl72 4, undecodable 1, wrdn 4, x5f2 1;" in last
    assert f"SciCat retries 1, {len(scicat_requests)} requests" in last
    assert "consumer lag 0;" in last and "run starts waiting 0" in last


def test_consumer_lag_shows_the_messages_queued_behind_a_file_the_ingestor_waits_for(tmp_path, scicat, writer,
                                                                                     kafka_bootstrap, kafka_topic):
    port = free_port()
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url,
                             **{"health.port": port, "files.wait_s": 120})
    lag_key = ("scicat_ingestor_consumer_lag", (("partition", f"{kafka_topic}[0]"),))
    with IngestorProcess(tmp_path, config) as ingestor:
        late = writer.run(write_file=False)  # the file shows up on this host's mount late
        queued = [writer.run() for _ in range(4)]
        ingestor.wait_for_log("no such file; waiting for it", timeout=60)
        wait_until(lambda: metrics(port).get(lag_key, 0) > 0, 30, "a lag above 0 while waiting")
        assert health(port)[0] == 200  # waiting for a file is not ill health

        producer.write_nexus_file(late["path"], job_id=late["job_id"], instrument="DREAM", proposal="123456",
                                  run_number=1, title="late", events=10)
        wait_until(lambda: len(scicat.datasets) == 5, 60, "all five datasets")
        wait_until(lambda: metrics(port).get(lag_key) == 0, 30, "the lag back to 0")
    assert all(scicat.datasets_for_job(run["job_id"]) for run in [late, *queued])


def test_log_lines_reach_graylog_as_gelf_over_udp(tmp_path, scicat, writer, kafka_bootstrap, kafka_topic):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as graylog:
        graylog.bind(("127.0.0.1", 0))
        graylog.settimeout(1)
        config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url, **{
            "options.graylog_host": "127.0.0.1", "options.graylog_port": graylog.getsockname()[1],
            "options.graylog_facility": "sfi-test"})
        received: list[dict] = []

        def ingested_line_received() -> bool:
            try:
                received.append(json.loads(zlib.decompress(graylog.recv(65536))))
            except socket.timeout:
                pass
            return any(m["short_message"].startswith(f"ingested job {run['job_id']}") for m in received)

        with IngestorProcess(tmp_path, config, "--graylog"):
            run = writer.run()
            wait_until(ingested_line_received, 60, "the 'ingested' line at the Graylog socket", interval=0)
    starting = next(m for m in received if "starting with" in m["short_message"])
    assert starting["facility"] == "sfi-test" and starting["level"] == 6  # syslog's INFO
    assert all("secret" not in json.dumps(m) for m in received)


def test_graylog_asked_for_without_graypy_installed_says_so_in_one_line(tmp_path, scicat, kafka_bootstrap,
                                                                        kafka_topic):
    # A graypy that cannot be imported, as on a host where it was never installed.
    (tmp_path / "graypy.py").write_text("raise ImportError('No module named graypy')\n")
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url,
                             **{"options.graylog": True, "options.graylog_host": "127.0.0.1"})
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    path.chmod(0o600)  # it holds a password: readable by others, that would be warned about too
    result = subprocess.run([sys.executable, str(SCRIPT), "-c", str(path)], capture_output=True, text=True,
                            timeout=30, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "scicat_ingestor: configuration error: options.graylog: needs the Python package graypy, "
        "which is not installed (pip install graypy)"]
