"""Metadata worth finding: the proposal, instrument and sample SciCat has, per-instrument
settings, and --ingest-file, run as a user runs them, against the SciCat stand-in."""

from __future__ import annotations

import json
import uuid

import pytest

from ingestor_harness import FileWriter, IngestorProcess, ingestor_config, wait_until
from scicat_standin import SciCatStandIn

import producer  # noqa: E402  (examples/producer, put on the path by ingestor_harness)

pytestmark = pytest.mark.integration

PROPOSAL = {"proposalId": "654321", "ownerGroup": "p654321", "accessGroups": ["p654321-team"],
            "pi_firstname": "Marie", "pi_lastname": "Curie", "pi_email": "marie.curie@example.org",
            "email": "main.proposer@example.org", "title": "Bricks under neutrons"}
# What the producer writes in every file's NXuser groups.
FILE_EMAILS = "ada.lovelace@example.org;lise.meitner@example.org"


def lookups_of(scicat, path):
    return [entry for entry in scicat.requests_log if entry[0] == "GET" and entry[1] == "/api/v3" + path]


def ingest_files(tmp_path, config, *paths, extra=()) -> IngestorProcess:
    """scicat_ingestor.py --ingest-file PATH..., run to its end."""
    process = IngestorProcess(tmp_path, config, *extra, "--ingest-file", *map(str, paths)).start()
    process.process.wait(120)
    return process


def test_groups_people_instrument_and_sample_come_from_what_scicat_has(tmp_path, scicat, kafka_bootstrap,
                                                                       kafka_topic):
    scicat.add_proposal(PROPOSAL)
    scicat.add_instrument({"pid": "ins-dream", "name": "DREAM", "uniqueName": "dream"})
    scicat.add_sample({"sampleId": "S-1", "ownerGroup": "p654321"})
    data = tmp_path / "data"
    writer = FileWriter(kafka_bootstrap, kafka_topic, data)
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url)
    # An instrument id SciCat answers with 200 and null: looked up by name instead.
    config["dataset"].update(ingestor_group="ingestor", instrument_id="gone-id")
    with IngestorProcess(tmp_path, config) as ingestor:
        known = writer.run(proposal="654321", metadata='{"sample_id": "S-1"}')
        unknown = writer.run(proposal="999000", metadata='{"sample_id": "S-404"}')
        again = writer.run(proposal="654321")
        for run in (known, unknown, again):
            wait_until(lambda: scicat.datasets_for_job(run["job_id"]), 60, "the datasets")
        log = ingestor.log()

    [dataset] = scicat.datasets_for_job(known["job_id"])
    assert dataset["proposalId"] == "654321"
    assert dataset["ownerGroup"] == "p654321"
    assert dataset["accessGroups"] == ["p654321-team", "ingestor"]
    assert dataset["principalInvestigator"] == "Marie Curie"
    assert dataset["contactEmail"] == FILE_EMAILS  # the people in the file come before the proposal
    assert dataset["instrumentId"] == "ins-dream"
    assert dataset["sampleId"] == "S-1"

    [fallback] = scicat.datasets_for_job(unknown["job_id"])
    assert fallback["proposalId"] == "999000"
    assert fallback["ownerGroup"] == "ess" and fallback["accessGroups"] == ["dream", "ingestor"]
    assert fallback["principalInvestigator"] == "Ada Lovelace"  # the file's first user
    assert fallback["instrumentId"] == "ins-dream"
    assert "sampleId" not in fallback  # S-404 is not in SciCat
    assert fallback["scientificMetadata"]["sample_id"]["value"] == "S-404"  # still searchable

    # Asked once, then reused: three files, two proposals, one instrument.
    assert len(lookups_of(scicat, "/Proposals/654321")) == 1
    assert len(lookups_of(scicat, "/Proposals/999000")) == 1
    assert len(lookups_of(scicat, "/Instruments/gone-id")) == 1
    assert len(lookups_of(scicat, "/Instruments")) == 1
    assert "instrument id gone-id is not in SciCat" in log
    assert f"job {unknown['job_id']}: proposal 999000 not in SciCat" in log


@pytest.fixture
def no_admin_scicat():
    """An ingestor account that may create datasets for any group but, no admin, reads only its own."""
    with SciCatStandIn(admin_users=set(), user_groups={"ingestor": ["ingestor"]}) as standin:
        yield standin
    assert not standin.internal_errors, standin.internal_errors
    assert not standin.sdk_disagreements, standin.sdk_disagreements


def offline_config(tmp_path, scicat_url, **overrides):
    # --ingest-file needs no Kafka: the kafka section is there, never used.
    return ingestor_config(tmp_path, "127.0.0.1:9", "unused", scicat_url, **overrides)


def write_folder(folder):
    """Three NeXus files in a folder and a subfolder, a file still being written and a non-NeXus file."""
    files = []
    for number, (where, instrument) in enumerate([("", "DREAM"), ("", "YMIR"), ("later", "DREAM")], start=1):
        path = folder / where / f"{instrument.lower()}_123456_{number:08d}.hdf"
        job_id = str(uuid.uuid4())
        producer.write_nexus_file(str(path), job_id=job_id, instrument=instrument, run_number=number,
                                  title=f"backfill {number}", events=10)
        files.append({"path": str(path), "job_id": job_id, "instrument": instrument})
    (folder / ".dream_123456_00000009.hdf").write_bytes(b"half written")
    (folder / "notes.txt").write_text("not a NeXus file")
    return files


def test_ingest_file_ingests_each_file_of_a_folder_once_and_a_second_run_duplicates_nothing(tmp_path,
                                                                                            no_admin_scicat):
    scicat = no_admin_scicat
    data = tmp_path / "data"
    files = write_folder(data)
    config = offline_config(tmp_path, scicat.url)
    # Without its group in accessGroups the account could not find what it created, and the
    # second run would make every dataset again.
    config["dataset"]["ingestor_group"] = "ingestor"
    config["instruments"] = {"ymir": {"creation_location": "/ESS/YMIR",
                                      "scientific_metadata": [{"path": "/entry/title", "key": "run_title"},
                                                              {"path": "/entry/instrument/**/value"}]}}

    first = ingest_files(tmp_path, config, data)
    assert first.process.returncode == 0, first.log()
    assert [a["outcome"] for a in first.audit()] == ["ingested"] * 3
    assert sorted(a["file"] for a in first.audit()) == sorted(f["path"] for f in files)
    for f in files:
        [dataset] = scicat.datasets_for_job(f["job_id"])  # the job id the writer stored in the file
        assert dataset["accessGroups"] == ["dream", "ingestor"]
    [ymir] = [scicat.datasets_for_job(f["job_id"])[0] for f in files if f["instrument"] == "YMIR"]
    assert ymir["creationLocation"] == "/ESS/YMIR"
    science = ymir["scientificMetadata"]
    assert science["run_title"]["value"] == "backfill 2"
    assert science["instrument_sample_temperature_value"]["unit"] == "K"
    assert science["instrument_sample_temperature_value"]["value"]["shape"] == [60]
    assert "title" not in science  # YMIR's own list replaces the default one
    [dream, _] = [scicat.datasets_for_job(f["job_id"])[0] for f in files if f["instrument"] == "DREAM"]
    assert dream["creationLocation"] == "/ESS/DREAM" and dream["scientificMetadata"]["title"]["value"]

    second = ingest_files(tmp_path, config, *(f["path"] for f in files))
    assert second.process.returncode == 0, second.log()
    assert [a["outcome"] for a in second.audit()] == ["ingested"] * 3 + ["duplicate"] * 3
    assert len(scicat.datasets) == 3 and len(scicat.origdatablocks) == 3
    assert second.spooled() == []


def test_a_file_the_loop_ingested_is_found_again_by_ingest_file(tmp_path, scicat, kafka_bootstrap, kafka_topic):
    """The loop knows the file by the writer's path, --ingest-file by this host's: another pid, the same job."""
    data = tmp_path / "data"
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url,
                             **{"files.path_map": {"/writer/out": str(data)}})
    config["dataset"]["pid_prefix"] = "20.500.12269"
    job_id = str(uuid.uuid4())
    producer.write_nexus_file(str(data / "dream_123456_00000001.hdf"), job_id=job_id, events=10)
    FileWriter(kafka_bootstrap, kafka_topic, data).send(
        producer.make_finished_writing(job_id=job_id, file_name="/writer/out/dream_123456_00000001.hdf"))
    with IngestorProcess(tmp_path, config) as loop:
        wait_until(lambda: scicat.datasets_for_job(job_id), 60, "the dataset")
        wait_until(loop.audit, 30, "the audit line")
    [dataset] = scicat.datasets_for_job(job_id)

    backfill = ingest_files(tmp_path, config, data)
    assert backfill.process.returncode == 0, backfill.log()
    assert [a["outcome"] for a in backfill.audit()] == ["ingested", "duplicate"]
    assert backfill.audit()[-1]["pid"] == dataset["pid"]
    assert len(scicat.datasets_for_job(job_id)) == 1


def test_ingest_file_spools_what_fails_and_refuses_a_path_that_is_not_there(tmp_path, scicat):
    data = tmp_path / "data"
    data.mkdir()
    (data / "broken.hdf").write_text("not HDF5 at all")
    outside = tmp_path / "elsewhere" / "dream_123456_00000001.hdf"
    stored_job_id = str(uuid.uuid4())
    producer.write_nexus_file(str(outside), job_id=stored_job_id, events=10)
    config = offline_config(tmp_path, scicat.url, **{"files.wait_s": 0, "files.allowed_roots": [str(data)]})

    failed = ingest_files(tmp_path, config, data, outside)
    assert failed.process.returncode == 1
    broken, elsewhere = failed.spooled()
    assert broken["finished"]["file_name"] == str(data / "broken.hdf") and "HDF5" in broken["reason"]
    assert elsewhere["finished"]["file_name"] == str(outside) and "outside the allowed roots" in elsewhere["reason"]
    assert elsewhere["finished"]["job_id"] != stored_job_id  # a file outside the roots is not even opened
    assert [a["outcome"] for a in failed.audit()] == ["failed", "failed"]

    missing = ingest_files(tmp_path, config, data / "nowhere.hdf")
    assert missing.process.returncode == 2
    assert f"no such file or folder: {data / 'nowhere.hdf'}" in missing.log()
    assert scicat.datasets == {}


def test_dry_run_ingest_file_asks_and_writes_nothing(tmp_path, scicat):
    scicat.add_proposal(PROPOSAL)
    files = write_folder(tmp_path / "data")
    config = offline_config(tmp_path, scicat.url)
    dry = ingest_files(tmp_path, config, files[0]["path"], extra=("--dry-run",))
    assert dry.process.returncode == 0, dry.log()
    created = [json.loads(line.split("would create dataset ", 1)[1]) for line in dry.log().splitlines()
               if "would create dataset " in line]
    assert [d["scientificMetadata"]["job_id"]["value"] for d in created] == [files[0]["job_id"]]
    assert created[0]["ownerGroup"] == "ess"  # the proposal was not asked for
    assert scicat.requests_log == []
