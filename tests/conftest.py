"""Shared fixtures: a real Kafka broker, fresh topics, and the SciCat stand-in.

Integration tests use a Tansu broker started once per session, or an existing
Kafka given by SFI_TEST_KAFKA_BOOTSTRAP=host:port. Under CI=true a broker that
cannot start fails the run, and so does any skipped test: an integration test
that skips there proves nothing.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS.parent))

from kafka_broker import TansuBroker, create_topic  # noqa: E402
from scicat_standin import SciCatStandIn  # noqa: E402

UNDER_CI = os.environ.get("CI", "").lower() == "true"


def pytest_configure(config):
    config.addinivalue_line("markers", "integration: needs the real Kafka broker")


# -- Kafka ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory):
    existing = os.environ.get("SFI_TEST_KAFKA_BOOTSTRAP")
    if existing:
        yield existing
        return
    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    try:
        broker = TansuBroker(log_path=str(log)).start()
    except (OSError, RuntimeError) as e:
        message = f"no Kafka broker for the integration tests: {e}"
        if UNDER_CI:
            pytest.fail(message)
        pytest.skip(message)
    yield broker.bootstrap
    broker.stop()


@pytest.fixture
def kafka_topic(kafka_bootstrap):
    """A topic of this test's own, so tests never see each other's messages."""
    name = f"sfi-test-{uuid.uuid4().hex[:12]}"
    create_topic(kafka_bootstrap, name, partitions=1)
    return name


@pytest.fixture
def data_dir(tmp_path):
    """The folder the file writer (the tests) writes NeXus files to."""
    data = tmp_path / "data"
    data.mkdir()
    return data


# -- SciCat --------------------------------------------------------------------


# scicat.api of the ingestor -> the versions the stand-in serves datasets on, in tests parametrized
# by `api`: v3 on a backend serving both (the ingestor must not drift to v4), v4 on one that has
# switched v3 off (a v3 route used anywhere fails the test).
STANDIN_APIS = {"v3": ("v3", "v4"), "v4": ("v4",)}


@pytest.fixture(params=sorted(STANDIN_APIS))
def api(request):
    """The SciCat API version a test runs in: asked for by a test, or parametrized directly."""
    return request.param


@pytest.fixture
def scicat(request):
    """The stand-in, serving v3 and v4 as the real backend does; in a test that names `api`, as that mode needs."""
    apis = STANDIN_APIS[request.getfixturevalue("api")] if "api" in request.fixturenames else ("v3", "v4")
    with SciCatStandIn(apis=apis) as standin:
        yield standin
    assert not standin.internal_errors, standin.internal_errors
    assert not standin.sdk_disagreements, standin.sdk_disagreements


# -- CI: a skip is a failure -----------------------------------------------------


def pytest_sessionfinish(session, exitstatus):
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if UNDER_CI and skipped:
        names = ", ".join(report.nodeid for report in skipped)
        reporter.write_line(f"CI=true: {len(skipped)} skipped tests count as failures: {names}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
