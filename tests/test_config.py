"""The configuration file: what it accepts, and the one-line errors for what it does not."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import scicat_ingestor as si  # noqa: E402

SCRIPT = ROOT / "scicat_ingestor.py"


def minimal_config() -> dict:
    return {
        "kafka": {"bootstrap_servers": "localhost:9092"},
        "scicat": {"host": "http://scicat.test/api/v3", "username": "ingestor", "password": "pw"},
        "dataset": {"contact_email": "dm@example.org", "ownable": {"ownerGroup": "ess"}},
    }


def config_error(raw) -> str:
    with pytest.raises(si.ConfigError) as caught:
        si.parse_config(raw)
    return str(caught.value)


def test_sample_config_is_valid_and_explains_every_key():
    raw = json.loads((ROOT / "config.sample.json").read_text())
    config = si.parse_config(raw | {"options": {**raw["options"], "dry_run": True}})
    assert config.kafka.topics == ["command_channel"]
    # Every key of every section appears in the sample, each with a "#key" explanation.
    for section in ("kafka", "scicat", "files", "spool", "audit", "options", "health", "thumbnail"):
        keys = [f.name for f in si.dataclasses.fields(getattr(si, type(getattr(config, section)).__name__))]
        for key in keys:
            assert key in raw[section], f"{section}.{key} missing from config.sample.json"
            assert "#" + key in raw[section], f"{section}.{key} not explained"
    for key in [f.name for f in si.dataclasses.fields(si.DatasetDefaults)]:
        assert key in raw["dataset"], f"dataset.{key} missing from config.sample.json"


def test_minimal_config_gets_sane_defaults():
    config = si.parse_config(minimal_config())
    assert config.kafka.bootstrap_servers == ["localhost:9092"]
    assert config.kafka.topics == ["command_channel"]
    assert config.kafka.auto_offset_reset == "earliest"
    assert config.scicat.verify_tls is True
    assert config.files.checksum == "none"
    assert config.options.log_message_prefix == " SFI: "


def test_comma_separated_servers_and_v1_topic_string_are_accepted():
    raw = minimal_config()
    raw["kafka"] = {"bootstrap_servers": "a:9092, b:9092", "topic": "fw_commands,other"}
    config = si.parse_config(raw)
    assert config.kafka.bootstrap_servers == ["a:9092", "b:9092"]
    assert config.kafka.topics == ["fw_commands", "other"]


def test_unknown_key_is_named_with_its_section():
    raw = minimal_config()
    raw["kafka"]["bootstrap_server"] = "typo:9092"
    message = config_error(raw)
    assert message.startswith("kafka.bootstrap_server: unknown key")
    assert "bootstrap_servers" in message  # the known keys help spot the typo


def test_nested_unknown_key_is_named_with_its_full_path():
    raw = minimal_config()
    raw["dataset"]["ownable"]["ownergroup"] = "x"
    assert config_error(raw).startswith("dataset.ownable.ownergroup: unknown key")


def test_missing_required_key_is_named():
    raw = minimal_config()
    del raw["dataset"]["ownable"]["ownerGroup"]
    assert config_error(raw) == "dataset.ownable.ownerGroup: missing (required)"


@pytest.mark.parametrize(
    "section, key, value, expected",
    [
        ("scicat", "timeout_s", "30", "number"),
        ("scicat", "verify_tls", "yes", "boolean"),
        ("scicat", "max_retries", 2.5, "integer"),
        ("files", "allowed_roots", "/data", "list of strings"),
        ("kafka", "consumer", ["session.timeout.ms"], "object"),
    ],
)
def test_wrong_type_is_named_with_the_expected_type(section, key, value, expected):
    raw = minimal_config()
    raw.setdefault(section, {})[key] = value
    message = config_error(raw)
    assert message.startswith(f"{section}.{key}: expected ")
    assert expected in message


@pytest.mark.parametrize(
    "change, named",
    [
        (lambda c: c["files"].update(checksum="crc32"), "files.checksum"),
        (lambda c: c["files"].update(allowed_roots=["data"]), "files.allowed_roots"),
        (lambda c: c["kafka"].update(auto_offset_reset="smallest"), "kafka.auto_offset_reset"),
        (lambda c: c["kafka"].update(consumer={"enable.auto.commit": True}), "kafka.consumer.enable.auto.commit"),
        (lambda c: c["scicat"].update(host="scicat:3000"), "scicat.host"),
        (lambda c: c["scicat"].update(password=""), "scicat"),
        (lambda c: c["dataset"].update(contact_email="nobody"), "dataset.contact_email"),
        (lambda c: c["options"].update(logging_level="LOUD"), "options.logging_level"),
        (lambda c: c["options"].update(graylog_protocol="http"), "options.graylog_protocol"),
        (lambda c: c["options"].update(run_start_max_age_s=0), "options.run_start_max_age_s"),
        (lambda c: c.update(health={"port": 70000}), "health.port"),
        (lambda c: c["dataset"].update(creation_location="/ESS/{beamline}"), "dataset.creation_location"),
        (lambda c: c["dataset"].update(creation_location="/ESS/{instrument"), "dataset.creation_location"),
        (lambda c: c.update(instruments={"YMIR": {"creation_location": "/{0}"}}), "instruments.YMIR.creation_location"),
    ],
)
def test_bad_values_are_refused_naming_the_key(change, named):
    raw = minimal_config() | {"files": {}, "options": {}}
    change(raw)
    assert config_error(raw).startswith(named)


def test_password_may_come_from_the_environment(monkeypatch):
    raw = minimal_config()
    raw["scicat"] = {"host": "http://s/api/v3", "username": "ingestor", "password_env": "SFI_TEST_PW"}
    monkeypatch.setenv("SFI_TEST_PW", "from-env")
    assert si.parse_config(raw).scicat.password == "from-env"
    monkeypatch.delenv("SFI_TEST_PW")
    assert "SFI_TEST_PW is not set" in config_error(raw)


def test_kafka_secrets_may_come_from_the_environment(monkeypatch):
    raw = minimal_config()
    raw["kafka"]["consumer"] = {"security.protocol": "SASL_SSL", "sasl.username": "ingestor"}
    raw["kafka"]["consumer_env"] = {"sasl.password": "SFI_TEST_KAFKA_PW"}
    monkeypatch.setenv("SFI_TEST_KAFKA_PW", "kafka-secret")
    config = si.parse_config(raw)
    assert config.kafka.consumer["sasl.password"] == "kafka-secret"
    assert "kafka-secret" not in json.dumps(si.redacted(si.dataclasses.asdict(config)))
    monkeypatch.delenv("SFI_TEST_KAFKA_PW")
    assert config_error(raw) == (
        "kafka.consumer_env.sasl.password: environment variable SFI_TEST_KAFKA_PW is not set")


def test_static_token_needs_no_password():
    raw = minimal_config()
    raw["scicat"] = {"host": "http://s/api/v3", "token": "long-lived"}
    assert si.parse_config(raw).scicat.token == "long-lived"


def test_dry_run_needs_no_credentials(tmp_path):
    raw = minimal_config()
    raw["scicat"] = {"host": "http://s/api/v3"}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(raw))
    assert si.load_config(str(path), dry_run=True).options.dry_run is True
    with pytest.raises(si.ConfigError):
        si.load_config(str(path))


def test_v1_keys_that_mean_nothing_here_are_accepted_with_a_warning(caplog):
    raw = minimal_config()
    raw["kafka"]["enable_auto_commit"] = True
    raw["options"] = {"pyscicat": None, "check_by_job_id": True}
    si.parse_config(raw)
    assert "kafka.enable_auto_commit is ignored" in caplog.text


def test_comment_keys_are_ignored():
    raw = minimal_config()
    raw["#"] = "a comment"
    raw["kafka"]["#bootstrap_servers"] = "explained"
    assert si.parse_config(raw).kafka.bootstrap_servers == ["localhost:9092"]


def test_secrets_are_redacted_for_the_log():
    config = minimal_config()
    config["kafka"]["consumer"] = {"sasl.password": "kafka-secret", "sasl.username": "u"}
    config["scicat"]["token"] = "tok"
    shown = json.dumps(si.redacted(config))
    assert "kafka-secret" not in shown and '"pw"' not in shown and '"tok"' not in shown
    assert '"u"' in shown  # not everything is hidden


def run_script(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout
    )


def test_a_typo_stops_the_program_at_start_with_one_line(tmp_path):
    raw = minimal_config()
    raw["scicat"]["pasword"] = "typo"
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    result = run_script("-c", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "scicat.pasword: unknown key" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "content, expected",
    [(None, "no such configuration file"), ("{not json", "not valid JSON"), ("[1, 2]", "expected an object")],
)
def test_unreadable_config_files_fail_in_one_line(tmp_path, content, expected):
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    result = run_script("-c", str(path))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert expected in result.stderr


def test_help_lists_the_v1_flags():
    result = run_script("--help")
    assert result.returncode == 0
    flags = ("--config", "--verbose", "--sys-log", "--file-log", "--log-prefix", "--debug", "--dry-run", "--version")
    for flag in flags:
        assert flag in result.stdout


def test_version_is_printed():
    result = run_script("--version")
    assert result.returncode == 0 and si.__version__ in result.stdout


def test_command_line_flags_override_the_file_and_absent_ones_do_not():
    options = si.OptionsConfig(verbose=False, logging_level="WARNING", log_message_prefix=" X: ", system_log=True)
    si.apply_arguments(options, si.parse_arguments(["-v", "--debug", "debug"]))
    assert options.verbose is True
    assert options.logging_level == "DEBUG"
    assert options.log_message_prefix == " X: "  # not given: the file's value stays
    assert options.system_log is True


# -- per-instrument settings and the NeXus values to extract ------------------------------


def test_an_instruments_settings_override_the_dataset_section_and_keep_the_rest():
    raw = minimal_config()
    raw["dataset"].update(creation_location="/ESS", ownable={"ownerGroup": "ess", "accessGroups": ["all"]})
    raw["instruments"] = {"YMIR": {"creation_location": "/ESS/YMIR", "ownable": {"accessGroups": ["ymir"]},
                                   "scientific_metadata": [{"path": "/entry/title", "key": "run_title"}]}}
    config = si.parse_config(raw)
    ymir = si.dataset_settings(config, "ymir").settings  # names are compared without case
    assert ymir.fields == {"creationLocation": "/ESS/YMIR"}  # the older key means fields.creationLocation
    assert (ymir.ownable.ownerGroup, ymir.ownable.accessGroups) == ("ess", ["ymir"])  # merged key by key
    assert ymir.contact_email == "dm@example.org"  # not given: the dataset section's
    assert ymir.scientific_metadata == [si.NexusValueRule("/entry/title", "run_title")]
    other = si.dataset_settings(config, "DREAM").settings
    assert other is config.dataset and other.scientific_metadata == si.ESS_SCIENTIFIC_METADATA


def test_the_sample_configurations_instrument_example_is_valid():
    raw = json.loads((ROOT / "config.sample.json").read_text())
    config = si.parse_config(raw | {"options": {**raw["options"], "dry_run": True}})
    assert si.dataset_settings(config, "YMIR").settings.fields["creationLocation"] == "/ESS/YMIR"
    assert config.dataset.scientific_metadata == si.ESS_SCIENTIFIC_METADATA


@pytest.mark.parametrize(
    "instruments, expected",
    [
        ({"YMIR": {"creation_locaton": "/x"}}, "instruments.YMIR.creation_locaton: unknown key"),
        ({"YMIR": {"contact_email": "nobody"}}, "instruments.YMIR.contact_email: expected an email address"),
        ({"YMIR": "/ESS/YMIR"}, "instruments.YMIR: expected an object"),
        ({"YMIR": {"scientific_metadata": [{"path": "/entry/title", "name": "t"}]}},
         "instruments.YMIR.scientific_metadata[0].name: unknown key"),
        ({"YMIR": {"scientific_metadata": [{"key": "t"}]}},
         "instruments.YMIR.scientific_metadata[0].path: missing (required)"),
        ({"YMIR": {"scientific_metadata": ["/entry/title"]}}, "instruments.YMIR.scientific_metadata[0]: expected an object"),
        ({"YMIR": {"scientific_metadata": [{"path": "entry/title"}]}},
         "instruments.YMIR.scientific_metadata[0].path: expected an absolute path"),
        ({"YMIR": {"max_text_length": 0}}, "instruments.YMIR.max_text_length: must be at least 1"),
    ],
)
def test_a_wrong_instrument_setting_is_named_with_its_full_path(instruments, expected):
    raw = minimal_config()
    raw["instruments"] = instruments
    assert config_error(raw).startswith(expected)


def test_scientific_metadata_must_be_a_list_of_rules():
    raw = minimal_config()
    raw["dataset"]["scientific_metadata"] = {"path": "/entry/title"}
    message = config_error(raw)
    assert message.startswith("dataset.scientific_metadata: expected a list of objects (path, key)")


def test_password_and_token_may_come_from_a_file_relative_to_the_configuration(tmp_path):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "pw").write_text("from-file\n")
    raw = minimal_config()
    raw["scicat"] = {"host": "http://s/api/v3", "username": "ingestor", "password_file": "secrets/pw"}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(raw))
    assert si.load_config(str(path)).scicat.password == "from-file"
    (tmp_path / "tok").write_text("a-token")
    raw["scicat"] = {"host": "http://s/api/v3", "token_file": str(tmp_path / "tok")}
    path.write_text(json.dumps(raw))
    assert si.load_config(str(path)).scicat.token == "a-token"


def test_a_token_may_come_from_the_environment(monkeypatch):
    raw = minimal_config()
    raw["scicat"] = {"host": "http://s/api/v3", "token_env": "SFI_TEST_TOKEN"}
    monkeypatch.setenv("SFI_TEST_TOKEN", "env-token")
    assert si.parse_config(raw).scicat.token == "env-token"


@pytest.mark.parametrize("scicat, error", [
    ({"password": "pw", "password_file": "/x"}, "scicat.password_file: give only one of scicat.password"),
    ({"password_env": "X", "password_file": "/x"}, "scicat.password_file: give only one of"),
    ({"token": "t", "token_env": "X"}, "scicat.token_env: give only one of scicat.token"),
    ({"password_file": "/nonexistent/pw"}, "scicat.password_file: cannot read /nonexistent/pw"),
])
def test_a_secret_given_twice_or_unreadable_is_refused(scicat, error):
    raw = minimal_config()
    raw["scicat"] = {"host": "http://s/api/v3", "username": "ingestor", **scicat}
    assert config_error(raw).startswith(error)


def test_a_configuration_holding_a_secret_readable_by_others_is_warned_about(tmp_path, caplog):
    raw = minimal_config()
    raw["scicat"]["host"] = "https://ingestor:pw@s/api/v3"
    path = tmp_path / "c.json"
    path.write_text(json.dumps(raw))
    path.chmod(0o644)
    si.load_config(str(path))
    assert f"scicat.host, scicat.password: {path} holds a credential and every user of this host may read it" in caplog.text
    caplog.clear()
    path.chmod(0o640)
    si.load_config(str(path))
    assert "holds a credential" not in caplog.text
