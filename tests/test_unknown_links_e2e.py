"""A configuration naming an instrument, proposal and sample SciCat does not have
(what a new user starts with) ingests every file, through the real broker and the
stand-in answering as the real backend does (an unknown instrument id: 200, empty body)."""

from __future__ import annotations

import pytest

from ingestor_harness import FileWriter, IngestorProcess, ingestor_config, one_dataset_each, wait_until

pytestmark = pytest.mark.integration

FILES = 5


def gets(scicat, path):
    return sum(1 for method, p, _ in scicat.requests_log if method == "GET" and p == "/api/v3" + path)


@pytest.fixture
def setup(tmp_path, kafka_bootstrap, kafka_topic):
    data = tmp_path / "data"
    data.mkdir()
    writer = FileWriter(kafka_bootstrap, kafka_topic, data)
    config = ingestor_config(tmp_path, kafka_bootstrap, kafka_topic, "", **{
        "dataset.instrument_id": "no-such-instrument", "dataset.creation_location": "/ESS/{instrument}",
        "scicat.lookup_cache_s": 600})
    return writer, config


def ingest_runs(tmp_path, scicat, writer, config, count):
    config["scicat"]["host"] = scicat.url
    with IngestorProcess(tmp_path, config) as ingestor:
        runs = [writer.run(proposal="999999", metadata='{"sample_id": "S-404"}') for _ in range(count)]
        wait_until(lambda: one_dataset_each(scicat, runs), 90, "a dataset for every file")
        ingestor.wait_for_log("ingested job", count=count)
        return runs, ingestor.log(), ingestor.audit(), ingestor.spooled()


def test_unknown_instrument_proposal_and_sample_cost_no_file(tmp_path, scicat, setup):
    writer, config = setup
    runs, log, audit, spooled = ingest_runs(tmp_path, scicat, writer, config, FILES)

    assert spooled == [] and [a["outcome"] for a in audit] == ["ingested"] * FILES
    for run in runs:
        [dataset] = scicat.datasets_for_job(run["job_id"])
        assert dataset["creationLocation"] == "/ESS/DREAM"  # the run start's instrument, no Instrument record
        assert dataset["proposalId"] == "999999"  # the file's, though SciCat has no such proposal
        assert dataset["ownerGroup"] == "ess" and dataset["accessGroups"] == ["dream"]  # configured defaults
        assert dataset.get("instrumentId") is None and dataset.get("sampleId") is None
        job = run["job_id"]
        # One warning per missing link and file, naming it.
        assert log.count(f"job {job}: proposal 999999 not in SciCat") == 1
        assert log.count(f"job {job}: instrument id no-such-instrument / name DREAM not in SciCat") == 1
        # The message's sample id, then the file's sample name: both tried, one warning.
        assert log.count(f"job {job}: sample S-404 / a sample not in SciCat") == 1
    for line in audit:
        assert sorted(line["missing_links"]) == ["instrument id no-such-instrument / name DREAM: not in SciCat",
                                                 "proposal 999999: not in SciCat", "sample S-404 / a sample: not in SciCat"]
    # "Not there" is cached like an answer: one request per cache period, not one per file.
    assert gets(scicat, "/Instruments/no-such-instrument") == 1
    assert gets(scicat, "/Instruments") == 1
    assert gets(scicat, "/Proposals/999999") == 1 and gets(scicat, "/Samples/S-404") == 1 == gets(scicat, "/Samples/a%20sample")


def test_each_cache_period_asks_once_more(tmp_path, scicat, setup):
    writer, config = setup
    config["scicat"]["lookup_cache_s"] = 0  # a period shorter than a file: every file asks
    ingest_runs(tmp_path, scicat, writer, config, 3)
    assert gets(scicat, "/Instruments/no-such-instrument") == 3


def test_a_lookup_that_fails_after_its_retries_costs_no_file(tmp_path, scicat, setup):
    writer, config = setup
    scicat.fail_next(503, count=1000, path_prefix="/Proposals")  # the proposal route is broken
    runs, log, audit, spooled = ingest_runs(tmp_path, scicat, writer, config, 2)
    assert spooled == [] and [a["outcome"] for a in audit] == ["ingested", "ingested"]
    assert all(scicat.datasets_for_job(run["job_id"])[0]["proposalId"] == "999999" for run in runs)
    assert log.count("proposal 999999 SciCat could not tell (GET /Proposals/999999: HTTP 503") == 2
    for line in audit:
        [proposal] = [m for m in line["missing_links"] if m.startswith("proposal")]
        assert proposal.startswith("proposal 999999: SciCat could not tell (") and "503" in proposal
