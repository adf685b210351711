"""SciCatClient's lookups against the strict stand-in: what each answer means, and the cache."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import scicat_ingestor as si  # noqa: E402
from scicat_standin import SciCatStandIn  # noqa: E402


def client_of(standin: SciCatStandIn, **settings) -> si.SciCatClient:
    config = si.SciCatConfig(host=standin.url, username="ingestor", password="secret", max_retries=1,
                             retry_backoff_s=0.01, **settings)
    return si.SciCatClient(config)


def gets(standin: SciCatStandIn, path: str) -> int:
    return sum(1 for method, p, _ in standin.requests_log if method == "GET" and p == "/api/v3" + path)


def test_a_proposal_gives_groups_pi_and_contact(scicat):
    scicat.add_proposal({"proposalId": "654321", "ownerGroup": "p654321", "accessGroups": ["team"],
                         "pi_firstname": "Marie", "pi_lastname": "Curie", "pi_email": "marie@example.org",
                         "email": "main@example.org", "title": "t"})
    scicat.add_proposal({"proposalId": "111111", "ownerGroup": "p111111", "email": "main@example.org",
                         "title": "no PI given"})
    client = client_of(scicat)
    found = client.find_proposal("654321")
    assert si.dataclasses.replace(found, fields={}) == si.Proposal("654321", "p654321", ["team"], "Marie Curie",
                                                                   "marie@example.org")
    # The whole proposal as SciCat has it, for {proposal:...} in field templates.
    assert (found.fields["title"], found.fields["pi_lastname"]) == ("t", "Curie")
    # Without a PI the proposal's main contact stands in.
    found = client.find_proposal("111111")
    assert si.dataclasses.replace(found, fields={}) == si.Proposal("111111", "p111111", [], "main@example.org",
                                                                   "main@example.org")
    assert client.find_proposal("999999") is None


def test_an_absent_instrument_id_answers_an_empty_200_and_counts_as_absent(scicat):
    scicat.add_instrument({"pid": "ins-dream", "name": "DREAM", "uniqueName": "dream"})
    client = client_of(scicat)
    assert client.instrument_exists("ins-dream") is True
    assert client.instrument_exists("gone") is False
    assert ("GET", "/api/v3/Instruments/gone", 200) in scicat.requests_log
    assert client.find_instrument_by_name("DREAM") == "ins-dream"
    assert client.find_instrument_by_name("LOKI") == ""


def test_a_sample_id_exists_or_not(scicat):
    scicat.add_sample({"sampleId": "S/1 with space", "ownerGroup": "p654321"})
    client = client_of(scicat)
    assert client.sample_exists("S/1 with space") is True  # the id travels URL-encoded, "/" too
    assert client.sample_exists("S-404") is False


def test_answers_are_reused_until_the_cache_time_is_up(scicat):
    scicat.add_proposal({"proposalId": "654321", "ownerGroup": "p654321", "email": "m@example.org", "title": "t"})
    cached = client_of(scicat)
    for _ in range(3):
        cached.find_proposal("654321")
        cached.find_proposal("999999")  # "not there" is reused too
    assert gets(scicat, "/Proposals/654321") == 1 and gets(scicat, "/Proposals/999999") == 1

    uncached = client_of(scicat, lookup_cache_s=0)
    assert uncached.find_proposal("999999") is None
    scicat.add_proposal({"proposalId": "999999", "ownerGroup": "p999999", "email": "m@example.org", "title": "t"})
    assert uncached.find_proposal("999999").owner_group == "p999999"  # made in SciCat later: seen


def test_a_proposal_the_account_may_not_read_counts_as_absent_with_a_warning(caplog):
    with SciCatStandIn(admin_users=set(), user_groups={"ingestor": ["ingestor"]}) as standin:
        standin.add_proposal({"proposalId": "654321", "ownerGroup": "p654321", "email": "m@example.org", "title": "t"})
        assert client_of(standin).find_proposal("654321") is None
    assert "does not let ingestor read proposal 654321 (HTTP 403)" in caplog.text


def test_a_scicat_that_is_down_is_an_error_and_not_remembered(scicat):
    scicat.add_proposal({"proposalId": "654321", "ownerGroup": "p654321", "email": "m@example.org", "title": "t"})
    client = client_of(scicat)
    client.login()
    scicat.set_down(True)
    with pytest.raises(si.SciCatError, match="503"):
        client.find_proposal("654321")
    scicat.set_down(False)
    assert client.find_proposal("654321").owner_group == "p654321"


def test_retries_back_off_exponentially_but_never_wait_more_than_about_a_minute(scicat):
    waits: list[float] = []
    config = si.SciCatConfig(host=scicat.url, username="ingestor", password="secret", max_retries=8,
                             retry_backoff_s=2.0)
    client = si.SciCatClient(config, wait=waits.append)
    client.login()
    scicat.set_down(True)  # 503 to everything
    with pytest.raises(si.SciCatError, match="HTTP 503"):
        client.find_proposal("654321")
    assert len(waits) == 8 and client.retries == 8
    assert waits[0] <= 3.0 and waits[3] >= 8.0  # 2 s doubled, with jitter of +-50 %
    assert max(waits) <= 90.0  # a SciCat that is back is tried again within a minute and a half


def test_an_unknown_instrument_is_asked_once_per_cache_period(scicat):
    client = client_of(scicat)
    assert [client.instrument_exists("gone") for _ in range(3)] == [False] * 3
    assert [client.find_instrument_by_name("LOKI") for _ in range(3)] == [""] * 3
    assert gets(scicat, "/Instruments/gone") == 1 and gets(scicat, "/Instruments") == 1


def test_an_empty_list_where_a_record_belongs_counts_as_absent(scicat):
    client = client_of(scicat)
    client.login()
    scicat.fail_next(200, body=[], path_prefix="/Proposals")  # [] instead of a proposal: nothing there
    assert client.find_proposal("654321") is None
