"""Field templates end to end: the ingestor as a user runs it, the real broker, the SciCat
stand-in over HTTP. Templated fields give exactly their values; a templated pid makes a
file found again by --ingest-file, also when another ingestor created its dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
import requests

from ingestor_harness import SCRIPT, FileWriter, IngestorProcess, ingestor_config, wait_until

import producer  # noqa: E402  (examples/producer, put on the path by ingestor_harness)

pytestmark = pytest.mark.integration

PROPOSAL = {"proposalId": "654321", "ownerGroup": "p654321", "pi_firstname": "Marie", "pi_lastname": "Curie",
            "pi_email": "marie.curie@example.org", "email": "main.proposer@example.org", "title": "Bricks"}
FIELDS = {
    "pid": "{pid_prefix}/{nexus:/entry/entry_identifier_uuid}",
    "creationLocation": "/ESS/Lund/{instrument}",
    "ownerGroup": "ess_proposal_{proposal_id}",
    "keywords": ["{instrument}", "{metadata:sample_kind}", "neutron"],
    "description": "{title}, proposal {proposal_id}, run {run_number}",
    "ownerEmail": "{proposal:pi_email}",
}


def templated_config(tmp_path, kafka_bootstrap, kafka_topic, scicat) -> dict:
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, scicat.url)
    config["dataset"].pop("creation_location")  # fields.creationLocation instead
    config["dataset"].update(pid_prefix="20.500.12269", fields=FIELDS)
    return config


TECHNIQUES = [{"pid": "{metadata:technique_pid}", "name": "{metadata:technique}"}]


def ingest_files(tmp_path, config, *args: str) -> IngestorProcess:
    process = IngestorProcess(tmp_path, config, "--ingest-file", *args).start()
    process.process.wait(120)
    return process


def blocks_of(scicat, pid):
    return [b for b in scicat.origdatablocks if b["datasetId"] == pid]


def test_templated_fields_give_exactly_their_values_and_ingest_file_finds_the_file_again(
        tmp_path, scicat, kafka_bootstrap, kafka_topic):
    scicat.add_proposal(PROPOSAL)
    config = templated_config(tmp_path, kafka_bootstrap, kafka_topic, scicat)
    config["dataset"]["fields"] = {**FIELDS, "techniques": TECHNIQUES}  # the run's metadata names none
    writer = FileWriter(kafka_bootstrap, kafka_topic, tmp_path / "data")
    with IngestorProcess(tmp_path, config) as loop:
        run = writer.run(proposal="654321", metadata='{"sample_kind": "powder"}', title="Lego bricks")
        wait_until(lambda: scicat.datasets_for_job(run["job_id"]), 60, "the dataset")
        wait_until(loop.audit, 30, "the audit line")
        log = loop.log()

    [dataset] = scicat.datasets_for_job(run["job_id"])
    # The file writer stores the job id as the file's entry_identifier_uuid.
    assert dataset["pid"] == f"20.500.12269/{run['job_id']}"
    assert dataset["creationLocation"] == "/ESS/Lund/DREAM"
    assert dataset["ownerGroup"] == "ess_proposal_654321"  # not the proposal's p654321
    assert dataset["keywords"] == ["DREAM", "powder", "neutron"]
    assert dataset["description"] == "Lego bricks, proposal 654321, run 1"
    assert dataset["ownerEmail"] == "marie.curie@example.org"
    # A template without a value: the field's built-in rule (none for techniques), and a debug line.
    assert dataset["techniques"] == []
    assert (f"[DEBUG] SFI: job {run['job_id']}: techniques: its template {json.dumps(TECHNIQUES)}: no value for "
            "{metadata:technique_pid}; its built-in rule applies") in log
    assert len(blocks_of(scicat, dataset["pid"])) == 1

    # Backfilled after the loop: the same pid from the file, so found, not made twice.
    backfill = ingest_files(tmp_path, config, run["path"])
    assert backfill.process.returncode == 0, backfill.log()
    assert backfill.audit()[-1]["outcome"] == "duplicate" and backfill.audit()[-1]["pid"] == dataset["pid"]
    assert len(scicat.datasets) == 1 and len(blocks_of(scicat, dataset["pid"])) == 1


def create_as_scicat_ingestor_did(scicat, path: str, uuid_in_file: str) -> str:
    """A dataset and file list as the ESS scicat-ingestor's fallback schema makes them, over HTTP:
    pid 20.500.12269/<entry_identifier_uuid>, the file listed by its absolute path."""
    token = requests.post(scicat.url + "/auth/login", json={"username": "ingestor", "password": "secret"},
                          timeout=5).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    pid = f"20.500.12269/{uuid_in_file}"
    dataset = {"pid": pid, "type": "raw", "datasetName": "made by scicat-ingestor", "owner": "Marie Curie",
               "ownerEmail": "marie.curie@example.org", "contactEmail": "marie.curie@example.org",
               "principalInvestigator": "Marie Curie", "creationLocation": "ESS",
               "sourceFolder": os.path.dirname(os.path.dirname(path)), "creationTime": "2024-10-28T09:34:50.524Z",
               "ownerGroup": "p654321", "accessGroups": []}
    answer = requests.post(scicat.url + "/Datasets", json=dataset, headers=headers, timeout=5)
    assert answer.status_code == 201, answer.text
    block = {"datasetId": pid, "size": os.path.getsize(path), "chkAlg": "blake2b",
             "dataFileList": [{"path": path, "size": os.path.getsize(path), "time": "2024-10-28T09:34:50.000Z"}]}
    answer = requests.post(scicat.url + "/OrigDatablocks", json=block, headers=headers, timeout=5)
    assert answer.status_code == 201, answer.text
    return pid


def test_a_file_the_old_ingestor_created_is_found_as_already_there_by_the_loop_and_ingest_file(
        tmp_path, scicat, kafka_bootstrap, kafka_topic):
    config = templated_config(tmp_path, kafka_bootstrap, kafka_topic, scicat)
    data = tmp_path / "data"
    job_id = str(uuid.uuid4())
    path = str(data / "dream_654321_00000001.hdf")
    producer.write_nexus_file(path, job_id=job_id, proposal="654321", events=10)
    pid = create_as_scicat_ingestor_did(scicat, path, job_id)

    backfill = ingest_files(tmp_path, config, path)
    assert backfill.process.returncode == 0, backfill.log()
    assert [a["outcome"] for a in backfill.audit()] == ["duplicate"]
    assert f"already in SciCat: job {job_id}" in backfill.log()

    # The loop, told of the same file by its wrdn, finds it too.
    FileWriter(kafka_bootstrap, kafka_topic, data).send(producer.make_finished_writing(job_id=job_id, file_name=path))
    with IngestorProcess(tmp_path, config) as loop:
        wait_until(lambda: len(loop.audit()) == 2, 60, "the loop's audit line")
    assert [a["outcome"] for a in loop.audit()] == ["duplicate", "duplicate"]
    # Nothing made twice: neither the dataset nor its file list (listed there by its absolute path).
    assert list(scicat.datasets) == [pid] and len(blocks_of(scicat, pid)) == 1
    assert scicat.datasets[pid]["datasetName"] == "made by scicat-ingestor"


def test_a_spooled_file_the_old_ingestor_created_meanwhile_is_found_by_replay(tmp_path, scicat, kafka_bootstrap,
                                                                             kafka_topic):
    config = templated_config(tmp_path, kafka_bootstrap, kafka_topic, scicat)
    writer = FileWriter(kafka_bootstrap, kafka_topic, tmp_path / "data")
    scicat.reject_dataset_if(lambda dataset: True)
    with IngestorProcess(tmp_path, config) as loop:
        run = writer.run(proposal="654321")
        wait_until(loop.spooled, 60, "the spooled file")
    # Both ingestors ran while switching over: the old one made the dataset meanwhile.
    scicat.reject_dataset_if(None)
    pid = create_as_scicat_ingestor_did(scicat, run["path"], run["job_id"])

    replay = IngestorProcess(tmp_path, config, "--replay").start()
    assert replay.process.wait(60) == 0, replay.log()
    assert replay.audit()[-1]["outcome"] == "duplicate" and replay.audit()[-1]["pid"] == pid
    assert replay.spooled() == []
    assert list(scicat.datasets) == [pid] and len(blocks_of(scicat, pid)) == 1


def report(result: subprocess.CompletedProcess) -> dict[str, str]:
    """The field-source report's lines, by field: printed, or logged to stdout with -v."""
    lines = [line.split(" SFI: ", 1)[-1] for line in result.stdout.splitlines()]
    return {line.split()[0]: line for line in lines if line.startswith("  ")}


def test_check_config_and_dry_run_show_each_field_of_a_files_dataset_and_where_it_came_from(
        tmp_path, scicat, kafka_bootstrap, kafka_topic):
    scicat.add_proposal(PROPOSAL)
    config = templated_config(tmp_path, kafka_bootstrap, kafka_topic, scicat)
    config["dataset"]["fields"] = {**FIELDS, "techniques": [{"pid": "{metadata:technique_pid}", "name": "x"}]}
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    config_path.chmod(0o600)
    job_id = str(uuid.uuid4())
    path = str(tmp_path / "data" / "dream_654321_00000001.hdf")
    producer.write_nexus_file(path, job_id=job_id, proposal="654321", events=10)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(SCRIPT), "-c", str(config_path), *args, "--ingest-file", path],
                              capture_output=True, text=True, timeout=120)

    checked = run("--check-config")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "--check-config: 7 checks, all passed" in checked.stdout
    fields = report(checked)
    assert fields["pid"].endswith(f'"20.500.12269/{job_id}"  <- template: '
                                  "{pid_prefix}/{nexus:/entry/entry_identifier_uuid}")
    assert fields["ownerEmail"].endswith('"marie.curie@example.org"  <- template: {proposal:pi_email}')  # SciCat asked
    assert fields["ownerGroup"].endswith('"ess_proposal_654321"  <- template: ess_proposal_{proposal_id}')
    assert fields["proposalId"].endswith('"654321"  <- file: /entry/experiment_identifier')
    assert fields["principalInvestigator"].endswith('"Marie Curie"  <- lookup: the proposal\'s PI')
    assert fields["contactEmail"].endswith("<- file: the NXusers' emails")
    assert fields["creationTime"].endswith("<- ingestor: the file's modification time")
    assert fields["techniques"].endswith("(left out)  <- template [{\"pid\": \"{metadata:technique_pid}\", "
                                         "\"name\": \"x\"}]: no value for {metadata:technique_pid}")
    assert "settings of dataset (no instrument section for DREAM, no path pattern matches)" in checked.stdout
    assert "--ingest-file: 1 file: 1 would be created" in checked.stdout
    assert scicat.datasets == {} and scicat.origdatablocks == []  # nothing written

    logins = scicat.logins
    dry = run("--dry-run", "-v")  # logged: without -v a dry run says its summary only
    assert dry.returncode == 0, dry.stdout + dry.stderr
    fields = report(dry)
    assert fields["pid"].endswith(f'"20.500.12269/{job_id}"  <- template: '
                                  "{pid_prefix}/{nexus:/entry/entry_identifier_uuid}")
    # A dry run asks SciCat nothing: the proposal's values are not there, the built-in rules give the rest.
    assert fields["ownerEmail"].endswith("(left out)  <- template {proposal:pi_email}: "
                                         "no value for {proposal:pi_email}")
    assert fields["principalInvestigator"].endswith("<- file: first NXuser's name")
    assert scicat.datasets == {} and scicat.logins == logins

    # Once the file is in SciCat, --check-config --ingest-file says so.
    create_as_scicat_ingestor_did(scicat, path, job_id)
    again = run("--check-config")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "--ingest-file: 1 file: 1 already in SciCat" in again.stdout
    assert len(scicat.datasets) == 1 and len(scicat.origdatablocks) == 1
