"""The dataset mapping: for each field, which source wins (README "Where each dataset field comes from")."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import scicat_ingestor as si  # noqa: E402

DEFAULTS = si.DatasetDefaults(
    ownable=si.Ownable(ownerGroup="ess", accessGroups=["dream"]),
    contact_email="dm@example.org",
    instrument_name="DREAM",
    default_proposal_id="000000",
    owner="Default Owner",
    principal_investigator="Default PI",
)
FILE = si.DataFile(path="/data/dream/dream_123456_00000042.hdf", size=2048, mtime=1_700_000_000.25,
                   uid="writer", gid="ess", perm="-rw-r--r--")


def nexus(users=(), **values) -> si.NexusMetadata:
    return si.NexusMetadata(values={k: si.NexusValue(v) for k, v in values.items()},
                            users=[si.NexusUser(*u) for u in users])


def run_start(**fields) -> si.RunStart:
    return si.RunStart(**{"job_id": "job-1", "filename": FILE.path, **fields})


def finished(**fields) -> si.FinishedWriting:
    return si.FinishedWriting(**{"job_id": "job-1", "file_name": FILE.path, "service_id": "kafka-to-nexus:h", **fields})


def build(rs=None, fw=None, nx=None, defaults=DEFAULTS, data_file=FILE, facts=None) -> dict:
    return si.build_dataset(rs, fw or finished(), nx or nexus(), data_file, defaults, facts).dataset


# -- datasetName, description ----------------------------------------------------


def test_dataset_name_is_the_run_name_first():
    assert build(run_start(run_name="run 42"), nx=nexus(title="A title"))["datasetName"] == "run 42"


def test_dataset_name_without_a_run_name_is_the_nexus_title():
    assert build(run_start(), nx=nexus(title="A title"))["datasetName"] == "A title"


def test_dataset_name_without_either_is_the_file_stem():
    assert build()["datasetName"] == "dream_123456_00000042"


def test_description_is_the_nexus_title_else_the_run_starts():
    assert build(nx=nexus(title="In the file"))["description"] == "In the file"
    rs = run_start(structure_values={"title": "In the run start"})
    assert build(rs)["description"] == "In the run start"


# -- proposalId ------------------------------------------------------------------


def test_proposal_from_metadata_beats_the_file():
    rs = run_start(metadata={"proposal_id": "111111"}, structure_values={"experiment_identifier": "333333"})
    assert build(rs, nx=nexus(experiment_identifier="222222"))["proposalId"] == "111111"


def test_proposal_from_the_file_beats_the_run_start_structure():
    rs = run_start(structure_values={"experiment_identifier": "333333"})
    assert build(rs, nx=nexus(experiment_identifier="222222"))["proposalId"] == "222222"


def test_proposal_from_the_run_start_structure_beats_the_default():
    assert build(run_start(structure_values={"experiment_identifier": "333333"}))["proposalId"] == "333333"


def test_proposal_falls_back_to_the_configured_default():
    assert build()["proposalId"] == "000000"


def test_wrdn_metadata_overrides_the_run_starts():
    rs = run_start(metadata={"proposal_id": "111111", "sample": "kept"})
    dataset = build(rs, finished(metadata={"proposal_id": "999999"}))
    assert dataset["proposalId"] == "999999"
    assert dataset["scientificMetadata"]["sample"]["value"] == "kept"


# -- people ------------------------------------------------------------------------


USERS = (("Ada Lovelace", "ada@example.org"), ("Lise Meitner", "lise@example.org"), ("No Mail", ""))


def test_people_from_metadata_beat_the_file():
    rs = run_start(metadata={"owner": "M Owner", "principal_investigator": "M PI", "contact_email": "m@example.org"})
    dataset = build(rs, nx=nexus(users=USERS))
    assert (dataset["owner"], dataset["principalInvestigator"], dataset["contactEmail"]) == (
        "M Owner", "M PI", "m@example.org")


def test_people_from_the_files_users_beat_the_defaults():
    dataset = build(nx=nexus(users=USERS))
    assert dataset["owner"] == "Ada Lovelace"
    assert dataset["principalInvestigator"] == "Ada Lovelace"
    assert dataset["contactEmail"] == "ada@example.org;lise@example.org"  # users without an email left out


def test_people_without_metadata_or_users_are_the_defaults():
    dataset = build()
    assert (dataset["owner"], dataset["principalInvestigator"], dataset["contactEmail"]) == (
        "Default Owner", "Default PI", "dm@example.org")


def test_owner_and_pi_fall_back_to_the_owner_group():
    bare = si.DatasetDefaults(ownable=si.Ownable("ess"), contact_email="dm@example.org",
                              fields={"creationLocation": "/X"})
    dataset = build(defaults=bare)
    assert dataset["owner"] == "ess" and dataset["principalInvestigator"] == "ess"


# -- the proposal SciCat has ------------------------------------------------------------

PROPOSAL = si.Proposal(proposal_id="123456", owner_group="p123456", access_groups=["dream", "p123456-team"],
                       principal_investigator="Marie Curie", contact_email="marie@example.org")


def test_groups_and_pi_come_from_the_proposal():
    dataset = build(nx=nexus(users=USERS), facts=si.CatalogueFacts(proposal=PROPOSAL))
    assert dataset["ownerGroup"] == "p123456"
    assert dataset["accessGroups"] == ["dream", "p123456-team"]
    assert dataset["principalInvestigator"] == "Marie Curie"  # not the file's first user
    assert dataset["owner"] == "Ada Lovelace"
    assert dataset["contactEmail"] == "ada@example.org;lise@example.org"  # the people in the file first


def test_the_proposals_email_is_the_contact_when_the_file_names_none():
    assert build(facts=si.CatalogueFacts(proposal=PROPOSAL))["contactEmail"] == "marie@example.org"


def test_metadata_still_beats_the_proposal():
    rs = run_start(metadata={"owner_group": "mine", "access_groups": ["a"], "principal_investigator": "M PI"})
    dataset = build(rs, facts=si.CatalogueFacts(proposal=PROPOSAL))
    assert (dataset["ownerGroup"], dataset["accessGroups"], dataset["principalInvestigator"]) == (
        "mine", ["a"], "M PI")


def test_a_proposal_without_groups_leaves_the_defaults():
    bare = si.Proposal(proposal_id="123456")
    dataset = build(facts=si.CatalogueFacts(proposal=bare))
    assert (dataset["ownerGroup"], dataset["accessGroups"], dataset["principalInvestigator"]) == (
        "ess", ["dream"], "Default PI")


def test_the_ingestor_group_is_added_to_the_access_groups_once():
    defaults = si.dataclasses.replace(DEFAULTS, ingestor_group="ingestor")
    assert build(defaults=defaults, facts=si.CatalogueFacts(proposal=PROPOSAL))["accessGroups"] == [
        "dream", "p123456-team", "ingestor"]
    assert build(defaults=defaults)["accessGroups"] == ["dream", "ingestor"]
    owning = si.dataclasses.replace(defaults, ownable=si.Ownable("ingestor", ["ingestor"]))
    assert build(defaults=owning)["accessGroups"] == ["ingestor"]
    assert build()["accessGroups"] == ["dream"]  # not configured: nothing added


# -- groups, instrument, location ------------------------------------------------------


def test_groups_from_metadata_beat_the_defaults():
    dataset = build(run_start(metadata={"owner_group": "p123456", "access_groups": ["a", "b"]}))
    assert dataset["ownerGroup"] == "p123456" and dataset["accessGroups"] == ["a", "b"]
    assert build()["ownerGroup"] == "ess" and build()["accessGroups"] == ["dream"]


def test_access_groups_sent_as_one_string_are_comma_separated_groups_not_characters():
    assert build(run_start(metadata={"access_groups": "p123456, dream-team"}))["accessGroups"] == [
        "p123456", "dream-team"]
    assert build(run_start(metadata={"access_groups": "p123456"}))["accessGroups"] == ["p123456"]


def test_creation_location_falls_back_to_the_instrument_name_in_order():
    assert build(run_start(metadata={"instrument_name": "LOKI"}), nx=nexus(instrument_name="ODIN"))[
        "creationLocation"] == "LOKI"
    assert build(run_start(instrument_name="BIFROST"), nx=nexus(instrument_name="ODIN"))["creationLocation"] == "BIFROST"
    assert build(nx=nexus(instrument_name="ODIN"))["creationLocation"] == "ODIN"
    assert build()["creationLocation"] == "DREAM"


def test_configured_creation_location_beats_the_instrument():
    defaults = si.dataclasses.replace(DEFAULTS, fields={"creationLocation": "/ESS/DREAM"})
    assert build(nx=nexus(instrument_name="ODIN"), defaults=defaults)["creationLocation"] == "/ESS/DREAM"


def test_creation_location_template_names_the_instrument_of_the_file_or_run_start():
    defaults = si.dataclasses.replace(DEFAULTS, fields={"creationLocation": "/ESS/{instrument}"})
    assert build(nx=nexus(instrument_name="ODIN"), defaults=defaults)["creationLocation"] == "/ESS/ODIN"
    assert build(run_start(instrument_name="BIFROST"), nx=nexus(instrument_name="ODIN"),
                 defaults=defaults)["creationLocation"] == "/ESS/BIFROST"
    # Whether or not SciCat knows the instrument: the location names it, instrumentId only when known.
    unknown = build(nx=nexus(instrument_name="ODIN"), defaults=defaults, facts=si.CatalogueFacts())
    assert unknown["creationLocation"] == "/ESS/ODIN" and "instrumentId" not in unknown
    nameless = si.dataclasses.replace(defaults, instrument_name="")
    with pytest.raises(si.IncompleteDataset, match="creationLocation"):
        build(defaults=nameless)  # "/ESS/" would name no instrument


def test_proposal_id_is_sent_even_when_scicat_has_no_such_proposal():
    dataset = build(nx=nexus(experiment_identifier="999999"), facts=si.CatalogueFacts(missing=["proposal 999999"]))
    assert dataset["proposalId"] == "999999"
    assert dataset["ownerGroup"] == "ess" and dataset["accessGroups"] == ["dream"]  # the configured defaults


def test_instrument_and_sample_ids_only_when_scicat_has_them():
    # An id SciCat does not have would link to nothing: only what the lookups found is sent.
    defaults = si.dataclasses.replace(DEFAULTS, instrument_id="ins-1")
    dataset = build(run_start(metadata={"sample_id": "S-9"}), defaults=defaults)
    assert "instrumentId" not in dataset and "sampleId" not in dataset
    found = build(defaults=defaults, facts=si.CatalogueFacts(instrument_id="ins-1", sample_id="S-1"))
    assert (found["instrumentId"], found["sampleId"]) == ("ins-1", "S-1")


# -- folder and times ----------------------------------------------------------------


def test_source_folder_is_the_files_folder_and_creation_time_its_mtime_in_utc():
    dataset = build()
    assert dataset["sourceFolder"] == "/data/dream"
    assert dataset["creationTime"] == "2023-11-14T22:13:20.250Z"


def test_start_and_end_time_from_the_file_normalised_to_utc():
    dataset = build(nx=nexus(start_time="2024-10-28T09:32:35.895Z", end_time="2024-10-28T11:34:50+02:00"))
    assert dataset["startTime"] == "2024-10-28T09:32:35.895Z"
    assert dataset["endTime"] == "2024-10-28T09:34:50.000Z"


def test_start_and_end_time_from_the_run_start_when_the_file_has_none():
    dataset = build(run_start(start_time_ms=1_700_000_000_000, stop_time_ms=1_700_000_060_000),
                    nx=nexus(start_time="not a time"))
    assert dataset["startTime"] == "2023-11-14T22:13:20.000Z"
    assert dataset["endTime"] == "2023-11-14T22:14:20.000Z"


def test_no_times_anywhere_leaves_them_out_rather_than_empty():
    dataset = build()
    assert "startTime" not in dataset and "endTime" not in dataset and "runNumber" not in dataset


def test_run_number_is_the_entry_identifier():
    assert build(nx=nexus(entry_identifier="31010"))["runNumber"] == "31010"


# -- scientificMetadata -------------------------------------------------------------------


def test_every_scientific_entry_is_value_and_unit():
    nx = si.NexusMetadata(science={"temperature": si.NexusValue(4.2, "K"), "title": si.NexusValue("t")})
    science = build(run_start(run_name="r", metadata={"a": 1, "field": {"value": 3, "unit": "T"}}), nx=nx)[
        "scientificMetadata"]
    assert all(set(entry) == {"value", "unit"} for entry in science.values())
    assert science["temperature"] == {"value": 4.2, "unit": "K"}
    assert science["field"] == {"value": 3, "unit": "T"}
    assert science["a"] == {"value": 1, "unit": ""}


def test_keys_scicat_would_refuse_are_made_safe_nested_too():
    rs = run_start(metadata={"sample.temp": 1, "$where": 2, "nested": {"a.b": {"$c": 3}}})
    science = build(rs)["scientificMetadata"]
    assert {"sample_temp", "_where", "nested"} <= set(science)
    assert science["nested"]["value"] == {"a_b": {"_c": 3}}
    assert not [k for k in science if "." in k or "$" in k]


def test_job_id_is_always_the_writers_even_if_metadata_says_otherwise():
    science = build(run_start(metadata={"job_id": "forged"}), finished(job_id="job-1"))["scientificMetadata"]
    assert science["job_id"]["value"] == "job-1"


def test_run_facts_are_kept_when_the_run_start_came():
    science = build(run_start(run_name="run 7", start_time_ms=1_700_000_000_000))["scientificMetadata"]
    assert science["run_name"]["value"] == "run 7"
    assert science["run_start_time"]["value"] == "2023-11-14T22:13:20.000Z"
    assert science["file_writer_service_id"]["value"] == "kafka-to-nexus:h"


def test_without_a_run_start_the_file_alone_makes_a_dataset():
    dataset = build(None, nx=nexus(title="From the file", experiment_identifier="443503"))
    assert dataset["datasetName"] == "From the file" and dataset["proposalId"] == "443503"
    assert "run_name" not in dataset["scientificMetadata"]


# -- what SciCat requires -------------------------------------------------------------


def test_missing_required_fields_are_named():
    bare = si.DatasetDefaults(ownable=si.Ownable("ess"), contact_email="")
    with pytest.raises(si.IncompleteDataset) as caught:
        build(defaults=bare)
    assert "contactEmail" in str(caught.value) and "creationLocation" in str(caught.value)


def test_a_deterministic_pid_when_a_prefix_is_configured():
    defaults = si.dataclasses.replace(DEFAULTS, pid_prefix="20.500.12269/")
    first = build(defaults=defaults)["pid"]
    assert first.startswith("20.500.12269/") and "//" not in first
    assert build(defaults=defaults)["pid"] == first
    assert build(fw=finished(job_id="job-2"), defaults=defaults)["pid"] != first
    assert "pid" not in build()


def test_the_pid_is_the_same_whether_the_file_is_named_by_the_writers_path_or_this_hosts():
    # The loop knows the writer's path; --ingest-file the mounted one: one file, one dataset.
    defaults = si.dataclasses.replace(DEFAULTS, pid_prefix="20.500.12269")
    by_writer = build(fw=finished(file_name="/writer/out/dream_00001.hdf"), defaults=defaults)["pid"]
    by_host = build(fw=finished(file_name="/mnt/data/dream_00001.hdf"), defaults=defaults)["pid"]
    assert by_writer == by_host
    assert build(fw=finished(file_name="/mnt/data/dream_00002.hdf"), defaults=defaults)["pid"] != by_host


# The raw dataset fields of SciCat's v3 contract (shared/docs/scicat-api.md).
SCICAT_RAW_FIELDS = {
    "type", "owner", "ownerGroup", "contactEmail", "sourceFolder", "creationTime", "principalInvestigator",
    "creationLocation", "datasetName", "pid", "accessGroups", "proposalId", "sampleId", "instrumentId",
    "scientificMetadata", "size", "numberOfFiles", "isPublished", "ownerEmail", "startTime", "endTime",
    "description", "keywords", "runNumber", "techniques", "license", "dataFormat", "sourceFolderHost",
    "orcidOfOwner", "instrumentGroup", "comment",
}


def test_a_full_dataset_uses_only_scicat_fields_and_passes_the_sdk_model():
    rs = run_start(run_name="r", instrument_name="DREAM", start_time_ms=1, metadata={"proposal_id": "1"})
    dataset = build(rs, nx=nexus(USERS, title="t", entry_identifier="5", start_time="2024-01-01T00:00:00Z"))
    assert set(dataset) <= SCICAT_RAW_FIELDS
    assert all(isinstance(dataset[k], str) for k in ("owner", "ownerGroup", "contactEmail", "sourceFolder",
                                                       "creationTime", "principalInvestigator", "creationLocation"))
    from scicat_sdk_py.models.create_raw_dataset_obsolete_dto import CreateRawDatasetObsoleteDto

    CreateRawDatasetObsoleteDto.from_dict(dataset)


# -- the origdatablock ----------------------------------------------------------------


def test_origdatablock_lists_the_file_relative_to_the_source_folder():
    dataset = build()
    block = si.build_origdatablock("pid/1", dataset, FILE)
    assert block == {
        "datasetId": "pid/1",
        "size": 2048,
        "dataFileList": [{"path": "dream_123456_00000042.hdf", "size": 2048, "time": "2023-11-14T22:13:20.250Z",
                          "uid": "writer", "gid": "ess", "perm": "-rw-r--r--"}],
    }


def test_origdatablock_carries_the_checksum_only_when_computed():
    with_checksum = si.dataclasses.replace(FILE, checksum="abc123", checksum_algorithm="sha256")
    block = si.build_origdatablock("pid/1", build(), with_checksum)
    assert block["chkAlg"] == "sha256" and block["dataFileList"][0]["chk"] == "abc123"
    from scicat_sdk_py.models.create_orig_datablock_dto import CreateOrigDatablockDto

    CreateOrigDatablockDto.from_dict(block)
