"""Field templates (dataset.fields): what each placeholder fills in, lists, missing values
falling back to the built-in rule, and the mistakes refused at start naming the key."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import scicat_ingestor as si  # noqa: E402

DEFAULTS = si.DatasetDefaults(ownable=si.Ownable("ess", ["dream"]), contact_email="dm@example.org",
                              instrument_name="DREAM", pid_prefix="20.500.12269")
FILE = si.DataFile(path="/data/dream/dream_123456_00000042.hdf", size=2048, mtime=1_700_000_000.25,
                   uid="writer", gid="ess", perm="-rw-r--r--")
RUN_START = si.RunStart(job_id="job-1", filename=FILE.path, run_name="run 42", instrument_name="DREAM",
                        start_time_ms=1_700_000_000_000, metadata={"sample_kind": "powder",
                                                                    "temperature": {"value": 4.2, "unit": "K"},
                                                                    "tags": ["bricks", "lego"]})
FINISHED = si.FinishedWriting(job_id="job-1", file_name="/writer/out/dream_123456_00000042.hdf",
                              service_id="kafka-to-nexus:host")
NEXUS = si.NexusMetadata(values={"title": si.NexusValue("Lego bricks"),
                                 "experiment_identifier": si.NexusValue("123456"),
                                 "entry_identifier": si.NexusValue("42")},
                         at_paths={"/entry/entry_identifier_uuid": "90d87f9a-950f", "/entry/sample/temperature": 4.5})
PROPOSAL = si.proposal_from_scicat({"proposalId": "123456", "ownerGroup": "p123456", "pi_email": "marie@example.org",
                                    "pi_firstname": "Marie", "pi_lastname": "Curie", "title": "Bricks"})


def built(fields: dict, defaults=DEFAULTS, run_start=RUN_START, nexus=NEXUS, proposal=PROPOSAL) -> si.BuiltDataset:
    return si.build_dataset(run_start, FINISHED, nexus, FILE, si.dataclasses.replace(defaults, fields=fields),
                            si.CatalogueFacts(proposal=proposal))


def field(name: str, template, **kwargs):
    return built({name: template}, **kwargs).dataset.get(name)


# -- each placeholder kind --------------------------------------------------------------


@pytest.mark.parametrize("placeholder, expected", [
    ("{instrument}", "DREAM"), ("{proposal_id}", "123456"), ("{run_name}", "run 42"), ("{run_number}", "42"),
    ("{title}", "Lego bricks"), ("{job_id}", "job-1"), ("{file_name}", "dream_123456_00000042.hdf"),
    ("{file_stem}", "dream_123456_00000042"), ("{file_path}", FILE.path), ("{source_folder}", "/data/dream"),
    ("{start_time}", "2023-11-14T22:13:20.000Z"), ("{pid_prefix}", "20.500.12269"),
    ("{service_id}", "kafka-to-nexus:host"),
])
def test_named_values_are_what_the_built_in_rules_find(placeholder, expected):
    assert field("comment", f"<{placeholder}>") == f"<{expected}>"


def test_a_nexus_placeholder_is_the_value_at_that_path_in_the_file():
    assert field("description", "uuid {nexus:/entry/entry_identifier_uuid}, {nexus:/entry/sample/temperature} K") \
        == "uuid 90d87f9a-950f, 4.5 K"


def test_a_metadata_placeholder_is_a_key_of_the_messages_metadata_its_value_without_the_unit():
    assert field("description", "{metadata:sample_kind} at {metadata:temperature}") == "powder at 4.2"


def test_a_proposal_placeholder_is_a_field_of_the_proposal_scicat_has():
    assert field("ownerEmail", "{proposal:pi_email}") == "marie@example.org"
    assert field("owner", "{proposal:pi_firstname} {proposal:pi_lastname}") == "Marie Curie"


def test_the_values_a_file_holds_at_the_templates_paths_fill_nexus_placeholders(tmp_path):
    import h5py
    import numpy as np

    path = tmp_path / "ymir_876380_00011465.hdf"
    with h5py.File(path, "w") as f:  # as ESS files store them: fixed-length byte strings, units attributes
        f["entry/entry_identifier_uuid"] = np.bytes_(b"90d87f9a-950f-11ef-9101-fa163e943f63")
        f["entry/instrument/name"] = np.bytes_(b"YMIR")
        f["entry/sample/temperature"] = 4.5
        f["entry/sample/temperature"].attrs["units"] = "K"
    fields = {"pid": "{pid_prefix}/{nexus:/entry/entry_identifier_uuid}",
              "keywords": ["{nexus:/entry/instrument/name}", "{nexus:/entry/no/such}"],
              "comment": "{nexus:/entry/sample/temperature} K"}
    paths = si.template_nexus_paths(fields)
    found = si.read_values_at(str(path), paths, 1000)
    assert found == {"/entry/entry_identifier_uuid": "90d87f9a-950f-11ef-9101-fa163e943f63",
                     "/entry/instrument/name": "YMIR", "/entry/sample/temperature": 4.5}  # none for a missing path
    nexus = si.NexusMetadata(values=NEXUS.values, at_paths=found)
    assert built(fields, nexus=nexus).dataset["pid"] == "20.500.12269/90d87f9a-950f-11ef-9101-fa163e943f63"
    assert built(fields, nexus=nexus).dataset["comment"] == "4.5 K"


def test_an_array_in_the_file_is_not_a_value_for_a_template(tmp_path):
    import h5py

    path = tmp_path / "f.hdf"
    with h5py.File(path, "w") as f:
        f["entry/events"] = list(range(10))
        f["entry/one"] = [7]
    assert si.read_values_at(str(path), ["/entry/events", "/entry/one"], 1000) == {"/entry/one": 7}


# -- lists and other JSON -----------------------------------------------------------------


def test_a_list_template_fills_each_item_and_a_list_value_is_spliced_in():
    assert field("keywords", ["neutron", "{instrument}", "{metadata:tags}"]) == ["neutron", "DREAM", "bricks", "lego"]


def test_one_string_for_a_list_field_gives_a_one_item_list():
    assert field("keywords", "{instrument}") == ["DREAM"]
    assert field("accessGroups", "p{proposal_id}") == ["p123456"]


def test_a_list_value_in_a_text_field_is_joined_as_scicat_lists_people():
    assert field("description", "{metadata:tags}") == "bricks;lego"


def test_other_json_is_used_as_it_is_and_its_strings_are_templates():
    assert field("isPublished", True) is True
    assert field("techniques", [{"pid": "PaNET01188", "name": "{metadata:sample_kind} diffraction"}]) == [
        {"pid": "PaNET01188", "name": "powder diffraction"}]


def test_doubled_braces_are_literal_braces():
    assert field("comment", "{{not a placeholder}} {instrument}") == "{not a placeholder} DREAM"


def test_templates_win_over_every_built_in_source():
    dataset = built({"ownerGroup": "ess_proposal_{proposal_id}", "creationLocation": "/ESS/{instrument}",
                     "datasetName": "{file_stem}"}).dataset
    assert dataset["ownerGroup"] == "ess_proposal_123456"  # not the proposal's p123456
    assert dataset["creationLocation"] == "/ESS/DREAM"
    assert dataset["datasetName"] == "dream_123456_00000042"  # not the run name


def test_the_ingestor_group_is_added_to_templated_access_groups_too():
    defaults = si.dataclasses.replace(DEFAULTS, ingestor_group="ingestor")
    assert field("accessGroups", ["p{proposal_id}"], defaults=defaults) == ["p123456", "ingestor"]


# -- missing values fall back --------------------------------------------------------------


def test_a_field_whose_template_lacks_a_value_gets_its_built_in_rule_and_says_why():
    result = built({"ownerGroup": "{proposal:ownerGroup}", "ownerEmail": "{proposal:pi_email}",
                    "keywords": ["{instrument}", "{metadata:no_such_key}"]}, proposal=None)
    assert result.dataset["ownerGroup"] == "ess"  # dataset.ownable.ownerGroup, today's rule
    assert result.sources["ownerGroup"].describe() == "default: dataset.ownable.ownerGroup"
    assert "ownerEmail" not in result.dataset and "keywords" not in result.dataset  # no built-in rule: left out
    assert result.unfilled == {"ownerGroup": "{proposal:ownerGroup}: no value for {proposal:ownerGroup}",
                               "ownerEmail": "{proposal:pi_email}: no value for {proposal:pi_email}",
                               "keywords": '["{instrument}", "{metadata:no_such_key}"]: no value for '
                                           "{metadata:no_such_key}"}


def test_an_empty_value_counts_as_missing():
    nexus = si.NexusMetadata(values=NEXUS.values, at_paths={"/entry/entry_identifier_uuid": ""})
    assert field("description", "{nexus:/entry/entry_identifier_uuid}", nexus=nexus) == "Lego bricks"


# -- the pid and dataset.pid_prefix ---------------------------------------------------------


def test_a_pid_template_gives_the_pid_scicat_ingestors_ess_fallback_schema_gives():
    assert field("pid", "{pid_prefix}/{nexus:/entry/entry_identifier_uuid}") == "20.500.12269/90d87f9a-950f"


def test_a_pid_template_that_cannot_be_filled_falls_back_to_the_prefix_rule():
    nexus = si.NexusMetadata(values=NEXUS.values)  # no entry_identifier_uuid in the file
    template = "{pid_prefix}/{nexus:/entry/entry_identifier_uuid}"
    assert field("pid", template, nexus=nexus) == si.deterministic_pid("20.500.12269", "job-1",
                                                                       "dream_123456_00000042.hdf")
    # Without a prefix neither can be made: SciCat makes the pid.
    without_prefix = si.dataclasses.replace(DEFAULTS, pid_prefix="")
    assert field("pid", template, defaults=without_prefix) is None


def test_a_trailing_slash_of_the_prefix_is_not_doubled():
    defaults = si.dataclasses.replace(DEFAULTS, pid_prefix="20.500.12269/")
    assert field("pid", "{pid_prefix}/{job_id}", defaults=defaults) == "20.500.12269/job-1"


# -- the field-source report ----------------------------------------------------------------


def test_the_field_report_says_where_each_value_came_from():
    result = built({"ownerGroup": "ess_proposal_{proposal_id}", "ownerEmail": "{proposal:no_such_field}"})
    selected = si.SelectedSettings(DEFAULTS, "dataset", "no instrument section for DREAM")
    lines = si.field_report(FILE.path, selected, result)
    assert lines[0] == f"fields of the dataset for {FILE.path}: settings of dataset (no instrument section for DREAM)"
    by_field = {line.split()[0]: line for line in lines[1:]}
    assert by_field["ownerGroup"].endswith('"ess_proposal_123456"  <- template: ess_proposal_{proposal_id}')
    assert by_field["datasetName"].endswith("<- message: run start's run name")
    assert by_field["description"].endswith("<- file: /entry/title")
    assert by_field["principalInvestigator"].endswith("<- lookup: the proposal's PI")
    assert by_field["contactEmail"].endswith("<- lookup: the proposal's pi_email or email")
    assert by_field["sourceFolder"].endswith("<- ingestor: the file's folder")
    assert by_field["ownerEmail"].endswith("(left out)  <- template {proposal:no_such_field}: "
                                           "no value for {proposal:no_such_field}")


# -- the configuration: checked at start, naming the key ------------------------------------


def minimal_config(**dataset) -> dict:
    return {"kafka": {"bootstrap_servers": "localhost:9092"},
            "scicat": {"host": "http://scicat/api/v3", "username": "u", "password": "p"},
            "dataset": {"contact_email": "dm@example.org", "ownable": {"ownerGroup": "ess"}, **dataset}}


def config_error(raw: dict) -> str:
    with pytest.raises(si.ConfigError) as caught:
        si.parse_config(copy.deepcopy(raw))
    return str(caught.value)


@pytest.mark.parametrize("fields, message", [
    ({"beamline": "X"}, "dataset.fields.beamline: SciCat's raw dataset has no field 'beamline'"),
    ({"pid": "{scicat:pid}"}, "dataset.fields.pid: {scicat:pid}: unknown placeholder kind 'scicat'"),
    ({"owner": "{beamline}"}, "dataset.fields.owner: unknown placeholder {beamline}"),
    ({"owner": "{instrument:x}"}, "dataset.fields.owner: {instrument:x}: unknown placeholder kind 'instrument'"),
    ({"owner": "{nexus:}"}, "dataset.fields.owner: {nexus:...} must say what it names"),
    ({"owner": "{nexus:entry/title}"}, "dataset.fields.owner: {nexus:entry/title} needs an absolute path"),
    ({"owner": "{title!r}"}, "dataset.fields.owner: '{title!r}' is not a placeholder"),
    ({"owner": "{title"}, "dataset.fields.owner: expected '}' before end of string"),
    ({"owner": 7}, "dataset.fields.owner: expected a string, got 7"),
    ({"keywords": ["a", 1]}, "dataset.fields.keywords: expected a string or a list of strings"),
    ({"isPublished": "yes"}, "dataset.fields.isPublished: expected true or false"),
    ({"techniques": [{"pid": "p", "name": "{nope}"}]}, "dataset.fields.techniques[0].name: unknown placeholder {nope}"),
    ({"type": "derived"}, "dataset.fields.type: not templated"),
    ({"scientificMetadata": {}}, "dataset.fields.scientificMetadata: not templated"),
])
def test_a_bad_template_is_a_configuration_error_naming_the_key(fields, message):
    assert config_error(minimal_config(fields=fields)).startswith(message)


def test_an_instruments_bad_template_names_the_instruments_key():
    raw = minimal_config() | {"instruments": {"YMIR": {"fields": {"keywords": ["{bogus}"]}}}}
    assert config_error(raw).startswith("instruments.YMIR.fields.keywords[0]: unknown placeholder {bogus}")


def test_creation_location_is_a_creation_location_template_and_not_both():
    config = si.parse_config(minimal_config(creation_location="/ESS/{instrument}"))
    assert config.dataset.fields == {"creationLocation": "/ESS/{instrument}"}
    assert config_error(minimal_config(creation_location="/ESS/{beamline}")).startswith(
        "dataset.creation_location: unknown placeholder {beamline}")
    both = minimal_config(creation_location="/ESS", fields={"creationLocation": "/ESS/{instrument}"})
    assert config_error(both).startswith("dataset.creation_location: give it or dataset.fields.creationLocation")


def test_an_instruments_fields_are_laid_over_the_dataset_sections_key_by_key():
    raw = minimal_config(fields={"pid": "{pid_prefix}/{job_id}", "keywords": ["ess"]}, creation_location="/ESS")
    raw["instruments"] = {"YMIR": {"fields": {"keywords": ["ymir"]}}}
    ymir = si.dataset_settings(si.parse_config(raw), "YMIR").settings
    assert ymir.fields == {"pid": "{pid_prefix}/{job_id}", "keywords": ["ymir"], "creationLocation": "/ESS"}


# -- choosing the instrument's section by the file's path -------------------------------------


def path_config() -> si.Config:
    raw = minimal_config(instrument_name="")
    raw["instruments"] = {"BEAMLINE-7": {"path_patterns": ["/data/bl7/*"], "fields": {"keywords": ["{instrument}"]}},
                          "LOKI": {"path_patterns": ["/data/*"]}}
    return si.parse_config(raw)


def test_a_file_no_instrument_names_goes_by_the_first_section_whose_pattern_matches_its_path():
    selected = si.dataset_settings(path_config(), "", "/data/bl7/run1.hdf")
    assert selected.section == "instruments.BEAMLINE-7" and selected.why == "the path matches /data/bl7/*"
    # Selected by its path, the instrument is named by its section.
    assert selected.settings.instrument_name == "BEAMLINE-7"
    assert si.build_dataset(None, si.FinishedWriting(job_id="j", file_name="/data/bl7/run1.hdf"), si.NexusMetadata(),
                            FILE, selected.settings).dataset["keywords"] == ["BEAMLINE-7"]
    assert si.dataset_settings(path_config(), "", "/data/other/run1.hdf").section == "instruments.LOKI"
    assert si.dataset_settings(path_config(), "", "/elsewhere/run1.hdf").section == "dataset"


def test_an_instrument_named_by_the_messages_or_file_wins_over_a_path_pattern():
    assert si.dataset_settings(path_config(), "loki", "/data/bl7/run1.hdf").section == "instruments.LOKI"


def test_a_path_pattern_wins_over_the_configured_default_instrument_name():
    config = path_config()
    assert si.dataset_settings(config, "", "/data/bl7/run1.hdf", "LOKI").section == "instruments.BEAMLINE-7"
    fallback = si.dataset_settings(config, "", "/elsewhere/run1.hdf", "LOKI")
    assert (fallback.section, fallback.why) == ("instruments.LOKI", "dataset.instrument_name is LOKI")


def test_the_file_reader_picks_the_section_by_path_when_only_the_configuration_names_an_instrument(tmp_path):
    import h5py

    raw = minimal_config(instrument_name="LOKI")
    raw["instruments"] = {"LOKI": {"contact_email": "loki@example.org"},
                          "BEAMLINE-7": {"path_patterns": [f"{tmp_path}/bl7/*"]}}
    config = si.parse_config(raw)
    (tmp_path / "bl7").mkdir()
    path = tmp_path / "bl7" / "run1.hdf"
    with h5py.File(path, "w") as f:
        f.create_group("entry").attrs["NX_class"] = "NXentry"  # no instrument/name in it
    reading = si.read_finished_file(config, str(path), si.FinishedWriting(job_id="j", file_name=str(path)), None)
    assert reading.selected.section == "instruments.BEAMLINE-7"
    named = si.read_finished_file(config, str(path), si.FinishedWriting(job_id="j", file_name=str(path)),
                                  si.RunStart(job_id="j", filename=str(path), instrument_name="loki"))
    assert named.selected.section == "instruments.LOKI"


def test_path_patterns_belong_to_an_instruments_section_only():
    assert config_error(minimal_config(path_patterns=["/data/*"])).startswith("dataset.path_patterns: only")
