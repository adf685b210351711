"""scicat.api: datasets and origdatablocks through SciCat's v3 or v4 API, chosen by the
configuration or (auto) by asking the backend; the v3 names the builder uses translated to v4's."""

from __future__ import annotations

import logging
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import scicat_ingestor as si  # noqa: E402
from ingestor_harness import IngestorProcess, ingestor_config, producer  # noqa: E402
from scicat_standin import SciCatStandIn  # noqa: E402
from test_config import minimal_config  # noqa: E402

# What the builder makes in v3 names, with every field v4 names otherwise.
V3_DATASET = {
    "type": "raw", "owner": "Jane Doe", "ownerGroup": "ess", "accessGroups": ["dream"],
    "contactEmail": "jane@example.org", "sourceFolder": "/data/dream/2024", "creationTime": "2024-10-28T09:32:35Z",
    "datasetName": "run 1234", "creationLocation": "/ESS/DREAM", "principalInvestigator": "John Smith",
    "proposalId": "654321", "sampleId": "si-standard", "instrumentId": "20.500.12269abc",
    "scientificMetadata": {"job_id": {"value": "job-1", "unit": ""}},
}


def client_of(standin: SciCatStandIn, api: str, **settings) -> si.SciCatClient:
    return si.SciCatClient(si.SciCatConfig(host=standin.url, username="ingestor", password="secret", api=api,
                                           max_retries=1, retry_backoff_s=0.01, **settings))


# -- the translation ------------------------------------------------------------------


@pytest.mark.parametrize("v3_name, v4_name", sorted(si.V4_LISTS.items()))
def test_each_v3_name_v4_refuses_becomes_its_v4_list(v3_name, v4_name):
    translated = si.in_v4_names({"datasetName": "run 1234", v3_name: "x"})
    assert translated == {"datasetName": "run 1234", v4_name: ["x"]}


def test_every_other_field_is_passed_on_as_it_is_and_a_list_stays_a_list():
    dataset = {**V3_DATASET, "keywords": ["DREAM"], "ownerEmail": "jane@example.org", "someFutureField": {"a": 1},
               "principalInvestigator": ["John Smith", "Ada Lovelace"], "sampleId": None}
    translated = si.in_v4_names(dataset)
    assert translated["principalInvestigators"] == ["John Smith", "Ada Lovelace"]
    assert "sampleIds" not in translated and not set(si.V4_LISTS) & set(translated)
    untouched = set(dataset) - set(si.V4_LISTS)
    assert {k: translated[k] for k in untouched} == {k: dataset[k] for k in untouched}
    assert si.DatasetApi.of("v3", "https://x/api/v3", "").dataset_payload(dataset) is dataset


def test_v4_takes_the_translated_dataset_and_refuses_the_v3_names():
    with SciCatStandIn(apis=("v4",)) as standin:
        client = client_of(standin, "v4")
        client.login()
        refused = client.request("POST", "/datasets", dict(V3_DATASET), base=si.v4_base(standin.url))
        assert refused.status_code == 400 and "property principalInvestigator should not exist" in refused.text
        made = client.post_dataset(dict(V3_DATASET))
        assert made["principalInvestigators"] == ["John Smith"] and made["proposalIds"] == ["654321"]
        [stored] = standin.datasets.values()
        assert (stored["version"], stored["sampleIds"], stored["instrumentIds"]) == (
            "4", ["si-standard"], ["20.500.12269abc"])


@pytest.mark.parametrize("host, base", [("https://scicat.example.org/api/v3", "https://scicat.example.org/api/v4"),
                                        ("http://scicat:3000/api/V3/", "http://scicat:3000/api/v4"),
                                        ("https://scicat.example.org/backend", "")])
def test_the_v4_base_is_made_of_scicat_host(host, base):
    assert si.v4_base(host) == base


# -- the configuration ------------------------------------------------------------------


def with_scicat(**settings) -> dict:
    raw = minimal_config()
    raw["scicat"].update(settings)
    return raw


def test_scicat_api_is_auto_unless_set_and_only_v3_v4_or_auto():
    assert si.parse_config(minimal_config()).scicat.api == "auto"
    assert si.parse_config(with_scicat(api="v4")).scicat.api == "v4"
    with pytest.raises(si.ConfigError, match="scicat.api: expected one of auto, v3, v4"):
        si.parse_config(with_scicat(api="4"))
    with pytest.raises(si.ConfigError, match="scicat.api: v4 needs scicat.host to end in /v3"):
        si.parse_config(with_scicat(api="v4", host="http://scicat.test/backend"))
    assert si.parse_config(with_scicat(host="http://scicat.test/backend")).scicat.api == "auto"  # v3 it is, then


# -- auto: asking the backend --------------------------------------------------------------


@pytest.mark.parametrize("served, chosen", [(("v3", "v4"), "v4"), (("v3",), "v3"), (("v4",), "v4")])
def test_auto_uses_v4_where_the_backend_serves_it_and_v3_where_v4_datasets_are_404(served, chosen, caplog):
    caplog.set_level(logging.INFO, logger=si.logger.name)
    with SciCatStandIn(apis=served) as standin:
        client = client_of(standin, "auto")
        client.connect()
        assert client.dataset_api().version == chosen
        pid = client.post_dataset(dict(V3_DATASET))["pid"]
        assert client.find_dataset_by_job("job-1")["pid"] == pid
        assert client.get_dataset(pid)["pid"] == pid
        data_file = si.DataFile(path="/data/dream/2024/run.hdf", size=10, mtime=0.0, uid="1", gid="1",
                                perm="-rw-r--r--")
        assert client.find_origdatablock(pid, "run.hdf") is None
        client.post_origdatablock(si.build_origdatablock(pid, V3_DATASET, data_file))
        assert client.find_origdatablock(pid, "run.hdf")["datasetId"] == pid
        posts = [path for method, path, _ in standin.requests_log if method == "POST" and "auth" not in path]
        assert not standin.internal_errors and not standin.sdk_disagreements
    prefix = {"v3": "/api/v3/", "v4": "/api/v4/"}[chosen]
    assert posts and all(path.startswith(prefix) for path in posts)
    assert f"through SciCat's {chosen} API" in caplog.text


@pytest.mark.parametrize("status, served", [(404, False), (200, True), (401, True), (403, True), (400, True),
                                            (500, None), (503, None)])
def test_404_alone_says_no_v4_and_a_5xx_says_nothing(status, served):
    assert si.v4_served(status) is served


def test_an_undecided_backend_is_asked_again_with_the_next_file():
    with SciCatStandIn() as standin:
        client = client_of(standin, "auto")
        client.login()
        standin.set_down(True)
        with pytest.raises(si.SciCatError, match="HTTP 503"):
            client.post_dataset(dict(V3_DATASET))
        standin.set_down(False)
        assert client.post_dataset(dict(V3_DATASET))["principalInvestigators"] == ["John Smith"]


def test_explicit_versions_ask_nothing(caplog):
    caplog.set_level(logging.INFO, logger=si.logger.name)
    with SciCatStandIn(apis=("v3",)) as standin:
        client = client_of(standin, "v3")
        client.connect()
        client.post_dataset(dict(V3_DATASET))
        assert not any("/api/v4" in path for _, path, _ in standin.requests_log)
    assert "scicat.api is v3" in caplog.text


@pytest.mark.integration
@pytest.mark.parametrize("served, chosen", [(("v3", "v4"), "v4"), (("v3",), "v3")])
def test_ingest_file_with_auto_ingests_through_what_the_backend_serves(tmp_path, served, chosen):
    data = tmp_path / "data"
    data.mkdir()
    producer.write_nexus_file(str(data / "backfill.hdf"), job_id=str(uuid.uuid4()), run_number=1)
    with SciCatStandIn(apis=served) as standin:
        config = ingestor_config(tmp_path, "127.0.0.1:9", "unused", standin.url)
        backfill = IngestorProcess(tmp_path, config, "--ingest-file", str(data)).start()
        assert backfill.process.wait(60) == 0, backfill.log()[-3000:]
        [dataset] = standin.datasets.values()
        assert len(standin.origdatablocks) == 1 and standin.origdatablocks[0]["datasetId"] == dataset["pid"]
        assert dataset["version"] == chosen.removeprefix("v")
        assert f"datasets and origdatablocks through SciCat's {chosen} API" in backfill.log()
