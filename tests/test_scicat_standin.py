"""The SciCat stand-in enforces the contract of docs/scicat-api.md.

Each test states one behaviour of the real backend that the stand-in must share, so a
client tested against the stand-in meets no surprise against SciCat itself.
"""

from __future__ import annotations

import json
import time
import urllib.parse

import pytest
import requests
import scicat_standin
from scicat_standin import SciCatStandIn

CREDENTIALS = {"username": "ingestor", "password": "secret"}


@pytest.fixture
def standin():
    with SciCatStandIn(
        users={"ingestor": "secret", "alice": "wonder", "pidder": "pw"},
        user_groups={"alice": ["alice", "dream"], "pidder": ["pidder", "ymir"]},
        pid_users={"pidder"},
    ) as s:
        yield s


def login(s: SciCatStandIn, username: str = "ingestor", password: str = "secret") -> dict[str, str]:
    r = requests.post(s.url + "/auth/login", json={"username": username, "password": password}, timeout=5)
    assert r.status_code == 201, r.text
    return {"Authorization": "Bearer " + r.json()["access_token"]}


def raw_dataset(**overrides):
    body = {
        "type": "raw", "owner": "Ada Lovelace", "ownerGroup": "ess", "accessGroups": ["dream"],
        "contactEmail": "ada@ess.eu", "sourceFolder": "/ess/data/dream/2024/run_0042",
        "creationTime": "2024-05-01T12:00:00Z", "principalInvestigator": "Ada Lovelace",
        "creationLocation": "/ESS/DREAM", "proposalId": "654321",
        "scientificMetadata": {"job_id": {"value": "job-1", "unit": ""}, "temperature": {"value": 4.2, "unit": "K"}},
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


def block(pid=None, files=None, **overrides):
    files = files or [{"path": "run_0042.nxs", "size": 1000, "time": "2024-05-01T12:00:00Z"}]
    body = {"size": sum(f["size"] for f in files), "dataFileList": files, "chkAlg": "blake2b"}
    if pid is not None:
        body["datasetId"] = pid
    body.update(overrides)
    return body


def post(s, path, body, headers):
    return requests.post(s.url + path, json=body, headers=headers, timeout=5)


def get(s, path, headers, **params):
    return requests.get(s.url + path, headers=headers, params=params, timeout=5)


def quoted(pid):
    return urllib.parse.quote(pid, safe="")


def errors_of(response) -> str:
    """The 400 message of POST /Datasets is a JSON string listing the validator's errors."""
    answer = response.json()
    assert answer["status"] == 400
    json.loads(answer["message"])  # must be a JSON string
    return answer["message"]


# -- login and tokens ------------------------------------------------------------------

def test_login_answers_201_with_a_jwt_like_token_twice_and_its_lifetime(standin):
    r = requests.post(standin.url + "/auth/login", json=CREDENTIALS, timeout=5)
    assert r.status_code == 201
    answer = r.json()
    assert answer["access_token"] == answer["id"]
    assert answer["access_token"].count(".") == 2
    assert answer["expires_in"] == 3600
    assert answer["userId"] and answer["user"]["username"] == "ingestor"
    assert standin.logins == 1 and answer["access_token"] in standin.issued_tokens()
    assert standin.url.startswith("http://127.0.0.1:") and standin.url.endswith("/api/v3")


@pytest.mark.parametrize("credentials", [
    {"username": "ingestor", "password": "wrong"}, {"username": "nobody", "password": "secret"},
    {"username": "ingestor"}, {},
])
def test_wrong_credentials_get_401(standin, credentials):
    r = requests.post(standin.url + "/auth/login", json=credentials, timeout=5)
    assert r.status_code == 401
    assert standin.logins == 0


def test_the_deprecated_users_login_answers_201_with_an_empty_body(standin):
    r = requests.post(standin.url + "/Users/login", json=CREDENTIALS, timeout=5)
    assert r.status_code == 201 and r.content == b""


def test_a_write_without_a_token_gets_403_forbidden_resource(standin):
    r = post(standin, "/Datasets", raw_dataset(), {})
    assert r.status_code == 403
    assert r.json() == {"message": "Forbidden resource", "error": "Forbidden", "statusCode": 403}
    assert standin.datasets == {}
    # A token the backend never issued is no token: 403 too, never 401.
    assert post(standin, "/Datasets", raw_dataset(), {"Authorization": "Bearer not-a-token"}).status_code == 403


def test_a_token_in_the_query_alone_gets_403(standin):
    token = login(standin)["Authorization"].split()[1]
    r = requests.post(standin.url + "/Datasets", params={"access_token": token}, json=raw_dataset(), timeout=5)
    assert r.status_code == 403


def test_anonymous_reads_see_only_what_is_published(standin):
    headers = login(standin)
    hidden = post(standin, "/Datasets", raw_dataset(), headers).json()
    shown = post(standin, "/Datasets", raw_dataset(isPublished=True), headers).json()
    for anonymous in ({}, {"Authorization": "Bearer not-a-token"}):
        assert [d["pid"] for d in get(standin, "/Datasets", anonymous).json()] == [shown["pid"]]
        assert get(standin, "/Datasets/" + quoted(hidden["pid"]), anonymous).status_code == 403
        assert get(standin, "/Datasets/" + quoted(shown["pid"]), anonymous).status_code == 200


def test_an_expired_token_gets_401_and_a_new_login_works():
    with SciCatStandIn(token_lifetime_s=0.3) as s:
        headers = login(s)
        assert post(s, "/Datasets", raw_dataset(), headers).status_code == 201
        time.sleep(0.35)
        r = post(s, "/Datasets", raw_dataset(), headers)
        assert r.status_code == 401 and r.json() == {"message": "Unauthorized", "statusCode": 401}
        assert post(s, "/Datasets", raw_dataset(), login(s)).status_code == 201


def test_expire_all_tokens_expires_every_issued_token_now(standin):
    headers = login(standin)
    standin.expire_all_tokens()
    assert post(standin, "/Datasets", raw_dataset(), headers).status_code == 401
    assert post(standin, "/Datasets", raw_dataset(), login(standin)).status_code == 201


def test_a_static_token_is_always_valid():
    with SciCatStandIn(static_tokens={"site-token"}) as s:
        s.expire_all_tokens()
        r = post(s, "/Datasets", raw_dataset(), {"Authorization": "Bearer site-token"})
        assert r.status_code == 201 and r.json()["createdBy"] == "ingestor"


# -- creating raw datasets ----------------------------------------------------------------

def test_a_valid_raw_dataset_gets_201_and_a_pid_with_the_prefix(standin):
    r = post(standin, "/Datasets", raw_dataset(), login(standin))
    assert r.status_code == 201, r.text
    doc = r.json()
    prefix, _, rest = doc["pid"].partition("/")
    assert prefix == "20.500.12269" and len(rest) == 36
    assert standin.datasets[doc["pid"]] == doc
    assert doc["createdBy"] == "ingestor" and doc["createdAt"] and doc["updatedAt"]
    assert doc["size"] == 0 and doc["numberOfFiles"] == 0
    # Missing datasetName: the last two parts of sourceFolder.
    assert doc["datasetName"] == "2024/run_0042"
    # {value, unit} entries get valueSI/unitSI.
    assert doc["scientificMetadata"]["temperature"] == {"value": 4.2, "unit": "K", "valueSI": 4.2, "unitSI": "K"}


def test_the_privileged_user_s_own_pid_is_stored_exactly_as_given(standin):
    r = post(standin, "/Datasets", raw_dataset(pid="10.1234/my-own-pid"), login(standin))
    assert r.status_code == 201 and r.json()["pid"] == "10.1234/my-own-pid"
    read = get(standin, "/Datasets/" + quoted("10.1234/my-own-pid"), login(standin))
    assert read.status_code == 200 and read.json()["pid"] == "10.1234/my-own-pid"


def test_the_same_pid_twice_gets_409_with_the_backends_message(standin):
    headers = login(standin)
    assert post(standin, "/Datasets", raw_dataset(pid="p/1"), headers).status_code == 201
    r = post(standin, "/Datasets", raw_dataset(pid="p/1"), headers)
    assert r.status_code == 409
    assert r.json() == {"message": "A dataset with pid p/1 already exists!", "error": "Conflict", "statusCode": 409}
    assert len(standin.datasets) == 1


@pytest.mark.parametrize("field", ["type", "owner", "ownerGroup", "contactEmail", "sourceFolder", "creationTime",
                                   "principalInvestigator", "creationLocation"])
def test_a_missing_required_field_gets_400_naming_it(standin, field):
    r = post(standin, "/Datasets", raw_dataset(**{field: ...}), login(standin))
    assert r.status_code == 400
    assert f'"property": "{field}"' in errors_of(r)


def test_an_unknown_field_gets_400_naming_it(standin):
    r = post(standin, "/Datasets", raw_dataset(runNumbr="42"), login(standin))
    assert r.status_code == 400
    assert "property runNumbr should not exist" in errors_of(r)


@pytest.mark.parametrize("field", ["size", "numberOfFiles"])
@pytest.mark.parametrize("value", [12.5, 12.0, "12", True])
def test_size_and_number_of_files_must_be_integers(standin, field, value):
    r = post(standin, "/Datasets", raw_dataset(**{field: value}), login(standin))
    assert r.status_code == 400
    assert f"{field} must be an integer number" in errors_of(r)


@pytest.mark.parametrize("field", ["creationTime", "startTime", "endTime"])
@pytest.mark.parametrize("value", ["yesterday", "2024-13-01T00:00:00Z", "2024-02-30T00:00:00Z", "2024-05-01T25:00Z",
                                   "20240501T120000Z", "01/05/2024", 1714564800])
def test_times_must_be_iso_8601(standin, field, value):
    r = post(standin, "/Datasets", raw_dataset(**{field: value}), login(standin))
    assert r.status_code == 400
    assert f"{field} must be a valid ISO 8601 date string" in errors_of(r)


@pytest.mark.parametrize("value", ["2024-05-01T12:00:00+02:00", "2024-05-01T12:00:00+0200", "2024-05-01T12:00Z",
                                   "2024-05-01T12:00:00.123456Z", "2024-05-01"])
def test_iso_8601_with_an_offset_or_a_date_alone_is_accepted(standin, value):
    assert post(standin, "/Datasets", raw_dataset(creationTime=value), login(standin)).status_code == 201


def test_source_folder_is_any_string_but_an_empty_one_or_a_bare_root_is_a_500(standin):
    headers = login(standin)
    for folder in ("ess/data/run", "/ess/data/run/"):  # relative, trailing slash: stored as sent
        assert post(standin, "/Datasets", raw_dataset(sourceFolder=folder), headers).json()["datasetName"] == "data/run"
    for folder, empty in (("", "sourceFolder"), ("/", "datasetName")):  # "/" leaves no datasetName to make
        r = post(standin, "/Datasets", raw_dataset(sourceFolder=folder), headers)
        assert r.status_code == 500 and r.json()["name"] == "ValidationError" and empty in r.json()["errors"]
    r = post(standin, "/Datasets", raw_dataset(sourceFolder=42), headers)
    assert r.status_code == 400 and "sourceFolder" in errors_of(r)


def test_contact_email_may_list_several_separated_by_semicolons(standin):
    headers = login(standin)
    assert post(standin, "/Datasets", raw_dataset(contactEmail="a@ess.eu;b@ess.eu"), headers).status_code == 201
    for bad in ("not an email", "a@ess.eu,b@ess.eu", "a@ess.eu;", ""):
        r = post(standin, "/Datasets", raw_dataset(contactEmail=bad), headers)
        assert r.status_code == 400 and "contactEmail" in errors_of(r), bad


def test_owner_email_must_be_a_valid_email_if_present(standin):
    headers = login(standin)
    assert post(standin, "/Datasets", raw_dataset(ownerEmail="ada@ess.eu"), headers).status_code == 201
    r = post(standin, "/Datasets", raw_dataset(ownerEmail="ada at ess"), headers)
    assert r.status_code == 400 and "ownerEmail must be an email" in errors_of(r)


@pytest.mark.parametrize("field,value", [
    ("keywords", [1]), ("techniques", [{"pid": "t1"}]), ("techniques", [{"pid": "t1", "name": "x", "extra": "y"}]),
    ("isPublished", "false"), ("runNumber", 42),
    ("owner", 7), ("proposalId", 654321),
])
def test_wrongly_typed_fields_get_400_naming_them(standin, field, value):
    r = post(standin, "/Datasets", raw_dataset(**{field: value}), login(standin))
    assert r.status_code == 400
    assert f'"property": "{field}"' in errors_of(r)


@pytest.mark.parametrize("kind", ["RAW", "calibration"])
def test_an_unknown_type_gets_400(standin, kind):
    assert post(standin, "/Datasets", raw_dataset(type=kind), login(standin)).status_code == 400


def test_strings_for_lists_and_objects_are_coerced_as_the_backend_does(standin):
    headers = login(standin)
    doc = post(standin, "/Datasets", raw_dataset(keywords="neutrons", accessGroups="dream"), headers).json()
    assert doc["keywords"] == ["neutrons"] and doc["accessGroups"] == ["dream"]
    doc = post(standin, "/Datasets", raw_dataset(scientificMetadata="job"), headers).json()
    assert doc["scientificMetadata"] == {"0": "j", "1": "o", "2": "b"}


def test_a_well_formed_optional_field_set_is_accepted(standin):
    r = post(standin, "/Datasets", raw_dataset(
        datasetName="run 42", description="d", keywords=["a", "b"], runNumber="42", license="CC-BY-4.0",
        techniques=[{"pid": "http://purl.org/pan-science/PaNET/PaNET01217", "name": "neutron diffraction"}],
        startTime="2024-05-01T11:00:00Z", endTime="2024-05-01T12:00:00Z", isPublished=False, sampleId="S-1",
        instrumentId="no-such-instrument", dataFormat="NeXus", sourceFolderHost="ess.eu", comment="c",
        orcidOfOwner="0000-0002-1825-0097", instrumentGroup="dream"), login(standin))
    assert r.status_code == 201, r.text
    # The server does not check that the proposal, sample or instrument exist.
    assert r.json()["instrumentId"] == "no-such-instrument"


@pytest.mark.parametrize("metadata", [
    {"a.b": {"value": 1, "unit": ""}},
    {"$where": {"value": 1, "unit": ""}},
    {"outer": {"value": {"in.ner": 1}, "unit": ""}},
    {"outer": {"value": [{"pri$ce": 1}], "unit": ""}},
])
def test_metadata_keys_with_a_dot_or_dollar_are_stored_verbatim(standin, metadata):
    r = post(standin, "/Datasets", raw_dataset(scientificMetadata=metadata), login(standin))
    assert r.status_code == 201 and r.json()["scientificMetadata"] == metadata


def test_a_json_body_sent_as_text_plain_gets_500(standin):
    headers = {**login(standin), "Content-Type": "text/plain"}
    r = requests.post(standin.url + "/Datasets", data=json.dumps(raw_dataset()), headers=headers, timeout=5)
    assert r.status_code == 500 and r.json() == "Internal server error"


def test_invalid_json_gets_400(standin):
    headers = {**login(standin), "Content-Type": "application/json"}
    r = requests.post(standin.url + "/Datasets", data=b'{"type": "raw",', headers=headers, timeout=5)
    assert r.status_code == 400


# -- who may create what ------------------------------------------------------------------

def test_a_plain_user_may_create_only_for_its_own_groups_and_without_a_pid(standin):
    alice = login(standin, "alice", "wonder")
    r = post(standin, "/Datasets", raw_dataset(ownerGroup="ess"), alice)
    assert r.status_code == 403
    assert r.json()["message"] == "Unauthorized to create this dataset"
    assert post(standin, "/Datasets", raw_dataset(ownerGroup="dream"), alice).status_code == 201
    assert post(standin, "/Datasets", raw_dataset(ownerGroup="dream", pid="p/alice"), alice).status_code == 403


def test_a_pid_user_may_send_a_pid_only_for_its_own_groups(standin):
    pidder = login(standin, "pidder", "pw")
    r = post(standin, "/Datasets", raw_dataset(ownerGroup="ymir", pid="p/ymir"), pidder)
    assert r.status_code == 201 and r.json()["pid"] == "p/ymir"
    assert post(standin, "/Datasets", raw_dataset(ownerGroup="ess", pid="p/ess"), pidder).status_code == 403


def test_a_user_is_in_a_group_of_its_own_name_by_default():
    with SciCatStandIn(users={"bob": "pw"}, privileged_users=set()) as s:
        bob = login(s, "bob", "pw")
        assert post(s, "/Datasets", raw_dataset(ownerGroup="bob"), bob).status_code == 201
        assert post(s, "/Datasets", raw_dataset(ownerGroup="ess"), bob).status_code == 403


# -- origdatablocks ----------------------------------------------------------------------

@pytest.fixture
def dataset(standin):
    r = post(standin, "/Datasets", raw_dataset(), login(standin))
    assert r.status_code == 201
    return r.json()


def test_an_origdatablock_for_an_unknown_dataset_gets_404(standin):
    headers = login(standin)
    assert post(standin, "/OrigDatablocks", block("20.500.12269/nope"), headers).status_code == 404
    assert post(standin, "/Datasets/" + quoted("20.500.12269/nope") + "/origdatablocks", block(),
                headers).status_code == 404
    assert standin.origdatablocks == []


@pytest.mark.parametrize("key", ["uid", "gid", "perm", "chk", "type"])
def test_optional_file_fields_must_be_strings(standin, dataset, key):
    files = [{"path": "a.nxs", "size": 1, "time": "2024-05-01T12:00:00Z", key: 1000}]
    r = post(standin, "/OrigDatablocks", block(dataset["pid"], files), login(standin))
    assert r.status_code == 400
    assert f"dataFileList.0.{key} must be a string" in r.json()["message"]


@pytest.mark.parametrize("files,named", [
    ([{"path": "a", "size": 1}], "dataFileList.0.time"),
    ([{"path": "a", "size": 1, "time": "2024-05-01T12:00:00Z", "md5": "x"}], "dataFileList.0.md5"),
    ([{"path": "a", "size": "1", "time": "2024-05-01T12:00:00Z"}], "dataFileList.0.size"),
    ([{"path": "a", "size": 1, "time": "noon"}], "dataFileList.0.time"),
])
def test_file_entries_are_checked_field_by_field(standin, dataset, files, named):
    body = {"datasetId": dataset["pid"], "size": 1, "dataFileList": files}
    r = post(standin, "/OrigDatablocks", body, login(standin))
    assert r.status_code == 400 and any(named in m for m in r.json()["message"]), r.text


@pytest.mark.parametrize("overrides,named", [
    ({"size": 1.5}, "size"), ({"size": ...}, "size"), ({"dataFileList": []}, "dataFileList"),
    ({"chkAlg": ""}, "chkAlg"), ({"fileList": []}, "fileList"), ({"datasetId": 3}, "datasetId"),
])
def test_origdatablock_body_is_checked(standin, dataset, overrides, named):
    body = {k: v for k, v in block(dataset["pid"], **overrides).items() if v is not ...}
    r = post(standin, "/OrigDatablocks", body, login(standin))
    assert r.status_code == 400 and any(m.startswith(named) or f" {named} " in m for m in r.json()["message"]), r.text


def test_size_and_number_of_files_are_resummed_after_each_origdatablock(standin, dataset):
    headers = login(standin)
    pid = dataset["pid"]
    first = [{"path": "a.nxs", "size": 100, "time": "2024-05-01T12:00:00Z", "uid": "1000", "perm": "-rw-r--r--"}]
    r = post(standin, "/OrigDatablocks", block(pid, first, ownerGroup="someone-else"), headers)
    assert r.status_code == 201, r.text
    stored = r.json()
    assert stored["_id"] and stored["datasetId"] == pid
    # ownerGroup/accessGroups: overwritten with the dataset's.
    assert stored["ownerGroup"] == "ess" and stored["accessGroups"] == ["dream"]
    second = [{"path": "b.nxs", "size": 20, "time": "2024-05-01T12:00:00Z"},
              {"path": "c.nxs", "size": 3, "time": "2024-05-01T12:00:00Z"}]
    r = post(standin, f"/Datasets/{quoted(pid)}/origdatablocks", block(None, second), headers)
    assert r.status_code == 201, r.text
    assert standin.datasets[pid]["size"] == 123 and standin.datasets[pid]["numberOfFiles"] == 3
    read = get(standin, "/Datasets/" + quoted(pid), headers).json()
    assert (read["size"], read["numberOfFiles"]) == (123, 3)
    listed = get(standin, f"/Datasets/{quoted(pid)}/origdatablocks", headers).json()
    assert [len(b["dataFileList"]) for b in listed] == [1, 2]
    found = get(standin, "/OrigDatablocks", headers, filter=json.dumps({"where": {"datasetId": pid}})).json()
    assert len(found) == 2


def test_remove_origdatablocks_leaves_the_dataset_without_files_as_a_crash_would(standin, dataset):
    headers = login(standin)
    post(standin, "/OrigDatablocks", block(dataset["pid"]), headers)
    standin.remove_origdatablocks(dataset["pid"])
    assert standin.origdatablocks == []
    assert (standin.datasets[dataset["pid"]]["size"], standin.datasets[dataset["pid"]]["numberOfFiles"]) == (0, 0)
    assert get(standin, f"/Datasets/{quoted(dataset['pid'])}/origdatablocks", headers).json() == []


def test_the_dataset_route_takes_no_dataset_id_nor_groups(standin, dataset):
    path = f"/Datasets/{quoted(dataset['pid'])}/origdatablocks"
    for extra in ({"datasetId": dataset["pid"]}, {"ownerGroup": "ess"}):
        r = post(standin, path, block(None, **extra), login(standin))
        assert r.status_code == 400, extra


# -- reads -------------------------------------------------------------------------------

def test_datasets_are_found_by_a_dotted_where_on_scientific_metadata(standin):
    headers = login(standin)
    for job in ("job-1", "job-2", "job-2"):
        post(standin, "/Datasets", raw_dataset(scientificMetadata={"job_id": {"value": job, "unit": ""}}), headers)
    where = {"where": {"scientificMetadata.job_id.value": "job-2"}}
    assert len(get(standin, "/Datasets", headers, filter=json.dumps(where)).json()) == 2
    # A top-level "limit" is ignored, as by the real backend; "limits" works.
    assert len(get(standin, "/Datasets", headers, filter=json.dumps({**where, "limit": 1})).json()) == 2
    assert len(get(standin, "/Datasets", headers, filter=json.dumps({**where, "limits": {"limit": 1}})).json()) == 1
    assert get(standin, "/Datasets", headers, filter=json.dumps({"where": {"scientificMetadata.job_id.value": "x"}})
               ).json() == []
    assert len(standin.datasets_for_job("job-2")) == 2 and standin.datasets_for_job("nope") == []


def test_an_unknown_or_unencoded_pid_reads_404(standin, dataset):
    headers = login(standin)
    assert get(standin, "/Datasets/" + quoted("20.500.12269/nope"), headers).status_code == 404
    assert get(standin, "/Datasets/" + dataset["pid"], headers).status_code == 404  # "/" not %2F-encoded


def test_instruments_answer_an_empty_200_when_absent_and_are_found_by_name(standin):
    headers = login(standin)
    r = get(standin, "/Instruments/nope", headers)
    assert r.status_code == 200 and r.content == b"" and "Content-Type" not in r.headers
    standin.add_instrument({"pid": "instr-1", "name": "DREAM", "uniqueName": "DREAM"})
    assert get(standin, "/Instruments/instr-1", headers).json()["name"] == "DREAM"
    found = get(standin, "/Instruments", headers, filter=json.dumps({"where": {"name": "DREAM"}})).json()
    assert [i["pid"] for i in found] == ["instr-1"]


def test_proposals_and_samples_answer_404_when_absent(standin):
    headers = login(standin)
    assert get(standin, "/Proposals/654321", headers).status_code == 404
    assert get(standin, "/Samples/S-1", headers).status_code == 404
    standin.add_proposal({"proposalId": "654321", "ownerGroup": "p654321", "pi_email": "pi@ess.eu",
                          "email": "main@ess.eu", "title": "Bricks"})
    standin.add_sample({"sampleId": "S-1", "ownerGroup": "p654321"})
    proposal = get(standin, "/Proposals/654321", headers).json()
    assert proposal["pi_email"] == "pi@ess.eu"
    assert proposal["accessGroups"] == [] and proposal["createdBy"] and proposal["type"] == "Default Proposal"
    assert get(standin, "/Samples/S-1", headers).status_code == 200


def test_seeding_refuses_what_the_backend_would_not_hold(standin):
    with pytest.raises(ValueError, match="email, title"):
        standin.add_proposal({"proposalId": "654321", "ownerGroup": "p654321"})
    with pytest.raises(ValueError, match="uniqueName"):
        standin.add_instrument({"pid": "instr-1", "name": "DREAM"})
    with pytest.raises(ValueError, match="ownerGroup"):
        standin.add_sample({"sampleId": "S-1"})


def test_a_creator_that_is_no_admin_reads_only_what_its_groups_may():
    """The sharp edge: CREATE_DATASET_PRIVILEGED_GROUPS may create for any group, not read it back."""
    with SciCatStandIn(admin_users=set(), user_groups={"ingestor": ["ingestor"]}) as s:
        headers = login(s)
        theirs = post(s, "/Datasets", raw_dataset(ownerGroup="p654321"), headers).json()
        shared = post(s, "/Datasets", raw_dataset(ownerGroup="p654321", accessGroups=["ingestor"]), headers).json()
        assert get(s, "/Datasets/" + quoted(theirs["pid"]), headers).status_code == 403
        assert get(s, "/Datasets/" + quoted(shared["pid"]), headers).status_code == 200
        assert [d["pid"] for d in get(s, "/Datasets", headers).json()] == [shared["pid"]]
        s.add_proposal({"proposalId": "654321", "ownerGroup": "p654321", "email": "pi@ess.eu", "title": "t"})
        assert get(s, "/Proposals/654321", headers).status_code == 403
        s.add_proposal({"proposalId": "111111", "ownerGroup": "p111111", "accessGroups": ["ingestor"],
                        "email": "pi@ess.eu", "title": "t"})
        assert get(s, "/Proposals/111111", headers).status_code == 200
        assert not s.internal_errors


def test_health_answers_on_both_paths_and_unknown_routes_get_json_404(standin):
    base = standin.url[: -len("/api/v3")]
    assert requests.get(base + "/health", timeout=5).json()["status"] == "ok"
    assert requests.get(standin.url + "/health", timeout=5).status_code == 200
    r = requests.get(standin.url + "/Nothing", timeout=5)
    assert r.status_code == 404 and r.json()["statusCode"] == 404
    assert requests.put(standin.url + "/Datasets", json={}, timeout=5).status_code == 404


# -- faults, restarts, inspection ---------------------------------------------------------

def test_fail_next_answers_the_status_then_the_server_recovers(standin):
    headers = login(standin)
    standin.fail_next(503, count=2)
    assert post(standin, "/Datasets", raw_dataset(), headers).status_code == 503
    assert post(standin, "/Datasets", raw_dataset(), headers).status_code == 503
    assert standin.datasets == {}
    assert post(standin, "/Datasets", raw_dataset(), headers).status_code == 201
    standin.fail_next(502, body={"oops": True}, path_prefix="/OrigDatablocks")
    assert get(standin, "/Datasets", headers).status_code == 200  # not under the prefix: untouched
    r = post(standin, "/OrigDatablocks", block("x"), headers)
    assert r.status_code == 502 and r.json() == {"oops": True}


def test_set_down_answers_503_to_everything(standin):
    headers = login(standin)
    standin.set_down(True)
    assert requests.get(standin.url + "/health", timeout=5).status_code == 503
    assert post(standin, "/Datasets", raw_dataset(), headers).status_code == 503
    standin.set_down(False)
    assert post(standin, "/Datasets", raw_dataset(), headers).status_code == 201


def test_reject_dataset_if_refuses_matching_datasets_with_400(standin):
    headers = login(standin)
    standin.reject_dataset_if(lambda doc: doc.get("proposalId") == "999999")
    r = post(standin, "/Datasets", raw_dataset(proposalId="999999"), headers)
    assert r.status_code == 400 and r.json()["message"]
    assert post(standin, "/Datasets", raw_dataset(), headers).status_code == 201
    standin.reject_dataset_if(None)
    assert post(standin, "/Datasets", raw_dataset(proposalId="999999"), headers).status_code == 201


def test_stop_then_start_serves_again_on_the_same_port_with_the_data_kept(standin, dataset):
    url = standin.url
    session = requests.Session()  # a pooled, kept-alive connection must not survive the stop
    session.headers.update(login(standin))
    assert session.get(url + "/Datasets/" + quoted(dataset["pid"]), timeout=5).status_code == 200
    standin.stop()
    with pytest.raises(requests.ConnectionError):
        session.get(url + "/Datasets", timeout=2)
    standin.start()
    assert standin.url == url
    assert session.get(url + "/Datasets/" + quoted(dataset["pid"]), timeout=5).status_code == 200


def test_the_requests_log_records_method_path_and_status(standin):
    login(standin)
    post(standin, "/Datasets", raw_dataset(), {})
    assert standin.requests_log == [("POST", "/api/v3/auth/login", 201), ("POST", "/api/v3/Datasets", 403)]


def test_nothing_is_written_to_stderr_per_request(standin, capfd):
    headers = login(standin)
    post(standin, "/Datasets", raw_dataset(), headers)
    get(standin, "/Nothing", headers)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_delay_s_slows_every_answer():
    with SciCatStandIn(delay_s=0.1) as s:
        started = time.monotonic()
        requests.get(s.url + "/health", timeout=5)
        assert time.monotonic() - started >= 0.1


# -- the SDK's second opinion ----------------------------------------------------------------

needs_sdk = pytest.mark.skipif(not scicat_standin.sdk_models(), reason="scicat-sdk-py is not installed")


@needs_sdk
def test_the_sdk_second_opinion_runs_and_agrees_on_valid_payloads(standin, dataset):
    assert standin.sdk_active
    assert set(scicat_standin.sdk_models()) == {"dataset", "dataset_v4", "origdatablock", "dataset_origdatablock"}
    headers = login(standin)
    assert post(standin, "/OrigDatablocks", block(dataset["pid"]), headers).status_code == 201
    assert post(standin, f"/Datasets/{quoted(dataset['pid'])}/origdatablocks", block(), headers).status_code == 201
    assert standin.sdk_disagreements == []


@needs_sdk
def test_what_the_sdk_refuses_gets_400_and_is_recorded(standin, monkeypatch):
    class Refusing:
        @classmethod
        def from_dict(cls, obj):
            raise ValueError("the SDK says no")

    monkeypatch.setitem(scicat_standin.sdk_models(), "dataset", Refusing)
    r = post(standin, "/Datasets", raw_dataset(), login(standin))
    assert r.status_code == 400 and "the SDK says no" in r.json()["message"]
    [disagreement] = standin.sdk_disagreements
    assert disagreement["model"] == "Refusing" and disagreement["body"]["datasetName"] == "2024/run_0042"
    assert standin.datasets == {}
