"""End to end: each dataset gets exactly one picture of its file's default plot, through the
real broker, the real script and real HTTP; a file without NXdata gets none; a redelivered
message, a replay or an answer lost after SciCat made the attachment never make a second."""

from __future__ import annotations

import base64
import io
import urllib.parse

import pytest
from PIL import Image

import scicat_ingestor as si
from fault_proxy import FaultProxy
from ingestor_harness import FileWriter, IngestorProcess, ingestor_config, producer, wait_until

pytestmark = pytest.mark.integration

PID_PREFIX = "20.500.12269"


def picture_size(attachment: dict) -> tuple[int, int]:
    uri = attachment["thumbnail"]
    assert uri.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert image.format == "PNG"
    return image.size


def dataset_of(scicat, run) -> dict:
    return wait_until(lambda: (scicat.datasets_for_job(run["job_id"]) or [None])[0], 60, "the dataset")


def audit_of(ingestor, run, count: int = 1) -> list[dict]:
    return wait_until(lambda: [a for a in ingestor.audit() if a["job_id"] == run["job_id"]][count - 1:] and
                      [a for a in ingestor.audit() if a["job_id"] == run["job_id"]], 60, "the audit lines")


def test_each_dataset_gets_one_picture_and_a_file_without_nxdata_none(tmp_path, data_dir, api, scicat,
                                                                      kafka_bootstrap, kafka_topic):
    """In v3 and in v4 (scicat.api; in v4 the stand-in has v3 switched off, so a v3 call fails)."""
    writer = FileWriter(kafka_bootstrap, kafka_topic, data_dir)
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url, api=api,
                             **{"thumbnail.width": 480, "thumbnail.height": 320})
    with IngestorProcess(tmp_path, config) as ingestor:
        plotted, bare = writer.run(), writer.run(plots=False)
        plotted_pid, bare_pid = dataset_of(scicat, plotted)["pid"], dataset_of(scicat, bare)["pid"]
        [first] = audit_of(ingestor, plotted)
        [second] = audit_of(ingestor, bare)
        # The redelivered wrdn of the first: its dataset is found, and so is its picture.
        writer.finish(plotted)
        audit_of(ingestor, plotted, count=2)
        log = ingestor.log()
    [attachment] = scicat.attachments_of(plotted_pid)
    assert picture_size(attachment) == (480, 320)
    assert attachment["caption"] == "Default plot: /entry/detector_image/counts"
    assert (attachment["ownerGroup"], attachment["accessGroups"]) == ("ess", ["dream"])
    assert scicat.attachments_of(bare_pid) == []
    assert first["thumbnail"] == "attached" and second["thumbnail"] == "none: no NXdata with a signal"
    redelivered = [a for a in ingestor.audit() if a["job_id"] == plotted["job_id"]][1]
    assert redelivered["outcome"] == "duplicate" and redelivered["thumbnail"] == "attached already"
    assert "without a thumbnail" not in log  # no warning for the file that has nothing to draw
    posts = [path for method, path, status in scicat.requests_log if method == "POST" and "ttachments" in path]
    assert posts == [{"v3": f"/api/v3/Datasets/{urllib.parse.quote(plotted_pid, safe='')}/attachments",
                      "v4": "/api/v4/attachments"}[api]]


@pytest.fixture
def proxy(scicat):
    proxy = FaultProxy(("127.0.0.1", scicat.port))
    yield proxy
    proxy.close()


@pytest.mark.parametrize("mode", ["502-after-forward", "reset-after-forward"])
def test_an_attachment_whose_answer_is_lost_is_found_not_made_again(tmp_path, data_dir, api, scicat, proxy,
                                                                    kafka_bootstrap, kafka_topic, mode):
    writer = FileWriter(kafka_bootstrap, kafka_topic, data_dir)
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, proxy.url + "/api/v3", api=api,
                             **{"scicat.retry_backoff_s": 0.2})
    config["dataset"]["pid_prefix"] = PID_PREFIX
    run = writer.run(send_finish=False)
    pid = si.deterministic_pid(PID_PREFIX, run["job_id"], run["path"].rsplit("/", 1)[-1])
    proxy.fail(mode, "POST", {"v3": f"/api/v3/Datasets/{urllib.parse.quote(pid, safe='')}/attachments",
                              "v4": "/api/v4/attachments"}[api])
    with IngestorProcess(tmp_path, config) as ingestor:
        writer.finish(run)
        [line] = audit_of(ingestor, run)
        ingestor.wait_for_log("not created again")
    assert proxy.applied(mode) == 1
    assert line["outcome"] == "ingested" and line["thumbnail"] == "attached"
    assert len(scicat.attachments_of(pid)) == 1


def test_a_picture_scicat_refuses_leaves_the_dataset_and_ingesting_again_attaches_it_once(
        tmp_path, data_dir, scicat, kafka_bootstrap, kafka_topic):
    writer = FileWriter(kafka_bootstrap, kafka_topic, data_dir)
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url, api="v3")  # the path refused
    config["dataset"]["pid_prefix"] = PID_PREFIX
    run = writer.run(send_finish=False)
    pid = si.deterministic_pid(PID_PREFIX, run["job_id"], run["path"].rsplit("/", 1)[-1])
    scicat.fail_next(400, path_prefix=f"/api/v3/Datasets/{urllib.parse.quote(pid, safe='')}/attachments")
    with IngestorProcess(tmp_path, config) as ingestor:
        writer.finish(run)
        [line] = audit_of(ingestor, run)
        ingestor.wait_for_log("goes without a thumbnail")
    assert line["outcome"] == "ingested" and line["thumbnail"].startswith("failed: SciCat refused it")
    assert scicat.attachments_of(pid) == [] and ingestor.spooled() == []
    # --ingest-file of the same file, twice, as a backfill would: one picture.
    for attempt in ("attached", "attached already"):
        again = IngestorProcess(tmp_path, config, "--ingest-file", run["path"]).start()
        assert again.process.wait(60) == 0, again.log()[-3000:]
        assert again.audit()[-1]["outcome"] == "duplicate" and again.audit()[-1]["thumbnail"] == attempt
    assert len(scicat.attachments_of(pid)) == 1


def test_a_picture_that_fails_costs_a_warning_and_an_audit_note_not_the_dataset(tmp_path, data_dir, scicat,
                                                                                 kafka_bootstrap, kafka_topic):
    writer = FileWriter(kafka_bootstrap, kafka_topic, data_dir)
    # Chunks of the image larger than the budget: drawing it fails; the dataset must not.
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url, **{"thumbnail.max_read_mb": 0.001})
    with IngestorProcess(tmp_path, config) as ingestor:
        run = writer.run()
        pid = dataset_of(scicat, run)["pid"]
        [line] = audit_of(ingestor, run)
        ingestor.wait_for_log("goes without a thumbnail")
    assert line["outcome"] == "ingested" and line["thumbnail"].startswith("failed: ThumbnailTooCostly")
    assert scicat.attachments_of(pid) == []
    assert [b["datasetId"] for b in scicat.origdatablocks] == [pid]
    assert ingestor.spooled() == []


def test_the_producer_writes_a_default_plot_the_ingestor_draws(tmp_path):
    path = tmp_path / "run.hdf"
    producer.write_nexus_file(str(path), job_id="job-1", run_number=2)
    outcome = si.picture_of_file(str(path), si.ThumbnailConfig())
    assert outcome.thumbnail.caption == "Default plot: /entry/detector_image/counts"
    assert 5_000 < len(outcome.thumbnail.png) < 60_000


def test_a_picture_that_hangs_costs_the_picture_not_the_file_nor_the_loop(tmp_path, data_dir, scicat,
                                                                           kafka_bootstrap, kafka_topic):
    """The default plot is an external link into a FIFO, as a hung mount behaves: open(2) never
    returns. The file is ingested without a picture at thumbnail.timeout_s, and the next one too."""
    import os

    import h5py

    writer = FileWriter(kafka_bootstrap, kafka_topic, data_dir)
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url, **{"thumbnail.timeout_s": 2})
    hung = writer.run(send_finish=False, plots=False)
    os.mkfifo(data_dir / "hung-mount.nxs")
    with h5py.File(hung["path"], "a") as f:
        f.attrs["default"] = "entry"
        f["entry"].attrs["default"] = "plots"
        plots = f["entry"].create_group("plots")  # below what the metadata is read from
        plots.attrs["default"] = "data"
        plots["data"] = h5py.ExternalLink(str(data_dir / "hung-mount.nxs"), "/entry/data")
    with IngestorProcess(tmp_path, config) as ingestor:
        writer.finish(hung)
        [line] = audit_of(ingestor, hung)
        after = writer.run()
        [next_line] = audit_of(ingestor, after)
        assert ingestor.running()
    assert line["outcome"] == "ingested"
    assert line["thumbnail"] == "failed: drawing it did not finish within thumbnail.timeout_s (2 s)"
    assert next_line["outcome"] == "ingested" and next_line["thumbnail"] == "attached"
    assert scicat.attachments_of(dataset_of(scicat, hung)["pid"]) == []


@pytest.mark.parametrize("api", ["v3", "v4"])
def test_the_publisher_attaches_once_over_either_api_version(api, tmp_path):
    """The attaching step against the stand-in over real HTTP, in each API version's shape: the
    first call attaches, the second (a redelivery) finds it; in v4 by the relationship's filter."""
    from scicat_standin import SciCatStandIn

    with SciCatStandIn(static_tokens={"static-token": "ingestor"}) as standin:
        v3 = si.SciCatConfig(host=standin.url, token="static-token", retry_backoff_s=0.1)
        pid = si.SciCatClient(v3).post_dataset({
            "type": "raw", "owner": "Ada", "ownerGroup": "ess", "accessGroups": ["dream"],
            "contactEmail": "ada@example.org", "sourceFolder": str(tmp_path), "creationTime": "2026-01-01T00:00:00Z",
            "principalInvestigator": "Ada", "creationLocation": "/ESS/DREAM", "datasetName": "run"})["pid"]
        config = si.SciCatConfig(host=standin.url, token="static-token", api=api)
        publisher = si.Publisher(si.SciCatClient(config), config, check_by_job_id=False, wait=lambda s: None)
        found = si.DatasetMade("duplicate", {"pid": pid}, just_posted=False)
        thumbnail = si.Thumbnail(b"\x89PNG\r\n\x1a\n", "Default plot: /entry/data/signal", 400, 300)
        dataset = {"ownerGroup": "ess", "accessGroups": ["dream"]}
        assert publisher.attach(found, dataset, thumbnail) == "attached"
        assert publisher.attach(found, dataset, thumbnail) == "attached already"
        [attachment] = standin.attachments_of(pid)
        posted = [path for method, path, _ in standin.requests_log if method == "POST" and "ttachments" in path]
    assert posted == [{"v3": f"/api/v3/Datasets/{urllib.parse.quote(pid, safe='')}/attachments",
                       "v4": "/api/v4/attachments"}[api]]
    assert attachment["caption"] == "Default plot: /entry/data/signal"
    assert attachment["relationships"] == [{"targetId": pid, "targetType": "dataset", "relationType": "is attached to"}]
    assert attachment["thumbnail"] == thumbnail.data_uri()


def test_replay_attaches_the_picture_of_a_dataset_left_without_files_and_a_second_replay_none(
        tmp_path, data_dir, scicat, proxy, kafka_bootstrap, kafka_topic):
    import shutil

    writer = FileWriter(kafka_bootstrap, kafka_topic, data_dir)
    refusals = proxy.fail("answer", "POST", "/api/v3/OrigDatablocks", times=1000, status=500)
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, proxy.url + "/api/v3", api="v3",
                             **{"scicat.max_retries": 1, "scicat.retry_backoff_s": 0.1})
    with IngestorProcess(tmp_path, config) as ingestor:
        run = writer.run()
        wait_until(ingestor.spooled, 60, "the file spooled")
    pid = dataset_of(scicat, run)["pid"]
    assert scicat.attachments_of(pid) == []  # the file list failed first: no picture yet
    spool = tmp_path / "spool" / "failed.jsonl"
    shutil.copy(spool, tmp_path / "spooled-again.jsonl")
    refusals.times = 0  # SciCat recovers
    for attempt in ("attached", "attached already"):
        replay = IngestorProcess(tmp_path, config, "--replay").start()
        assert replay.process.wait(60) == 0, replay.log()[-3000:]
        assert replay.audit()[-1]["thumbnail"] == attempt
        shutil.copy(tmp_path / "spooled-again.jsonl", spool)  # the same record replayed once more
    assert len(scicat.attachments_of(pid)) == 1
