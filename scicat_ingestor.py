#!/usr/bin/env python3
"""SciCat file-writer ingestor.

Listens to the ESS file writer's command topic on Kafka, joins each run start
(``pl72``) with its "finished writing" (``wrdn``) by job id, reads the finished
NeXus file's metadata with h5py and creates a SciCat raw dataset and its
origdatablock through SciCat's REST API.

    ./scicat_ingestor.py -c config.json -v --sys-log

The file reads top to bottom like the data flows:

1. configuration      the JSON file, checked strictly at start
1b. the log           escaping, redaction, repeated warnings
2. decoding           Kafka payloads -> RunStart / FinishedWriting
2b. run start store   run starts waiting for their wrdn, on disk across restarts
2c. job watchdog      the writer's failed starts and silent jobs
3. metadata           the NeXus file -> NexusMetadata, DataFile
3b. the file reader   a child process with a deadline: a hung mount never freezes the loop
3c. thumbnails        the default plot of the file, read within a budget, drawn as a PNG
4. building           pure functions: dataset and origdatablock payloads
4a. field templates   dataset.fields: the facility's own values, parsed at start, filled per file
5. talking to SciCat  login, token renewal, retries, the two POSTs
6. the loop           poll, dispatch, ingest, commit
6b. health, metrics   GET /health and /metrics, in a thread beside the loop
7. the command line   the checkout's .venv, arguments, logging, main(), summary lines
"""

from __future__ import annotations

import argparse
import atexit
import bisect
import contextlib
import dataclasses
import datetime as dt
import fnmatch
import functools
import grp
import hashlib
import json
import logging
import logging.handlers
import math
import os
import pwd
import random
import re
import signal
import stat
import sys
import threading
import time
import types
import typing
import urllib.parse
import uuid
from collections import Counter, OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Optional, Union

__version__ = "1.1.0"

logger = logging.getLogger("scicat_ingestor")


# =============================================================================
# 1. Configuration
# =============================================================================
#
# Every section is a dataclass; its fields are the keys the JSON file may hold,
# their annotations the types the file must use. Unknown keys are refused so a
# typo stops the program at start instead of silently using a default.
# Keys starting with "#" are comments (config.sample.json explains itself).

REQUIRED = dataclasses.MISSING  # marker: a field without a default must be in the file


class ConfigError(Exception):
    """A configuration problem, told in one line that names the key."""


@dataclass
class KafkaConfig:
    bootstrap_servers: Union[list[str], str]
    topics: list[str] = field(default_factory=lambda: ["command_channel"])
    group_id: str = "scicat_filewriter_ingestor"
    auto_offset_reset: str = "earliest"
    # Further librdkafka consumer settings, passed through unchanged
    # (security.protocol, sasl.*, ssl.*, session.timeout.ms, ...).
    consumer: dict[str, Union[str, int, float, bool]] = field(default_factory=dict)
    # Consumer settings taken from environment variables, e.g. {"sasl.password": "KAFKA_PASSWORD"}:
    # keeps secrets out of the file (systemd's EnvironmentFile).
    consumer_env: dict[str, str] = field(default_factory=dict)
    poll_timeout_s: float = 1.0


@dataclass
class SciCatConfig:
    host: str  # API base including the version, e.g. http://scicat/api/v3
    username: str = ""
    password: str = ""
    password_env: str = ""  # name of an environment variable holding the password
    password_file: str = ""  # a file holding the password (relative to the config file)
    token: str = ""  # a static long-lived token, instead of username/password
    token_env: str = ""
    token_file: str = ""
    timeout_s: float = 30.0
    verify_tls: bool = True
    # How long an answer about a proposal, instrument or sample is reused.
    lookup_cache_s: float = 600.0
    max_retries: int = 5  # for connection errors, timeouts, 5xx and 429
    retry_backoff_s: float = 1.0
    # Where datasets and origdatablocks are made: "v3", "v4", or "auto" (v4 where the backend serves it).
    api: str = "auto"


@dataclass
class Ownable:
    ownerGroup: str
    accessGroups: list[str] = field(default_factory=list)


@dataclass
class NexusValueRule:
    """One entry of dataset.scientific_metadata: NeXus values to copy into scientificMetadata."""

    # An absolute path in the file; each segment may be a glob pattern (*, ?, [..]),
    # and a "**" segment stands for any number of groups.
    path: str
    # The scientificMetadata key. Default: the path below its first group, "/" -> "_"
    # (/entry/sample/name -> sample_name). With several matches: <key>_<default key>.
    key: str = ""


# What ESS files carry (shared/docs/file-writer-messages.md): /entry's own values,
# the sample and the people.
ESS_SCIENTIFIC_METADATA = [
    NexusValueRule("/entry/" + name)
    for name in ("title", "experiment_identifier", "experiment_description", "entry_identifier",
                 "entry_identifier_uuid", "start_time", "end_time", "definition", "instrument/name",
                 "sample/*", "user_*/name")
]


# What a template in dataset.fields may be: JSON, its strings templates (section 4a).
TemplateJSON = Union[str, int, float, bool, list, dict]


@dataclass
class DatasetDefaults:
    ownable: Ownable
    contact_email: str
    instrument_name: str = ""
    instrument_id: str = ""
    default_proposal_id: str = ""
    # With a prefix, each dataset gets the pid <prefix>/<uuid5 of job id and file>,
    # so a redelivered message can never create a second dataset. Needs an
    # account that may set pids; without it SciCat makes the pid.
    pid_prefix: str = ""
    owner: str = ""
    principal_investigator: str = ""
    # SciCat raw-dataset field -> template (section 4a), tried before the built-in rule of
    # that field. An instrument's are laid over these key by key. The older key
    # creation_location means fields.creationLocation.
    fields: dict[str, TemplateJSON] = field(default_factory=dict)
    # Only under instruments.<NAME>: glob patterns of file paths (as this host sees them)
    # that make a file this instrument's when no configured instrument is named.
    path_patterns: list[str] = field(default_factory=list)
    # Added to accessGroups, so the ingestor's account can read back what it created
    # when the proposal's groups are not its own.
    ingestor_group: str = ""
    scientific_metadata: list[NexusValueRule] = field(default_factory=lambda: list(ESS_SCIENTIFIC_METADATA))
    # Longer text values read from the file are cut to this many characters.
    max_text_length: int = 1000


@dataclass
class FilesConfig:
    path_map: dict[str, str] = field(default_factory=dict)
    allowed_roots: list[str] = field(default_factory=lambda: ["/"])
    checksum: str = "none"
    # How long to wait for a file that is not there or not readable yet: the
    # wrdn can arrive before the file shows on this host's mount.
    wait_s: float = 30.0
    # How long reading one file's metadata and checksum may take before it counts as hung
    # (a dead network mount): the file is spooled and its reader process abandoned.
    read_timeout_s: float = 600.0


@dataclass
class OptionsConfig:
    verbose: bool = False
    file_log: Union[bool, str] = False
    file_log_base_name: str = ".scicat_ingestor_log"
    file_log_timestamp: bool = False
    logging_level: str = "INFO"
    system_log: bool = False
    system_log_facility: str = "user"
    log_message_prefix: str = " SFI: "
    dry_run: bool = False
    run_start_cache_size: int = 1000
    # A run start whose wrdn has not come within this long is forgotten (a writer that died without a wrdn).
    run_start_max_age_s: float = 7 * 24 * 3600.0
    # The run starts waiting for their wrdn, kept across restarts; one file per instance.
    # Relative to the config file.
    run_start_state_file: str = "run_starts.jsonl"
    # A job heard of neither by heartbeat nor by wrdn for this long is reported silent; 0: not watched.
    job_silence_s: float = 600.0
    stats_interval_s: float = 60.0
    # Before creating a dataset, look for one with the same job id.
    check_by_job_id: bool = True
    # GELF to a Graylog input; needs the graypy package.
    graylog: bool = False
    graylog_host: str = ""
    graylog_port: int = 12201
    graylog_protocol: str = "udp"
    graylog_facility: str = "scicat_ingestor"


@dataclass
class SpoolConfig:
    # Failed files, one JSON line each, for --replay. Relative to the config file.
    directory: str = "spool"


@dataclass
class AuditConfig:
    # One JSON line per finished file handled; "" turns it off. Relative to the config file.
    file: str = "audit.jsonl"


@dataclass
class HealthConfig:
    # GET /health and GET /metrics on this port; 0 turns the endpoint off.
    port: int = 0
    # Local only by default: the endpoint needs no login.
    address: str = "127.0.0.1"


@dataclass
class ThumbnailConfig:
    # Attach a picture of each file's default plot (NXdata) to its dataset.
    enabled: bool = True
    # What reading the plotted array may cost at most, whatever its size: a strided selection.
    max_read_mb: float = 64.0
    width: int = 400
    height: int = 300
    # How long drawing one picture may take; past it the file goes without one.
    timeout_s: float = 60.0


@dataclass
class Config:
    kafka: KafkaConfig
    scicat: SciCatConfig
    dataset: DatasetDefaults
    # instruments.<NAME>: any dataset key, for that instrument's files; keys not given
    # keep the dataset section's value. Parsed into complete DatasetDefaults.
    instruments: dict[str, DatasetDefaults] = field(default_factory=dict)
    files: FilesConfig = field(default_factory=FilesConfig)
    spool: SpoolConfig = field(default_factory=SpoolConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    options: OptionsConfig = field(default_factory=OptionsConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    thumbnail: ThumbnailConfig = field(default_factory=ThumbnailConfig)


# Keys of the v1.0.0 ingestor that mean nothing here: accepted with a warning
# so an old configuration still starts.
LEGACY_KEYS = {
    "kafka.enable_auto_commit": "offsets are always committed after a message is handled",
    "kafka.individual_message_commit": "offsets are always committed one message at a time",
    "options.config_file": "the configuration file is given with -c",
    "options.pyscicat": "not used",
    "user_office": "not used",
}
CHECKSUM_ALGORITHMS = ("none", "md5", "sha256", "blake2b")
OFFSET_RESETS = ("earliest", "latest", "error")
SCICAT_APIS = ("auto", "v3", "v4")
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
GRAYLOG_PROTOCOLS = ("udp", "tcp")
# A picture smaller has no room for its plot; larger ones SciCat shows shrunk anyway.
THUMBNAIL_MIN_SIZE = (200, 150)
THUMBNAIL_MAX_SIDE = 2000
SECRET_WORDS = ("password", "token", "secret", "sasl.oauthbearer.config", "ssl.key.pem")


def _describe_type(annotation: Any) -> str:
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe_type(a) for a in args)
    if origin is list and dataclasses.is_dataclass(args[0]):
        return f"a list of objects ({', '.join(f.name for f in dataclasses.fields(args[0]))})"
    if origin is list:
        return f"a list of {_describe_type(args[0])}s"
    if origin is dict:
        return "an object"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(
        annotation, getattr(annotation, "__name__", str(annotation))
    )


def _has_type(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        return any(_has_type(value, a) for a in args)
    if origin is list:
        return isinstance(value, list) and all(_has_type(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(
            isinstance(k, str) and _has_type(v, args[1]) for k, v in value.items()
        )
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, annotation)


def _section_from_json(cls: type, raw: Any, where: str) -> Any:
    """Build dataclass ``cls`` from the JSON object ``raw`` found at ``where``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected an object, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        path = f"{where}.{key}" if where else key
        if key.startswith("#"):
            continue
        if path in LEGACY_KEYS:
            logger.warning("config key %s is ignored: %s", path, LEGACY_KEYS[path])
            continue
        if key not in known:
            raise ConfigError(
                f"{path}: unknown key (known in {where or 'the top level'}: {', '.join(known)})"
            )
        annotation = hints[key]
        item_type = typing.get_args(annotation)[0] if typing.get_origin(annotation) is list else None
        if dataclasses.is_dataclass(annotation):
            values[key] = _section_from_json(annotation, value, path)
        elif dataclasses.is_dataclass(item_type) and isinstance(value, list):
            values[key] = [_section_from_json(item_type, item, f"{path}[{i}]") for i, item in enumerate(value)]
        elif not _has_type(value, annotation):
            raise ConfigError(
                f"{path}: expected {_describe_type(annotation)}, got {json.dumps(value)[:60]}"
            )
        else:
            values[key] = value
    for name, f in known.items():
        if name not in values and f.default is REQUIRED and f.default_factory is REQUIRED:
            path = f"{where}.{name}" if where else name
            raise ConfigError(f"{path}: missing (required)")
    return cls(**values)


def parse_config(raw: Any) -> Config:
    """Check a decoded JSON configuration and turn it into a Config."""
    if isinstance(raw, dict) and isinstance(raw.get("kafka"), dict):
        kafka = dict(raw["kafka"])
        # v1.0.0 named a single topic "topic"; both spellings mean the same list.
        if "topic" in kafka:
            if "topics" in kafka:
                raise ConfigError("kafka.topic: give either kafka.topic or kafka.topics, not both")
            kafka["topics"] = kafka.pop("topic")
        if isinstance(kafka.get("topics"), str):
            kafka["topics"] = [t.strip() for t in kafka["topics"].split(",") if t.strip()]
        raw = {**raw, "kafka": kafka}
    instruments: Any = {}
    if isinstance(raw, dict):
        raw = dict(raw)  # the caller's stays as it was
        instruments = raw.pop("instruments", {})
    if not isinstance(instruments, dict):
        raise ConfigError(f"instruments: expected an object, got {type(instruments).__name__}")
    if isinstance(raw, dict) and "dataset" in raw:
        raw["dataset"] = _creation_location_as_field(raw["dataset"], "dataset")
    config = _section_from_json(Config, raw, "")
    config.instruments = {
        name: _section_from_json(
            DatasetDefaults,
            _over_dataset(raw["dataset"], _creation_location_as_field(settings, f"instruments.{name}"), name),
            f"instruments.{name}")
        for name, settings in instruments.items() if not name.startswith("#")
    }
    _check_values(config)
    _check_dataset_settings(config)
    return config


@dataclass
class SelectedSettings:
    """The dataset settings a file goes by, and why (for the field-source report)."""

    settings: DatasetDefaults
    section: str  # "dataset" or "instruments.<NAME>"
    why: str


def dataset_settings(config: Config, instrument: str, path: str = "", default_instrument: str = "") -> SelectedSettings:
    """The settings of the instrument the messages or the file name (compared without case), else
    of the first instrument whose path_patterns match the file's path, else of
    dataset.instrument_name's (default_instrument), else the dataset section's."""
    if named := _instrument_section(config, instrument):
        return SelectedSettings(named[1], f"instruments.{named[0]}", f"the instrument is named {instrument}")
    for name, settings in config.instruments.items():
        pattern = next((p for p in settings.path_patterns if path and fnmatch.fnmatchcase(path, p)), "")
        if pattern:
            return SelectedSettings(settings, f"instruments.{name}", f"the path matches {pattern}")
    if named := _instrument_section(config, default_instrument):
        return SelectedSettings(named[1], f"instruments.{named[0]}", f"dataset.instrument_name is {default_instrument}")
    why = f"no instrument section for {instrument or default_instrument}" if instrument or default_instrument \
        else "no instrument named"
    return SelectedSettings(config.dataset, "dataset", why + (", no path pattern matches" if path else ""))


def _instrument_section(config: Config, instrument: str) -> Optional[tuple[str, DatasetDefaults]]:
    wanted = instrument.casefold()
    return next(((name, d) for name, d in config.instruments.items() if instrument and name.casefold() == wanted), None)


def _creation_location_as_field(section: Any, where: str) -> Any:
    """The older key creation_location (an {instrument} template) as fields.creationLocation."""
    if not isinstance(section, dict) or "creation_location" not in section:
        return section
    section = dict(section)
    location = section.pop("creation_location")
    if not isinstance(location, str):
        raise ConfigError(f"{where}.creation_location: expected string, got {json.dumps(location)[:60]}")
    parse_text_template(location, f"{where}.creation_location")  # its mistakes named by the key written
    fields = section.get("fields")
    if isinstance(fields, dict) and "creationLocation" in fields:
        raise ConfigError(f"{where}.creation_location: give it or {where}.fields.creationLocation, not both")
    if location:  # "": today's rule, the instrument name
        section["fields"] = {**(fields if isinstance(fields, dict) else {}), "creationLocation": location}
    return section


def _over_dataset(dataset: dict[str, Any], settings: Any, name: str) -> dict[str, Any]:
    """An instrument's keys laid over the dataset section; "ownable" and "fields" merged key
    by key. Selected by path_patterns, the instrument is named by its section's name."""
    if not isinstance(settings, dict):
        raise ConfigError(f"instruments.{name}: expected an object, got {type(settings).__name__}")
    merged = {**dataset, **settings}
    for key in ("ownable", "fields"):
        if isinstance(dataset.get(key), dict) and isinstance(settings.get(key), dict):
            merged[key] = {**dataset[key], **settings[key]}
    if settings.get("path_patterns") and "instrument_name" not in settings:
        merged["instrument_name"] = name
    return merged


def _check_values(config: Config) -> None:
    """Checks of values, beyond their types."""
    kafka = config.kafka
    if isinstance(kafka.bootstrap_servers, str):
        kafka.bootstrap_servers = [s.strip() for s in kafka.bootstrap_servers.split(",")]
    kafka.bootstrap_servers = [s for s in kafka.bootstrap_servers if s]
    if not kafka.bootstrap_servers:
        raise ConfigError("kafka.bootstrap_servers: empty")
    if not kafka.topics:
        raise ConfigError("kafka.topics: empty")
    if kafka.auto_offset_reset not in OFFSET_RESETS:
        raise ConfigError(f"kafka.auto_offset_reset: expected one of {', '.join(OFFSET_RESETS)}")
    for setting, variable in kafka.consumer_env.items():
        if variable not in os.environ:
            raise ConfigError(f"kafka.consumer_env.{setting}: environment variable {variable} is not set")
        kafka.consumer[setting] = os.environ[variable]
    if "enable.auto.commit" in kafka.consumer or "enable.auto.offset.store" in kafka.consumer:
        raise ConfigError(
            "kafka.consumer.enable.auto.commit: not allowed; the ingestor commits each "
            "offset itself once the message is handled"
        )
    scicat = config.scicat
    if not scicat.host.startswith(("http://", "https://")):
        raise ConfigError(f"scicat.host: expected an http(s) URL, got {scicat.host!r}")
    scicat.host = scicat.host.rstrip("/")
    scicat.password = _secret(scicat, "password", config.options.dry_run)
    scicat.token = _secret(scicat, "token", config.options.dry_run)
    if not config.options.dry_run and not scicat.token and not (scicat.username and scicat.password):
        raise ConfigError("scicat: give scicat.username and scicat.password (or password_env, password_file), "
                          "or scicat.token (or token_env, token_file)")
    if scicat.timeout_s <= 0 or scicat.max_retries < 0:
        raise ConfigError("scicat.timeout_s must be > 0 and scicat.max_retries >= 0")
    if scicat.lookup_cache_s < 0:
        raise ConfigError("scicat.lookup_cache_s: must be >= 0")
    if scicat.api not in SCICAT_APIS:
        raise ConfigError(f"scicat.api: expected one of {', '.join(SCICAT_APIS)}, got {scicat.api!r}")
    if scicat.api == "v4" and not v4_base(scicat.host):
        raise ConfigError(f"scicat.api: v4 needs scicat.host to end in /v3 (the v4 base is made from it), "
                          f"got {scicat.host!r}")
    if config.files.checksum not in CHECKSUM_ALGORITHMS:
        raise ConfigError(f"files.checksum: expected one of {', '.join(CHECKSUM_ALGORITHMS)}")
    if config.files.read_timeout_s <= 0:
        raise ConfigError("files.read_timeout_s: must be > 0")
    for root in config.files.allowed_roots:
        if not os.path.isabs(root):
            raise ConfigError(f"files.allowed_roots: {root!r} is not an absolute path")
    if config.options.logging_level.upper() not in LOG_LEVELS:
        raise ConfigError(f"options.logging_level: expected one of {', '.join(LOG_LEVELS)}")
    if config.options.run_start_cache_size < 1:
        raise ConfigError("options.run_start_cache_size: must be at least 1")
    if config.options.run_start_max_age_s <= 0:
        raise ConfigError("options.run_start_max_age_s: must be > 0")
    if not config.options.run_start_state_file:
        raise ConfigError("options.run_start_state_file: empty; run starts waiting for their wrdn need a file")
    if config.options.job_silence_s < 0:
        raise ConfigError("options.job_silence_s: must be >= 0 (0 turns the watch of silent jobs off)")
    if config.options.graylog_protocol not in GRAYLOG_PROTOCOLS:
        raise ConfigError(f"options.graylog_protocol: expected one of {', '.join(GRAYLOG_PROTOCOLS)}")
    if not 0 <= config.health.port <= 65535:
        raise ConfigError("health.port: expected 0 (off) or a TCP port up to 65535")
    thumbnail = config.thumbnail
    if thumbnail.max_read_mb <= 0 or thumbnail.timeout_s <= 0:
        raise ConfigError("thumbnail.max_read_mb and thumbnail.timeout_s: must be > 0")
    if not (THUMBNAIL_MIN_SIZE[0] <= thumbnail.width <= THUMBNAIL_MAX_SIDE
            and THUMBNAIL_MIN_SIZE[1] <= thumbnail.height <= THUMBNAIL_MAX_SIDE):
        raise ConfigError(f"thumbnail.width and thumbnail.height: from {THUMBNAIL_MIN_SIZE[0]} x "
                          f"{THUMBNAIL_MIN_SIZE[1]} to {THUMBNAIL_MAX_SIDE} pixels a side")
    if "@" not in config.dataset.contact_email:
        raise ConfigError("dataset.contact_email: expected an email address")


def _secret(scicat: SciCatConfig, name: str, dry_run: bool) -> str:
    """scicat.<name>, given in the file, by an environment variable (<name>_env) or in a file of
    its own (<name>_file): at most one of the three."""
    variable, path = getattr(scicat, f"{name}_env"), getattr(scicat, f"{name}_file")
    given = [key for key, value in ((name, getattr(scicat, name)), (f"{name}_env", variable), (f"{name}_file", path))
             if value]
    if len(given) > 1:
        raise ConfigError(f"scicat.{given[1]}: give only one of scicat.{name}, {name}_env, {name}_file")
    if variable:
        value = os.environ.get(variable, "")
        if not value and not dry_run:
            raise ConfigError(f"scicat.{name}_env: environment variable {variable} is not set")
        return value
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                value = f.read().strip()  # a trailing newline is not part of it
        except OSError as e:
            raise ConfigError(f"scicat.{name}_file: cannot read {path}: {e.strerror}") from None
        if not value:
            raise ConfigError(f"scicat.{name}_file: {path} is empty")
        _warn_if_others_read(path, f"scicat.{name}_file")
        return value
    return getattr(scicat, name)


# Keys whose values name where a secret is, not the secret.
SECRET_POINTERS = ("password_env", "password_file", "token_env", "token_file", "consumer_env")


def secrets_in(raw: Any, where: str = "") -> list[str]:
    """The keys of a decoded configuration that hold a secret itself."""
    if not isinstance(raw, dict):
        return []
    found = []
    for key, value in raw.items():
        path = f"{where}.{key}" if where else key
        if key.startswith("#") or key in SECRET_POINTERS:
            continue
        if isinstance(value, dict):
            found += secrets_in(value, path)
        elif value and isinstance(value, str) and (any(word in key.lower() for word in SECRET_WORDS)
                                                    or URL_CREDENTIALS.search(value)):
            found.append(path)
    return found


def _warn_if_others_read(path: str, what: str) -> None:
    try:
        readable_by_others = os.stat(path).st_mode & stat.S_IROTH
    except OSError:
        return
    if readable_by_others:
        logger.warning("%s: %s holds a credential and every user of this host may read it (chmod o-r %s)",
                       what, path, path)


def _check_dataset_settings(config: Config) -> None:
    """Checks of the dataset settings, the dataset section's and each instrument's."""
    for name, dataset in config.instruments.items():
        if "@" not in dataset.contact_email:
            raise ConfigError(f"instruments.{name}.contact_email: expected an email address")
    for where, dataset in (("dataset", config.dataset),
                           *((f"instruments.{name}", d) for name, d in config.instruments.items())):
        for i, rule in enumerate(dataset.scientific_metadata):
            if not rule.path.startswith("/") or rule.path.strip("/") == "":
                raise ConfigError(f"{where}.scientific_metadata[{i}].path: expected an absolute path "
                                  f"below the file's root, got {rule.path!r}")
        if dataset.max_text_length < 1:
            raise ConfigError(f"{where}.max_text_length: must be at least 1")
        field_templates(dataset.fields, f"{where}.fields")  # refused at start, naming the key
    if config.dataset.path_patterns:
        raise ConfigError("dataset.path_patterns: only an instrument's section selects files by path "
                          "(instruments.<NAME>.path_patterns)")


def load_config(path: str, dry_run: bool = False) -> Config:
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    if dry_run and isinstance(raw, dict):
        # Decided before the checks: a dry run needs no SciCat credentials.
        raw.setdefault("options", {})["dry_run"] = True
    # Relative paths in the file are relative to the file, not to where the
    # service happens to be started.
    here = os.path.dirname(os.path.abspath(path))
    scicat = raw.get("scicat") if isinstance(raw, dict) else None
    for key in ("password_file", "token_file"):
        if isinstance(scicat, dict) and isinstance(scicat.get(key), str) and scicat[key]:
            scicat[key] = os.path.join(here, scicat[key])
    config = parse_config(raw)
    held = secrets_in(raw)
    if held:
        _warn_if_others_read(path, ", ".join(held))
    config.spool.directory = os.path.join(here, config.spool.directory)
    if config.audit.file:
        config.audit.file = os.path.join(here, config.audit.file)
    config.options.run_start_state_file = os.path.join(here, config.options.run_start_state_file)
    return config


def require_package(module: str, key: str) -> types.ModuleType:
    """An optional package a configuration key asks for, or a one-line error saying how to get it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.replace("_", "-")
        raise ConfigError(f"{key}: needs the Python package {package}, which is not installed "
                          f"(pip install {package})") from None


def redacted(value: Any, key: str = "") -> Any:
    """A copy of a configuration value safe to log: secrets replaced."""
    if isinstance(value, dict):
        return {k: redacted(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v) for v in value]
    if value and any(word in key.lower() for word in SECRET_WORDS) and key not in SECRET_POINTERS:
        return "***"
    return redact_urls(value) if isinstance(value, str) else value


# =============================================================================
# 1b. What goes into the log
# =============================================================================
#
# Every handler gets a LogSafety filter: whatever a line holds, from a message or
# an exception, it stays one line, and carries no password given in a URL.

# ASCII control characters, DEL, and the Unicode line breaks a log viewer honours.
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")
# The user-information part of a URL: https://user:password@host.
URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")
REPEAT_SUMMARY_INTERVAL_S = 30.0


def escape_control(text: str) -> str:
    """``text`` with every control character written as an escape: \\n, \\x1b, ..."""
    return CONTROL_CHARACTERS.sub(lambda m: repr(m.group())[1:-1], text)


def redact_urls(text: str) -> str:
    return URL_CREDENTIALS.sub(r"\1***@", text)


class LogSafety(logging.Filter):
    """Makes every record one line without credentials; a traceback's lines are indented,
    so none of them can pass for a line of its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        safe = redact_urls(escape_control(text))
        if safe != text:
            record.msg, record.args = safe, None
        if record.exc_info and not record.exc_text:
            trace = logging.Formatter().formatException(record.exc_info)
            record.exc_text = "\n".join("  | " + redact_urls(escape_control(line)) for line in trace.splitlines())
        return True


class RepeatLimiter:
    """Of a run of the same warning, the first, then at most one per interval with how many
    were held back: an unreachable broker must not fill the disk with the same two lines."""

    CAPACITY = 100  # distinct warnings remembered

    def __init__(self, interval_s: float = REPEAT_SUMMARY_INTERVAL_S):
        self.interval_s = interval_s
        self._seen: OrderedDict[str, tuple[float, int]] = OrderedDict()  # key -> (last shown, held back since)
        self._lock = threading.Lock()  # librdkafka's callbacks come from its own threads

    def let_through(self, key: str) -> Optional[int]:
        """None to hold this one back, else how many were held back since the last shown."""
        now = time.monotonic()
        with self._lock:
            shown_at, held = self._seen.get(key, (-math.inf, 0))
            if now - shown_at < self.interval_s:
                self._seen[key] = (shown_at, held + 1)
                return None
            self._seen[key] = (now, 0)
            self._seen.move_to_end(key)
            while len(self._seen) > self.CAPACITY:
                self._seen.popitem(last=False)
            return held

    def log(self, level: int, key: str, message: str, *args: Any) -> None:
        held = self.let_through(key)
        if held is not None:
            logger.log(level, message + self.summary(held), *args)

    def summary(self, held: int) -> str:
        return f" (and {held} more like it in the last {self.interval_s:.0f} s)" if held else ""


class RepeatFilter(logging.Filter):
    """A RepeatLimiter for a logger whose lines we do not write (librdkafka's): lines the same
    but for their numbers count as one."""

    def __init__(self, limiter: RepeatLimiter):
        super().__init__()
        self.limiter = limiter

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        held = self.limiter.let_through(f"{record.levelno} " + re.sub(r"\d+", "#", text))
        if held is None:
            return False
        record.msg, record.args = text + self.limiter.summary(held), None
        return True


# =============================================================================
# 2. Decoding the file writer's messages
# =============================================================================
#
# Every message is a FlatBuffer whose bytes 4..8 name its schema. We act on
# run starts (pl72) and finished writing (wrdn) and pass over the rest.

SCHEMA_RUN_START = "pl72"
SCHEMA_FINISHED_WRITING = "wrdn"
# Read for the watchdog of the writer's jobs (section 2c) only.
SCHEMA_ANSWER = "answ"
SCHEMA_HEARTBEAT = "x5f2"
# What the file writer also sends on its command and control topics.
SCHEMAS_PASSED_OVER = ("6s4t",)
PREVIEW_BYTES = 32
# Deeper JSON in a message is dropped with a warning. Real metadata nests a few levels, a
# nexus_structure some 20; MongoDB, under SciCat, refuses documents nested over 100.
MESSAGE_JSON_MAX_DEPTH = 64


class UndecodableMessage(Exception):
    """A payload that is not a message we can read; the text says why."""


@dataclass
class RunStart:
    job_id: str
    filename: str
    run_name: str = ""
    instrument_name: str = ""
    start_time_ms: int = 0
    stop_time_ms: int = 0
    service_id: str = ""
    control_topic: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    metadata_error: str = ""
    # A few top-level values of nexus_structure (proposal, title, ...). The
    # structure itself can be megabytes and is not kept.
    structure_values: dict[str, str] = field(default_factory=dict)


@dataclass
class FinishedWriting:
    job_id: str
    file_name: str
    service_id: str = ""
    error_encountered: bool = False
    message: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    metadata_error: str = ""


@dataclass
class JobAnswer:
    """The writer's answer to a command (answ): whether a job's start failed."""

    job_id: str
    start_failed: bool
    message: str = ""


@dataclass
class Heartbeat:
    """The writer's status (x5f2): the job it is writing, if any ("" when idle)."""

    job_id: str
    file_name: str = ""


@dataclass
class PassedOver:
    """A well-formed message that is not ours to act on."""

    schema: str


Message = Union[RunStart, FinishedWriting, JobAnswer, Heartbeat, PassedOver]

# Values of the run start's nexus_structure worth keeping: /entry/<name>.
STRUCTURE_VALUE_NAMES = ("experiment_identifier", "title", "experiment_description", "entry_identifier")


def schema_of(payload: bytes) -> str:
    if len(payload) < 8:
        raise UndecodableMessage(f"too short for a FlatBuffer ({len(payload)} bytes)")
    try:
        return payload[4:8].decode("ascii")
    except UnicodeDecodeError:
        raise UndecodableMessage("no schema id at bytes 4..8") from None


def nesting_depth(value: Any, limit: int) -> int:
    """How deep lists and objects nest in ``value`` (a scalar: 0), counted without recursion
    and only up to one level past ``limit``."""
    deepest = 0
    stack = [(value, 1)]
    while stack and deepest <= limit:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is not None:
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in children)
    return deepest


def load_message_json(text: str, what: str) -> tuple[Any, str]:
    """JSON from a message, and why it could not be read, if so. Nested deeper than
    MESSAGE_JSON_MAX_DEPTH it is refused: every later step (spool, audit, SciCat's MongoDB)
    would recurse or refuse, and one message must never stop the daemon."""
    too_deep = f"{what} is nested deeper than {MESSAGE_JSON_MAX_DEPTH} levels: {text[:80]!r}"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        return None, f"{what} is not valid JSON ({e.msg} at column {e.colno}): {text[:80]!r}"
    except RecursionError:  # the parser's own limit, about 1000 levels
        return None, too_deep
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        return None, f"{what} cannot be read: {e}: {text[:80]!r}"
    if nesting_depth(value, MESSAGE_JSON_MAX_DEPTH) > MESSAGE_JSON_MAX_DEPTH:
        return None, too_deep
    return value, ""


def parse_metadata_json(text: Optional[str]) -> tuple[dict[str, Any], str]:
    """The message's metadata JSON as a dict, and why it could not be read, if so."""
    if not text or not text.strip():
        return {}, ""
    value, error = load_message_json(text, "metadata")
    if error:
        return {}, error
    if not isinstance(value, dict):
        return {}, f"metadata is JSON but not an object: {text[:80]!r}"
    return value, ""


def structure_values(nexus_structure: str) -> tuple[dict[str, str], str]:
    """Top-level values of /entry in a run start's nexus_structure JSON, and why it could not be read, if so."""
    if not nexus_structure:
        return {}, ""
    tree, error = load_message_json(nexus_structure, "nexus_structure")
    if error:
        return {}, error
    entries = [
        child for child in (tree.get("children") or []) if isinstance(child, dict)
    ] if isinstance(tree, dict) else []
    entry = next((c for c in entries if c.get("name") == "entry"), entries[0] if entries else {})
    found = {}
    for child in entry.get("children") or []:
        if not isinstance(child, dict):
            continue
        # Two forms: {"module": "dataset", "config": {name, values}} and the
        # older {"type": "dataset", "name": ..., "values": ...}.
        node = child.get("config") if child.get("module") == "dataset" else child
        if not isinstance(node, dict):
            continue
        name, value = node.get("name"), node.get("values")
        if name in STRUCTURE_VALUE_NAMES and isinstance(value, (str, int, float)):
            found[name] = str(value)
    return found, ""


def decode_run_start(payload: bytes) -> RunStart:
    from streaming_data_types.run_start_pl72 import deserialise_pl72

    info = deserialise_pl72(payload)
    metadata, metadata_error = parse_metadata_json(info.metadata)
    values, structure_error = structure_values(info.nexus_structure)
    return RunStart(
        job_id=info.job_id,
        filename=info.filename,
        run_name=info.run_name,
        instrument_name=info.instrument_name,
        start_time_ms=int(info.start_time or 0),
        stop_time_ms=int(info.stop_time or 0),
        service_id=info.service_id,
        control_topic=info.control_topic or "",
        metadata=metadata,
        metadata_error="; ".join(filter(None, (metadata_error, structure_error))),
        structure_values=values,
    )


def decode_finished_writing(payload: bytes) -> FinishedWriting:
    from streaming_data_types.finished_writing_wrdn import deserialise_wrdn

    info = deserialise_wrdn(payload)
    metadata, metadata_error = parse_metadata_json(info.metadata)
    return FinishedWriting(
        job_id=info.job_id,
        file_name=info.file_name,
        service_id=info.service_id,
        error_encountered=bool(info.error_encountered),
        message=info.message or "",
        metadata=metadata,
        metadata_error=metadata_error,
    )


def decode_answer(payload: bytes) -> JobAnswer:
    from streaming_data_types.action_response_answ import ActionOutcome, ActionType, deserialise_answ

    info = deserialise_answ(payload)
    return JobAnswer(job_id=info.job_id, message=info.message,
                     start_failed=info.action == ActionType.StartJob and info.outcome == ActionOutcome.Failure)


def decode_heartbeat(payload: bytes) -> Heartbeat:
    from streaming_data_types.status_x5f2 import deserialise_x5f2

    status, _ = parse_metadata_json(deserialise_x5f2(payload).status_json)
    # kafka-to-nexus names the file "file_being_written"; an idle writer names no job.
    return Heartbeat(job_id=str(status.get("job_id") or ""), file_name=str(status.get("file_being_written") or ""))


def decode_message(payload: bytes) -> Message:
    """Decode one Kafka payload; raise UndecodableMessage with the reason."""
    from streaming_data_types import DESERIALISERS

    schema = schema_of(payload)
    decoders = {SCHEMA_RUN_START: decode_run_start, SCHEMA_FINISHED_WRITING: decode_finished_writing,
                SCHEMA_ANSWER: decode_answer, SCHEMA_HEARTBEAT: decode_heartbeat}
    if schema not in decoders:
        if schema in SCHEMAS_PASSED_OVER or schema in DESERIALISERS:
            return PassedOver(schema)
        raise UndecodableMessage(f"unknown schema id {schema!r}")
    try:
        message = decoders[schema](payload)
    except Exception as e:  # a damaged FlatBuffer fails in many ways
        raise UndecodableMessage(f"damaged {schema} message: {type(e).__name__}: {e}") from None
    if not message.job_id and schema in (SCHEMA_RUN_START, SCHEMA_FINISHED_WRITING):
        raise UndecodableMessage(f"{schema} message without a job id")
    return message


def preview(payload: bytes) -> str:
    head = payload[:PREVIEW_BYTES]
    more = f" ... ({len(payload)} bytes)" if len(payload) > PREVIEW_BYTES else ""
    return head.hex(" ") + more


# =============================================================================
# 2b. Run starts waiting for their wrdn, kept on disk
# =============================================================================
#
# A run lasts seconds to days, and the real file writer sends every message
# unkeyed: a run start and its wrdn may come on different partitions, even on
# different topics (the job pool and the instrument's control topic). So a run
# start is not kept by holding its partition's committed offset back (a week
# of files read again at each restart), but in a JSON-lines file of our own,
# fsynced before its offset is committed: a restart reads it back, and Kafka
# delivers again only what was not handled yet.


@dataclass
class WaitingRunStart:
    run_start: RunStart
    # Seconds since the epoch, from Kafka's timestamp: the age survives a restart.
    sent_at: float


class RunStartStore:
    """The run starts waiting for their wrdn, and the jobs finished lately.

    Bounded in number and in age: a facility runs for months, and a run whose
    wrdn never comes must keep neither memory nor disk. Finished jobs are kept
    (as many as run starts) so that a copy of a run start read after its wrdn
    (the job pool's, or one read again) is known as done and not kept waiting.
    Without open() it lives in memory only (tests, benchmarks).
    """

    def __init__(self, capacity: int, max_age_s: float = math.inf):
        self.capacity = capacity
        self.max_age_s = max_age_s
        self.path = ""
        self._waiting: OrderedDict[str, WaitingRunStart] = OrderedDict()
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._file: Optional[typing.TextIO] = None
        self._lock: Optional[typing.TextIO] = None
        self._lines = 0  # in the file now; rewritten when mostly history

    # -- the file --------------------------------------------------------------

    def open(self, path: str) -> "RunStartStore":
        """Take the file (one instance per file), read it back, and write it anew, compacted."""
        import fcntl

        self.path = path
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            self._lock = open(f"{path}.lock", "a", encoding="utf-8")
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"options.run_start_state_file: {path} is in use by another running instance; "
                              "give each instance a file of its own") from None
        except OSError as e:
            raise ConfigError(f"options.run_start_state_file: {path}: {e.strerror}") from None
        try:
            with open(path, encoding="utf-8") as f:
                for number, line in enumerate(f, 1):
                    self._replay(line, number)
        except FileNotFoundError:
            pass
        self.forget_expired(look_at_all=True)
        try:
            self._rewrite()
        except OSError as e:
            raise ConfigError(f"options.run_start_state_file: cannot write {path}: {e.strerror}") from None
        logger.info("run starts waiting for their wrdn, read back from %s: %d", path, len(self._waiting))
        return self

    def _replay(self, line: str, number: int) -> None:
        try:
            record = json.loads(line)
            if "finished" in record:
                self._mark_finished(record["finished"])
            else:
                self._keep(WaitingRunStart(RunStart(**record["start"]), float(record["sent_at"])))
        except (ValueError, TypeError, KeyError) as e:  # a line torn by a crash
            logger.warning("%s line %d: cannot read it (%s); passed over", self.path, number, e)

    def _append(self, record: dict[str, Any]) -> None:
        if self._file is None:
            return
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._lines += 1
        if self._lines > 2 * (len(self._waiting) + len(self._finished)) + 100:
            self._rewrite()

    def _rewrite(self) -> None:
        """Write what is kept to a new file, then rename it over the old one: a crash leaves one or the other."""
        if self._file is not None:
            self._file.close()
        new = f"{self.path}.new"
        with open(new, "w", encoding="utf-8") as f:
            for job_id in self._finished:
                f.write(json.dumps({"finished": job_id}) + "\n")
            for waiting in self._waiting.values():
                f.write(json.dumps(self._start_record(waiting)) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(new, self.path)
        folder = os.open(os.path.dirname(self.path) or ".", os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
        self._lines = len(self._finished) + len(self._waiting)
        self._file = open(self.path, "a", encoding="utf-8")

    def close(self) -> None:
        for f in (self._file, self._lock):
            if f is not None:
                f.close()
        self._file = self._lock = None

    # -- what the loop asks ----------------------------------------------------

    def remember(self, run_start: RunStart, sent_at: float = 0.0) -> bool:
        """Keep a run start until its wrdn; False for a copy of one known already (waiting or finished)."""
        job_id = run_start.job_id
        if job_id in self._waiting or job_id in self._finished:
            return False
        waiting = WaitingRunStart(run_start, sent_at or time.time())
        self._keep(waiting)
        self._append(self._start_record(waiting))
        return True

    @staticmethod
    def _start_record(waiting: WaitingRunStart) -> dict[str, Any]:
        """A waiting run start as a line of the file (read back by _replay)."""
        return {"start": dataclasses.asdict(waiting.run_start), "sent_at": waiting.sent_at}

    def _keep(self, waiting: WaitingRunStart) -> None:
        self._waiting[waiting.run_start.job_id] = waiting
        while len(self._waiting) > self.capacity:
            self._forget(next(iter(self._waiting)), f"and {self.capacity} newer run starts wait")

    def finish(self, job_id: str) -> None:
        """The job's wrdn is handled: its run start goes, and copies of it read later are passed over."""
        if job_id not in self._finished:
            self._mark_finished(job_id)
            self._append({"finished": job_id})

    def _mark_finished(self, job_id: str) -> None:
        self._waiting.pop(job_id, None)
        self._finished[job_id] = None
        while len(self._finished) > self.capacity:
            self._finished.popitem(last=False)

    def forget_expired(self, look_at_all: bool = False) -> None:
        """Forget the run starts older than max_age_s. At each poll only the oldest remembered are
        looked at, which is cheap; Kafka's timestamps come nearly in that order."""
        cutoff = time.time() - self.max_age_s
        if look_at_all:
            for job_id in [job_id for job_id, waiting in self._waiting.items() if waiting.sent_at < cutoff]:
                self._forget(job_id, f"within {self.max_age_s:.0f} s")
        while self._waiting and (oldest := next(iter(self._waiting.values()))).sent_at < cutoff:
            self._forget(oldest.run_start.job_id, f"within {self.max_age_s:.0f} s")

    def _forget(self, job_id: str, why: str) -> None:
        # No line written: reading the file back applies the same bounds.
        dropped = self._waiting.pop(job_id)
        logger.warning("forgetting run start of job %s (%s): its wrdn has not come %s", job_id,
                       dropped.run_start.filename, why)

    def get(self, job_id: str) -> Optional[RunStart]:
        waiting = self._waiting.get(job_id)
        return waiting.run_start if waiting else None

    def waiting(self) -> list[RunStart]:
        return [waiting.run_start for waiting in self._waiting.values()]

    def __len__(self) -> int:
        return len(self._waiting)


# =============================================================================
# 2c. A watchdog for the writer's jobs
# =============================================================================
#
# From the messages read anyway: a start the writer answered with a failure,
# and a job whose heartbeats stopped without a wrdn, are each reported once,
# so operators learn of a lost file before a scientist asks for it.

JOB_EVENTS = ("started", "finished", "failed_to_start", "silent")


@dataclass
class WatchedJob:
    file_name: str
    last_heard: float  # time.monotonic() of its last message


class JobWatchdog:
    """The writer's jobs between their start and their wrdn; reports through `report(event, job_id, file, why)`."""

    def __init__(self, silence_s: float, capacity: int, report: typing.Callable[[str, str, str, str], None]):
        self.silence_s = silence_s  # 0: silence is not watched
        self.capacity = capacity
        self.report = report
        self.counts: Counter = Counter()  # by JOB_EVENTS
        self._jobs: OrderedDict[str, WatchedJob] = OrderedDict()
        # Jobs finished, failed or reported silent: not watched again, nor counted twice.
        self._done: OrderedDict[str, str] = OrderedDict()  # job id -> how it ended

    def watch(self, job_id: str, file_name: str) -> None:
        """A job known from before a restart: watched from now."""
        if job_id not in self._done:
            self._jobs.setdefault(job_id, WatchedJob(file_name, time.monotonic()))

    def started(self, run_start: RunStart) -> None:
        if run_start.job_id in self._jobs or run_start.job_id in self._done:
            self.heard(run_start.job_id)  # the pool's copy and the control topic's are one start
            return
        self.counts["started"] += 1
        self._jobs[run_start.job_id] = WatchedJob(run_start.filename, time.monotonic())
        while len(self._jobs) > self.capacity:
            self._jobs.popitem(last=False)

    def heard(self, job_id: str, file_name: str = "") -> None:
        job = self._jobs.get(job_id)
        if job is not None:
            job.last_heard = time.monotonic()
            job.file_name = job.file_name or file_name

    def answered(self, answer: JobAnswer) -> None:
        if not answer.job_id:
            return
        if not answer.start_failed:
            self.heard(answer.job_id)
        elif answer.job_id not in self._done:
            job = self._jobs.get(answer.job_id)
            self._end(answer.job_id, "failed_to_start")
            self.report("failed_to_start", answer.job_id, job.file_name if job else "",
                        f"the file writer did not start the job: {answer.message or 'no message'}")

    def finished(self, job_id: str) -> None:
        if job_id not in self._done or self._done.get(job_id) == "silent":
            self._end(job_id, "finished")

    def _end(self, job_id: str, event: str) -> None:
        if self._jobs.pop(job_id, None) is None and job_id not in self._done:
            # Its start came on another topic or partition, not read yet (or by another instance):
            # a copy read later is not counted again, so count it now.
            self.counts["started"] += 1
        self.counts[event] += 1
        self._done[job_id] = event
        while len(self._done) > self.capacity:
            self._done.popitem(last=False)

    def check(self) -> None:
        """Report the jobs silent for longer than silence_s."""
        if not self.silence_s:
            return
        cutoff = time.monotonic() - self.silence_s
        for job_id in [job_id for job_id, job in self._jobs.items() if job.last_heard < cutoff]:
            file_name = self._jobs[job_id].file_name
            self._end(job_id, "silent")
            self.report("silent", job_id, file_name,
                        f"no heartbeat of the job and no wrdn for {self.silence_s:.0f} s: its file may be lost")


# =============================================================================
# 3. Reading the finished file
# =============================================================================


class FileRefused(Exception):
    """The file cannot be ingested; the text says why."""


class FileNotReady(FileRefused):
    """The file is missing or unreadable for now: on a network mount it may
    show up, or be unlocked, a little after the writer's wrdn."""


@dataclass
class NexusValue:
    value: Any
    unit: str = ""


@dataclass
class NexusUser:
    name: str = ""
    email: str = ""
    affiliation: str = ""
    facility_user_id: str = ""


@dataclass
class NexusMetadata:
    """What the ingestor reads from a NeXus file: /entry's scalar values."""

    values: dict[str, NexusValue] = field(default_factory=dict)  # by name, e.g. "title", "instrument_name"
    users: list[NexusUser] = field(default_factory=list)
    # What dataset.scientific_metadata asks for, by key; values plain JSON (see read_scientific_metadata).
    science: dict[str, NexusValue] = field(default_factory=dict)
    # The scalars at the paths the field templates name ({nexus:/entry/...}), by path.
    at_paths: dict[str, Any] = field(default_factory=dict)

    def text(self, name: str) -> str:
        value = self.values.get(name)
        return "" if value is None or value.value is None else str(value.value)


@dataclass
class DataFile:
    """A file on this host: its path and what stat and the checksum say."""

    path: str
    size: int
    mtime: float
    uid: str
    gid: str
    perm: str
    checksum: str = ""
    checksum_algorithm: str = ""


# /entry/<path> -> the name the value goes by in the dataset.
NEXUS_ENTRY_VALUES = {
    "title": "title",
    "experiment_identifier": "experiment_identifier",
    "experiment_description": "experiment_description",
    "entry_identifier": "entry_identifier",
    "entry_identifier_uuid": "entry_identifier_uuid",
    "start_time": "start_time",
    "end_time": "end_time",
    "definition": "definition",
    "instrument/name": "instrument_name",
    "sample/name": "sample_name",
}
NEXUS_USER_FIELDS = ("name", "email", "affiliation", "facility_user_id")
CHECKSUM_CHUNK_BYTES = 4 * 1024 * 1024


def map_path(writer_path: str, path_map: dict[str, str]) -> str:
    """The writer's path as this host sees it: the longest matching prefix rewritten."""
    for prefix in sorted(path_map, key=len, reverse=True):
        if writer_path == prefix or writer_path.startswith(prefix.rstrip("/") + "/"):
            return path_map[prefix].rstrip("/") + writer_path[len(prefix.rstrip("/")):]
    return writer_path


def check_allowed(path: str, allowed_roots: list[str]) -> str:
    """The real absolute path of ``path``, if it lies under an allowed root."""
    if "\0" in path:
        raise FileRefused(f"{path!r}: a file name with a NUL byte (damaged message?)")
    if not os.path.isabs(path):
        raise FileRefused(
            f"{path}: relative path; add a files.path_map entry for the file writer's output prefix"
        )
    real = os.path.realpath(path)
    for root in allowed_roots:
        real_root = os.path.realpath(root)
        if os.path.commonpath([real, real_root]) == real_root:
            return real
    raise FileRefused(f"{path}: outside the allowed roots ({', '.join(allowed_roots)})")


def _plain(value: Any) -> Any:
    """A numpy or bytes value read from HDF5 as a plain JSON value."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if hasattr(value, "tolist"):  # numpy scalars and 0-d/1-element arrays
        value = value.tolist()
        if isinstance(value, list):
            value = value[0] if len(value) == 1 else value
        return _plain(value)
    return value


def _read_scalar(node: Any) -> Optional[NexusValue]:
    """A dataset's value if it is a scalar (or one element); never reads an array."""
    import h5py

    if not isinstance(node, h5py.Dataset) or node.size != 1:
        return None
    units = node.attrs.get("units", "")
    return NexusValue(value=_plain(node[()]), unit=str(_plain(units)) if units is not None else "")


def _nx_class(node: Any) -> str:
    return str(_plain(node.attrs.get("NX_class", "")))


@contextlib.contextmanager
def open_nexus(path: str) -> typing.Iterator[Any]:
    """The file open for reading with h5py; its errors told as FileNotReady."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            yield f
    except FileNotFoundError:
        raise FileNotReady(f"{path}: no such file") from None
    except OSError as e:
        # h5py reports "not an HDF5 file", permissions and lock errors as OSError;
        # on NFS even a truncated view of a closed file is possible for a while.
        raise FileNotReady(f"{path}: cannot be read as HDF5: {e}") from None


def _opened(path: str, opened: Any) -> typing.ContextManager[Any]:
    """The file already opened by the caller, or the file at ``path`` opened now."""
    return contextlib.nullcontext(opened) if opened is not None else open_nexus(path)


def read_nexus_metadata(path: str, opened: Any = None) -> NexusMetadata:
    """Read /entry's metadata values and users from a NeXus file (``opened``: the
    same file already open, so one reading opens it once).

    Only scalar datasets at known places are read: the data arrays of a real
    file are gigabytes and are never touched.
    """
    import h5py

    with _opened(path, opened) as f:
        entry = f.get("entry")
        if entry is None:
            entry = next((g for g in f.values() if _nx_class(g) == "NXentry"), None)
        if not isinstance(entry, h5py.Group):
            raise FileRefused(f"{path}: no NXentry group in the file")
        metadata = NexusMetadata()
        for nexus_path, name in NEXUS_ENTRY_VALUES.items():
            value = _read_scalar(entry.get(nexus_path))
            if value is not None:
                metadata.values[name] = value
        for group in entry.values():
            if isinstance(group, h5py.Group) and _nx_class(group) == "NXuser":
                found = {n: _read_scalar(group.get(n)) for n in NEXUS_USER_FIELDS}
                metadata.users.append(NexusUser(**{n: str(v.value) for n, v in found.items() if v}))
        return metadata


# min and max of an array are read only up to this many elements: data arrays
# (events, images) are gigabytes, and their first and last element say enough.
ARRAY_STATISTICS_MAX_ELEMENTS = 1_000_000
GLOB_CHARACTERS = frozenset("*?[")


def _json_value(value: Any, max_text_length: int) -> Any:
    """One element read from HDF5 as a JSON value SciCat stores: text cut, NaN and infinities as null."""
    value = _plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str) and len(value) > max_text_length:
        return value[:max_text_length - 1] + "\u2026"
    if isinstance(value, list):
        return [_json_value(v, max_text_length) for v in value]
    if value is not None and not isinstance(value, (str, int, float, bool)):
        return _json_value(str(value), max_text_length)  # compound and reference types
    return value


def _array_summary(node: Any, max_text_length: int) -> dict[str, Any]:
    """shape, dtype, first, last, min, max of an array dataset, reading only what is needed."""
    import h5py
    import numpy as np

    numeric = node.dtype.kind in "biuf"
    summary: dict[str, Any] = {
        "shape": list(node.shape),
        "dtype": "string" if h5py.check_string_dtype(node.dtype) else str(node.dtype),
    }
    if node.size == 0:
        return summary
    summary["first"] = _json_value(node[(0,) * node.ndim], max_text_length)
    summary["last"] = _json_value(node[tuple(n - 1 for n in node.shape)], max_text_length)
    if numeric and node.size <= ARRAY_STATISTICS_MAX_ELEMENTS:
        values = node[()]
        values = values[np.isfinite(values)] if node.dtype.kind == "f" else values
        if values.size:
            summary["min"] = _json_value(values.min(), max_text_length)
            summary["max"] = _json_value(values.max(), max_text_length)
    return summary


def _children(group: Any, names: list[str]) -> typing.Iterator[tuple[str, Any]]:
    for name in names:
        try:
            yield name, group.get(name)
        except (KeyError, OSError):  # a broken or external link
            continue


def _matching_datasets(group: Any, segments: list[str], here: str) -> typing.Iterator[tuple[str, Any]]:
    """(path, dataset) of every dataset below ``group`` that the path pattern's segments match."""
    import h5py

    pattern, rest = segments[0], segments[1:]
    if pattern == "**":  # no group at all, or one more group and "**" again
        for name, node in _children(group, sorted(group.keys())):
            if isinstance(node, h5py.Group):
                yield from _matching_datasets(node, segments, f"{here}/{name}")
            elif not rest and isinstance(node, h5py.Dataset):  # a last "**": every dataset below
                yield f"{here}/{name}", node
        if rest:
            yield from _matching_datasets(group, rest, here)
        return
    if GLOB_CHARACTERS & set(pattern):
        names = sorted(name for name in group.keys() if fnmatch.fnmatchcase(name, pattern))
    else:
        names = [pattern] if pattern in group else []
    for name, node in _children(group, names):
        if not rest and isinstance(node, h5py.Dataset):
            yield f"{here}/{name}", node
        elif rest and isinstance(node, h5py.Group):
            yield from _matching_datasets(node, rest, f"{here}/{name}")


def default_key(path: str) -> str:
    """/entry/sample/name -> sample_name: the path below its first group."""
    parts = path.strip("/").split("/")
    return "_".join(parts[1:] or parts)


def read_scientific_metadata(path: str, rules: list[NexusValueRule], max_text_length: int,
                             opened: Any = None) -> dict[str, NexusValue]:
    """The values the rules name, by key: scalars as JSON values, arrays as summaries, units from ``units``."""
    found: dict[str, NexusValue] = {}
    with _opened(path, opened) as f:
        for rule in rules:
            # A dict: "**" can reach one dataset in more than one way.
            matches = dict(_matching_datasets(f, [s for s in rule.path.split("/") if s], ""))
            for node_path, node in matches.items():
                if rule.key and len(matches) > 1:
                    key = f"{rule.key}_{default_key(node_path)}"
                else:
                    key = rule.key or default_key(node_path)
                try:
                    found[key] = _read_value(node, max_text_length)
                except OSError as e:  # e.g. compressed with a filter this host lacks: one value lost, not the file
                    logger.warning("%s: cannot read %s (%s); left out of scientificMetadata", path, node_path, e)
    return found


def read_values_at(path: str, nexus_paths: list[str], max_text_length: int, opened: Any = None) -> dict[str, Any]:
    """The scalar or string at each of these exact paths, read as scientific metadata is;
    a path with no dataset, or an array, gives nothing."""
    import h5py

    found: dict[str, Any] = {}
    with _opened(path, opened) as f:
        for nexus_path in nexus_paths:
            try:
                node = f.get(nexus_path)
                value = _read_value(node, max_text_length).value if isinstance(node, h5py.Dataset) else None
            except (KeyError, OSError) as e:  # a broken link, a filter this host lacks
                logger.warning("%s: cannot read %s (%s); its field templates fall back", path, nexus_path, e)
                continue
            if value is not None and not isinstance(value, (dict, list)):
                found[nexus_path] = value
    return found


def _read_value(node: Any, max_text_length: int) -> NexusValue:
    if node.shape is None:  # an HDF5 null dataspace: no value at all
        value = None
    elif node.size == 1:
        value = _json_value(node[()], max_text_length)
    else:
        value = _array_summary(node, max_text_length)
    units = node.attrs.get("units")
    return NexusValue(value, "" if units is None else str(_plain(units)))


def compute_checksum(path: str, algorithm: str) -> str:
    """The file's hex digest, read in chunks: files can be hundreds of GB."""
    digest = hashlib.new(algorithm)
    buffer = bytearray(CHECKSUM_CHUNK_BYTES)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buffer)
            if not n:
                break
            digest.update(view[:n])
    return digest.hexdigest()


def _name_of(lookup: Any, ident: int) -> str:
    try:
        return lookup(ident)[0]
    except KeyError:
        return str(ident)


def describe_file(path: str, checksum_algorithm: str) -> DataFile:
    try:
        st = os.stat(path)
        checksum = compute_checksum(path, checksum_algorithm) if checksum_algorithm != "none" else ""
    except FileNotFoundError:
        raise FileNotReady(f"{path}: no such file") from None
    except OSError as e:
        raise FileNotReady(f"{path}: cannot be read: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise FileRefused(f"{path}: not a regular file")
    return DataFile(
        path=path,
        size=st.st_size,
        mtime=st.st_mtime,
        uid=_name_of(pwd.getpwuid, st.st_uid),
        gid=_name_of(grp.getgrgid, st.st_gid),
        perm=stat.filemode(st.st_mode),
        checksum=checksum,
        checksum_algorithm=checksum_algorithm if checksum else "",
    )


# =============================================================================
# 3b. The file reader: out of the loop's way
# =============================================================================
#
# A file on a hung network mount (or a FIFO named like a NeXus file) blocks open(2)
# for good, and h5py holds the interpreter while it does: read in the loop, that would
# freeze the loop and /health alike. So a file is first stat-ed in a thread (stat lets
# go of the interpreter), opened only if it is a regular file, and read in a child
# process the loop waits for with a deadline, polling Kafka meanwhile. A child that
# misses it is killed and left behind (a process stuck in the kernel dies only once
# its system call returns); the next file gets a new one.

# Most files are read within this: until then the loop waits without polling Kafka.
READ_FIRST_WAIT_S = 1.0
READ_WAIT_SLICE_S = 0.25


class FileStalled(FileRefused):
    """Reading the file did not finish within files.read_timeout_s."""


@dataclass
class FileReading:
    """What reading one finished file gave."""

    nexus: NexusMetadata
    data_file: DataFile
    selected: SelectedSettings  # its instrument's dataset settings
    metadata_s: float
    checksum_s: float
    # Made after the rest is sent (section 3c), under thumbnail.timeout_s; the loop waited this long for it.
    picture: "ThumbnailOutcome" = field(default_factory=lambda: ThumbnailOutcome())
    thumbnail_s: float = 0.0


def read_finished_file(config: Config, path: str, finished: FinishedWriting,
                       run_start: Optional[RunStart]) -> FileReading:
    """The file's metadata (opened once: on a network mount each open costs round trips),
    its instrument's settings, its description and checksum."""
    started = time.monotonic()
    with open_nexus(path) as f:
        nexus = read_nexus_metadata(path, f)
        # Which values to extract is the instrument's choice, and the file may be what names it.
        # A name only the configuration gives does not beat a path pattern.
        named = instrument_name(run_start, finished, nexus, config.dataset)
        selected = dataset_settings(config, "" if named.source == "default" else named.value, path,
                                    config.dataset.instrument_name)
        settings = selected.settings
        nexus.science = read_scientific_metadata(path, settings.scientific_metadata, settings.max_text_length, f)
        nexus.at_paths = read_values_at(path, template_nexus_paths(settings.fields), settings.max_text_length, f)
    metadata_s = time.monotonic() - started
    started = time.monotonic()
    data_file = describe_file(path, config.files.checksum)
    return FileReading(nexus, data_file, selected, metadata_s, time.monotonic() - started)


def file_reader_main(connection: Any, config: Config) -> None:
    """The child process: reads the files it is sent until the loop closes the pipe."""
    # The loop decides when to stop; a signal to the whole process group must not cut a read short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] file reader: %(message)s"))
    handler.addFilter(LogSafety())
    logger.addHandler(handler)
    logger.propagate = False
    while True:
        try:
            path, finished, run_start = connection.recv()
        except EOFError:
            return
        try:
            answer: tuple[bool, Any] = (True, read_finished_file(config, path, finished, run_start))
        except FileRefused as e:
            answer = (False, e)
        except Exception as e:  # told to the loop as an unexpected error, whatever it is
            answer = (False, RuntimeError(f"{type(e).__name__}: {e}"))
        connection.send(answer)
        if answer[0] and config.thumbnail.enabled:  # a second answer: the loop waits for it apart
            connection.send(picture_of_file(path, config.thumbnail))


@dataclass
class StalledRead:
    path: str
    since: str  # UTC
    process: Any


class FileReader:
    """Reads finished files in a child process, with files.read_timeout_s as the deadline."""

    def __init__(self, config: Config, wait: typing.Callable[[float], None]):
        self.config = config
        self.wait = wait  # the loop's: polls Kafka meanwhile, ends on a stop or a rebalance
        self.process: Any = None
        self.connection: Any = None
        # Read by /health: the file being read and since when; readers abandoned still stuck.
        self.reading: Optional[tuple[str, float]] = None
        self.stalled: list[StalledRead] = []
        self.closed_at_exit = False

    def read(self, path: str, finished: FinishedWriting, run_start: Optional[RunStart]) -> FileReading:
        timeout_s = self.config.files.read_timeout_s
        deadline = time.monotonic() + timeout_s
        self.reading = (path, time.monotonic())
        try:
            self.check_regular(path, deadline)
            self.start()
            self.connection.send((path, finished, run_start))
            try:
                if not self.answered_within(deadline):
                    raise FileStalled(f"{path}: reading it did not finish within files.read_timeout_s "
                                      f"({timeout_s:g} s): a hung mount?")
                ok, value = self.connection.recv()
            except BaseException:  # a stall, a stop, a rebalance: its answer would come to the next file
                self.abandon(path)
                raise
        except (EOFError, OSError) as e:  # the child died (killed, out of memory)
            self.abandon(path)
            raise FileNotReady(f"{path}: the file reader process ended while reading it ({e or type(e).__name__})") \
                from None
        finally:
            self.reading = None
        if not ok:
            raise value
        if self.config.thumbnail.enabled:
            started = time.monotonic()
            value.picture = self.picture(path)
            value.thumbnail_s = time.monotonic() - started
        return value

    def answered_within(self, deadline: float) -> bool:
        """Whether the child answered by the deadline; the loop's wait polls Kafka meanwhile."""
        answered = self.connection.poll(min(READ_FIRST_WAIT_S, max(deadline - time.monotonic(), 0)))
        while not answered and time.monotonic() < deadline:
            self.wait(min(READ_WAIT_SLICE_S, max(deadline - time.monotonic(), 0)))
            answered = self.connection.poll(0)
        return answered

    def picture(self, path: str) -> "ThumbnailOutcome":
        """The child's second answer, the file's picture: one that does not come in time costs
        the picture (and the child), never the file."""
        timeout_s = self.config.thumbnail.timeout_s
        self.reading = (path, time.monotonic())
        try:
            if self.answered_within(time.monotonic() + timeout_s):
                return self.connection.recv()
            problem = f"drawing it did not finish within thumbnail.timeout_s ({timeout_s:g} s)"
        except (EOFError, OSError) as e:
            problem = f"the file reader process ended while drawing it ({e or type(e).__name__})"
        except BaseException:  # a stop, a rebalance: its answer would come to the next file
            self.abandon(path)
            raise
        finally:
            self.reading = None
        self.abandon(path)
        return ThumbnailOutcome(problem=problem)

    def check_regular(self, path: str, deadline: float) -> None:
        """stat in a thread, so that a hung mount hangs the thread, not the loop; never opens the file."""
        found: dict[str, Any] = {}

        def look() -> None:
            try:
                found["stat"] = os.stat(path)
            except OSError as e:
                found["error"] = e

        looking = threading.Thread(target=look, name="stat", daemon=True)
        looking.start()
        looking.join(min(READ_FIRST_WAIT_S, max(deadline - time.monotonic(), 0)))
        while looking.is_alive() and time.monotonic() < deadline:
            self.wait(min(READ_WAIT_SLICE_S, max(deadline - time.monotonic(), 0)))
        if looking.is_alive():
            self.stalled.append(StalledRead(path, utc_now(), looking))
            raise FileStalled(f"{path}: stat did not answer within files.read_timeout_s "
                              f"({self.config.files.read_timeout_s:g} s): a hung mount?")
        error = found.get("error")
        if isinstance(error, FileNotFoundError):
            raise FileNotReady(f"{path}: no such file")
        if error is not None:
            raise FileNotReady(f"{path}: cannot be read: {error.strerror}")
        if not stat.S_ISREG(found["stat"].st_mode):
            raise FileRefused(f"{path}: not a regular file ({stat.filemode(found['stat'].st_mode)}); never opened")

    def start(self) -> None:
        import multiprocessing

        if self.process is not None:
            return
        # spawn: a fresh interpreter, nothing of librdkafka's threads in it.
        context = multiprocessing.get_context("spawn")
        self.connection, theirs = context.Pipe()
        self.process = context.Process(target=file_reader_main, args=(theirs, self.config), name="file reader",
                                       daemon=True)
        self.process.start()
        theirs.close()
        if not self.closed_at_exit:
            # An Ingestor used in process and never closed: multiprocessing joins its children at exit,
            # and this one ends only once the pipe is closed.
            atexit.register(self.close)
            self.closed_at_exit = True

    def abandon(self, path: str) -> None:
        """Kill the child, and leave it: one stuck in the kernel dies when its system call returns."""
        import multiprocessing

        if self.process is None:
            return
        self.process.kill()
        # multiprocessing joins its children at exit: a stuck one would hold the stop up for good.
        getattr(multiprocessing.process, "_children", set()).discard(self.process)
        self.connection.close()
        self.stalled.append(StalledRead(path, utc_now(), self.process))
        logger.warning("file reader process %d abandoned while reading %s", self.process.pid, path)
        self.process = self.connection = None

    def forget_ended(self) -> None:
        """Drop the abandoned readers that have ended; called by the loop between polls."""
        self.stalled = [s for s in self.stalled if s.process.is_alive()]

    def close(self) -> None:
        if self.process is not None:
            self.connection.close()  # the child reads EOF and ends
            self.process.join(5)
            if self.process.is_alive():  # still reading: it ignores SIGTERM, so multiprocessing's exit would wait
                self.process.kill()
            self.process = self.connection = None

    def health(self) -> "PartHealth":
        reading, stalled = self.reading, list(self.stalled)
        timeout_s = self.config.files.read_timeout_s
        if stalled:
            names = ", ".join(f"{s.path} (since {s.since})" for s in stalled)
            return PartHealth(False, f"stalled: {names}; its reader has not ended, even killed (a hung mount?)")
        if reading is not None:
            seconds = time.monotonic() - reading[1]
            return PartHealth(seconds <= timeout_s, f"reading {reading[0]} for {seconds:.1f} s "
                                                    f"(files.read_timeout_s {timeout_s:g} s)")
        return PartHealth(True, "no file being read")


# =============================================================================
# 3c. A picture of the file: the thumbnail of its default plot
# =============================================================================
#
# SciCat shows an attachment's thumbnail in its dataset list and on the dataset's page.
# The picture is the file's default plot, found as the NeXus conventions say: the
# "default" attributes from the root down to an NXdata group, else the first NXdata
# group (by name, depth first) with a "signal"; that signal against its "axes".
# A detector image is gigabytes, so it is never read whole: the plotted dimensions are
# read strided, their strides grown until what HDF5 must read for the selection (whole
# chunks, for a chunked dataset) fits thumbnail.max_read_mb; dimensions beyond the
# plotted ones give their middle slice. Drawn with Pillow (why: README, "A picture of each dataset").
# The child process of 3b does this after the file's reading is sent, under a deadline
# of its own: a picture that fails or hangs costs the picture, never the file.

THUMBNAIL_CAPTION_PREFIX = "Default plot: "
NEXUS_SEARCH_MAX_DEPTH = 8  # "default" chains and the search for an NXdata go no deeper
LINE_POINTS_PER_PIXEL = 4  # a 1-D signal: points read per pixel of the plot's width
# viridis at 9 stops: perceptually even, readable in grey, kind to colour-blind eyes.
VIRIDIS_STOPS = ((68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141),
                 (39, 173, 129), (92, 200, 99), (170, 220, 50), (253, 231, 37))
# Palette indices: the colour scale, then the few colours the frame needs.
SCALE_COLOURS = 250
NAN_INDEX, WHITE_INDEX, BLACK_INDEX, GREY_INDEX, LINE_INDEX = 250, 251, 252, 253, 254
FRAME_COLOURS = ((160, 160, 160), (255, 255, 255), (0, 0, 0), (110, 110, 110), (31, 119, 180))


class ThumbnailTooCostly(Exception):
    """Even one element per plotted dimension needs more than thumbnail.max_read_mb (huge chunks)."""


@dataclass
class PlotSource:
    """What the default plot shows: a signal of an NXdata group and the axis of each of its dimensions."""

    signal: Any  # h5py.Dataset
    axes: list[Any]  # per dimension of the signal: its axis dataset, or None


@dataclass
class Thumbnail:
    png: bytes
    caption: str
    width: int
    height: int
    read_bytes: int = 0  # what HDF5 read of the signal for it (PlotSelection.bytes_touched)

    def data_uri(self) -> str:
        import base64

        return "data:image/png;base64," + base64.b64encode(self.png).decode()


@dataclass
class ThumbnailOutcome:
    """A file's picture, or why it has none: no plottable NXdata (problem ""), or a failure."""

    thumbnail: Optional[Thumbnail] = None
    problem: str = ""  # drawing failed: warned of and noted in the audit; the dataset is not touched


@dataclass(frozen=True)
class PlotSelection:
    """What of the signal is read: an index or a strided slice per dimension."""

    key: tuple[Any, ...]
    bytes_touched: int  # what HDF5 reads for it: whole chunks of a chunked dataset
    note: str  # for the caption: the slice, when dimensions were left out


def _attribute_text(node: Any, name: str) -> str:
    value = _plain(node.attrs.get(name, ""))
    if isinstance(value, list):  # an array of names: the first
        value = _plain(value[0]) if value else ""
    return str(value) if value is not None else ""


def _child(group: Any, name: str) -> Any:
    try:
        return group.get(name)
    except (KeyError, OSError, ValueError):  # a broken or external link, a name h5py refuses
        return None


def _signal_of(group: Any) -> Any:
    """The NXdata group's signal if it is a numeric array worth drawing, else None."""
    import h5py

    name = _attribute_text(group, "signal")
    signal = _child(group, name) if name else None
    if (not isinstance(signal, h5py.Dataset) or signal.dtype.kind not in "biuf" or not signal.shape
            or 0 in signal.shape):
        return None
    return signal


def _default_chain_end(f: Any) -> Any:
    """The NXdata group the "default" attributes lead to from the root, if they do."""
    import h5py

    node = f
    for _ in range(NEXUS_SEARCH_MAX_DEPTH):
        if _nx_class(node) == "NXdata":
            return node
        name = _attribute_text(node, "default")
        node = _child(node, name) if name else None
        if not isinstance(node, h5py.Group):
            return None
    return None


def _first_nxdata_with_signal(group: Any, depth: int = 0) -> Any:
    import h5py

    if depth > NEXUS_SEARCH_MAX_DEPTH:
        return None
    for name in sorted(group.keys()):
        child = _child(group, name)
        if not isinstance(child, h5py.Group):
            continue
        if _nx_class(child) == "NXdata" and _signal_of(child) is not None:
            return child
        found = _first_nxdata_with_signal(child, depth + 1)
        if found is not None:
            return found
    return None


def find_default_plot(f: Any) -> Optional[PlotSource]:
    """The file's default plot as the NeXus conventions find it; None if it has nothing to plot."""
    import h5py

    group = _default_chain_end(f)
    if group is None or _signal_of(group) is None:
        group = _first_nxdata_with_signal(f)
    if group is None:
        return None
    signal = _signal_of(group)
    names = group.attrs.get("axes", [])
    names = [_plain(names)] if isinstance(_plain(names), str) else [str(_plain(n)) for n in names]
    axes = []
    for dimension, length in enumerate(signal.shape):
        name = names[dimension] if dimension < len(names) else "."
        axis = _child(group, name) if name not in ("", ".") else None
        # An axis gives a value per point, or per bin edge (one more).
        fits = (isinstance(axis, h5py.Dataset) and axis.ndim == 1 and axis.dtype.kind in "biuf"
                and axis.shape[0] in (length, length + 1))
        axes.append(axis if fits else None)
    return PlotSource(signal, axes)


def plot_selection(shape: tuple[int, ...], chunks: Optional[tuple[int, ...]], itemsize: int,
                   points: tuple[int, ...], max_bytes: int) -> PlotSelection:
    """The strided selection of the plotted (last one or two) dimensions, at most ``points``
    each, whose strides double until what HDF5 reads for it fits ``max_bytes``: for a chunked
    dataset every chunk the selection touches is read whole."""
    plotted = 1 if len(shape) == 1 else 2
    middles = [n // 2 for n in shape[:-plotted]]
    sizes = shape[-plotted:]
    strides = [max(1, -(-n // p)) for n, p in zip(sizes, points)]

    def touched() -> int:
        if chunks is None:
            return math.prod(-(-n // s) for n, s in zip(sizes, strides)) * itemsize
        # Along a dimension strided past its chunk extent each point is in a chunk of its own.
        counts = [-(-n // s) if s >= c else -(-n // c) for n, s, c in zip(sizes, strides, chunks[-plotted:])]
        return math.prod(counts) * math.prod(chunks) * itemsize

    while touched() > max_bytes:
        if all(s >= n for s, n in zip(strides, sizes)):
            raise ThumbnailTooCostly(f"one chunk of {math.prod(chunks or (1,)) * itemsize / 2**20:.3g} MB is "
                                     f"more than thumbnail.max_read_mb ({max_bytes / 2**20:g} MB)")
        # The dimension with the most points left gives way.
        widest = max(range(plotted), key=lambda i: -(-sizes[i] // strides[i]))
        strides[widest] *= 2
    key = tuple(middles) + tuple(slice(0, n, s) for n, s in zip(sizes, strides))
    note = f"[{', '.join([str(m) for m in middles] + [':'] * plotted)}]" if middles else ""
    return PlotSelection(key, touched(), note)


def _axis_label(axis: Any, fallback: str) -> str:
    if axis is None:
        return fallback
    units = _attribute_text(axis, "units")
    name = axis.name.rsplit("/", 1)[-1]
    return f"{name} ({units})" if units else name


def _axis_range(axis: Any, length: int) -> tuple[float, float]:
    """The axis's first and last value (its two ends only are read), else the index range."""
    if axis is None:
        return 0.0, float(length - 1)
    return float(axis[0]), float(axis[axis.shape[0] - 1])


def _number(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else "-"


class ThumbnailPainter:
    """Draws a plot into a small palette PNG: a line for 1-D, an image with a colour scale for 2-D."""

    def __init__(self, width: int, height: int, colour_scale: bool):
        from PIL import Image, ImageDraw, ImageFont

        self.width, self.height = width, height
        self.image = Image.new("P", (width, height), WHITE_INDEX)
        self.image.putpalette([c for colour in self.palette() for c in colour])
        self.draw = ImageDraw.Draw(self.image)
        self.font = ImageFont.load_default()
        # The plot area: room for a title above, tick values and a label below and to the left,
        # and for an image's colour scale and its values to the right.
        self.left, self.top, self.bottom = 46, 20, height - 34
        self.right = width - (70 if colour_scale else 12)

    @staticmethod
    @functools.lru_cache(maxsize=1)  # the same for every picture; made point by point it cost 15 ms each
    def palette() -> tuple[tuple[int, int, int], ...]:
        import numpy as np

        stops = np.array(VIRIDIS_STOPS, dtype=float)
        where = np.linspace(0, len(stops) - 1, SCALE_COLOURS)
        channels = [np.rint(np.interp(where, np.arange(len(stops)), stops[:, c])).astype(int) for c in range(3)]
        return tuple(zip(*(ch.tolist() for ch in channels))) + tuple(FRAME_COLOURS)

    def text(self, xy: tuple[float, float], text: str, anchor: str = "la") -> None:
        self.draw.text(xy, text, fill=BLACK_INDEX, font=self.font, anchor=anchor)

    def frame(self, title: str, x_label: str, y_label: str, x_range: tuple[float, float],
              y_range: tuple[float, float]) -> None:
        from PIL import Image, ImageDraw

        self.text((self.width / 2, 4), title[:70], "ma")
        self.draw.rectangle((self.left, self.top, self.right, self.bottom), outline=GREY_INDEX)
        self.text((self.left, self.bottom + 3), _number(x_range[0]), "la")
        self.text((self.right, self.bottom + 3), _number(x_range[1]), "ra")
        self.text(((self.left + self.right) / 2, self.bottom + 18), x_label[:60], "ma")
        self.text((self.left - 3, self.bottom), _number(y_range[0]), "rd")
        self.text((self.left - 3, self.top), _number(y_range[1]), "ra")
        # Pillow draws no rotated text in place: the y label goes on its own strip, turned.
        strip = Image.new("L", (self.bottom - self.top, 12), 0)
        ImageDraw.Draw(strip).text((strip.width / 2, 0), y_label[:40], fill=255, font=self.font, anchor="ma")
        turned = strip.rotate(90, expand=True)
        self.image.paste(BLACK_INDEX, (2, self.top), turned)

    def line(self, values: Any, x_values: Any) -> None:
        """A 1-D signal as a line; a NaN breaks it."""
        import numpy as np

        finite = np.isfinite(values)
        low, high = (float(values[finite].min()), float(values[finite].max())) if finite.any() else (0.0, 1.0)
        span_y = (high - low) or 1.0
        span_x = (float(x_values[-1] - x_values[0])) or 1.0
        # Inside the frame, not on it: the lowest and highest values stay visible.
        left, right, top, bottom = self.left + 2, self.right - 2, self.top + 3, self.bottom - 3
        xs = left + (x_values - x_values[0]) / span_x * (right - left)
        ys = bottom - (np.where(finite, values, low) - low) / span_y * (bottom - top)
        run: list[tuple[float, float]] = []
        for x, y, ok in zip(xs.tolist(), ys.tolist(), finite.tolist()):
            if ok:
                run.append((x, y))
            if run and (not ok or len(run) > 1000):  # a NaN, or a long run drawn in parts
                self._polyline(run)
                run = run[-1:] if ok else []
        self._polyline(run)

    def _polyline(self, points: list[tuple[float, float]]) -> None:
        if len(points) > 1:
            self.draw.line(points, fill=LINE_INDEX, width=1)
        elif points:
            self.draw.point(points, fill=LINE_INDEX)

    def colour_image(self, values: Any) -> None:
        """A 2-D signal as an image (its first index upwards), NaNs grey, with a colour scale
        from the 0.5th to the 99.5th percentile (a hot pixel must not wash the image out)."""
        import numpy as np
        from PIL import Image

        finite = np.isfinite(values)
        low, high = (np.percentile(values[finite], (0.5, 99.5)).tolist() if finite.any() else (0.0, 1.0))
        span = (high - low) or 1.0
        scaled = np.clip((np.where(finite, values, low) - low) / span, 0, 1) * (SCALE_COLOURS - 1)
        indices = np.where(finite, scaled.round(), NAN_INDEX).astype(np.uint8)[::-1]
        picture = Image.fromarray(indices, "P").resize((self.right - self.left, self.bottom - self.top),
                                                       Image.Resampling.NEAREST)
        self.image.paste(picture, (self.left, self.top))
        bar = np.linspace(SCALE_COLOURS - 1, 0, self.bottom - self.top).astype(np.uint8)[:, None].repeat(12, 1)
        self.image.paste(Image.fromarray(bar, "P"), (self.right + 8, self.top))
        self.text((self.right + 24, self.top), _number(high), "la")
        self.text((self.right + 24, self.bottom), _number(low), "ld")

    def png(self) -> bytes:
        import io

        buffer = io.BytesIO()
        self.image.save(buffer, "PNG")
        return buffer.getvalue()


def draw_thumbnail(source: PlotSource, settings: ThumbnailConfig) -> Thumbnail:
    """The picture of a plot: its signal read within thumbnail.max_read_mb, drawn small."""
    import numpy as np

    signal = source.signal
    painter = ThumbnailPainter(settings.width, settings.height, colour_scale=signal.ndim > 1)
    plot_width, plot_height = painter.right - painter.left, painter.bottom - painter.top
    points = (plot_width * LINE_POINTS_PER_PIXEL,) if signal.ndim == 1 else (plot_height, plot_width)
    selection = plot_selection(signal.shape, signal.chunks, signal.dtype.itemsize, points,
                               int(settings.max_read_mb * 2**20))
    values = np.asarray(signal[selection.key], dtype=np.float64)
    caption = f"{THUMBNAIL_CAPTION_PREFIX}{signal.name}{selection.note}"
    if values.ndim == 1:
        axis = source.axes[-1]
        first, last = _axis_range(axis, signal.shape[-1])
        # The axis read as the signal is: as many points (of a bin-edge axis, each bin's first edge).
        indices = np.arange(signal.shape[-1])[selection.key[-1]].astype(np.float64)
        x_values = indices if axis is None else np.asarray(axis[selection.key[-1]], dtype=np.float64)[:values.size]
        if not np.isfinite(x_values).all():  # an axis with gaps: drawn against the index instead
            x_values = indices
        finite = values[np.isfinite(values)]
        y_range = (float(finite.min()), float(finite.max())) if finite.size else (math.nan, math.nan)
        painter.frame(signal.name, _axis_label(axis, "index"), _axis_label(signal, "value"), (first, last),
                      y_range)
        painter.line(values, x_values)
    else:
        y_axis, x_axis = source.axes[-2], source.axes[-1]
        painter.colour_image(values)
        units = _attribute_text(signal, "units")
        painter.frame(f"{signal.name}{selection.note}" + (f" ({units})" if units else ""),
                      _axis_label(x_axis, "index"), _axis_label(y_axis, "index"),
                      _axis_range(x_axis, signal.shape[-1]), _axis_range(y_axis, signal.shape[-2]))
    return Thumbnail(painter.png(), caption, settings.width, settings.height, selection.bytes_touched)


def picture_of_file(path: str, settings: ThumbnailConfig, opened: Any = None) -> ThumbnailOutcome:
    """The file's thumbnail, or why it has none; never raises: a picture must not cost the file."""
    try:
        with _opened(path, opened) as f:
            source = find_default_plot(f)
            if source is None:
                return ThumbnailOutcome()
            return ThumbnailOutcome(draw_thumbnail(source, settings))
    except Exception as e:  # a damaged array, a filter this host lacks, huge chunks, a bug in drawing
        return ThumbnailOutcome(problem=f"{type(e).__name__}: {e}"[:300])


# =============================================================================
# 4. Building the dataset and its origdatablock (pure functions, no I/O)
# =============================================================================
#
# Where each dataset field comes from: its template in dataset.fields if it has one and
# it can be filled (section 4a), else the first of these that has a value
# ("metadata" is the run start's metadata JSON updated by the wrdn's; "dataset."
# keys are the instrument's own under instruments.<NAME>, else the dataset section's;
# "proposal", "instrument", "sample" are what SciCat answered when asked, section 5):
#
#   datasetName          run name, NeXus title, file name without extension
#   description          NeXus title, run start's title, experiment_description
#   proposalId           metadata proposal_id, NeXus experiment_identifier,
#                        run start's experiment_identifier, dataset.default_proposal_id
#   owner                metadata owner, first NeXus user's name, dataset.owner, ownerGroup
#   principalInvestigator metadata principal_investigator, the proposal's PI,
#                        first NeXus user's name, dataset.principal_investigator, owner
#   contactEmail         metadata contact_email, NeXus users' emails (";"-joined),
#                        the proposal's pi_email or email, dataset.contact_email
#   ownerGroup           metadata owner_group, the proposal's, dataset.ownable.ownerGroup
#   accessGroups         metadata access_groups (a list, or one string of comma-separated
#                        groups), the proposal's, dataset.ownable.accessGroups;
#                        then dataset.ingestor_group added
#   instrument name      metadata instrument_name, run start's instrument_name,
#                        NeXus instrument/name, dataset.instrument_name
#   instrumentId         the instrument SciCat has under metadata instrument_id or
#                        dataset.instrument_id, else under the instrument name
#   sampleId             the first of metadata sample_id, NeXus sample/name that SciCat has
#   creationLocation     metadata creation_location, instrument name (named whether or not
#                        SciCat has an Instrument record)
#   sourceFolder         the folder of the file as this host sees it
#   creationTime         the file's modification time, UTC
#   startTime, endTime   NeXus start_time/end_time, run start's start/stop time
#   runNumber            NeXus entry_identifier
#   pid                  with dataset.pid_prefix: <prefix>/<uuid5 of job id and file name>;
#                        without: none sent, SciCat makes it
#   scientificMetadata   the NeXus values dataset.scientific_metadata names, metadata keys,
#                        then the writer's job_id, run_name, service_id, run start/stop
#                        times (these last win)

SCICAT_REQUIRED = ("owner", "ownerGroup", "contactEmail", "principalInvestigator", "creationLocation")


class IncompleteDataset(Exception):
    """Nothing gave a value for fields SciCat requires."""


@dataclass
class Proposal:
    """What the mapping takes from a SciCat proposal."""

    proposal_id: str
    owner_group: str = ""
    access_groups: list[str] = field(default_factory=list)
    principal_investigator: str = ""
    contact_email: str = ""
    fields: dict[str, Any] = field(default_factory=dict)  # the proposal as SciCat has it, for {proposal:...}


@dataclass
class CatalogueFacts:
    """What SciCat knows of a dataset's proposal, instrument and sample (looked up in section 5)."""

    proposal: Optional[Proposal] = None
    instrument_id: str = ""
    sample_id: str = ""
    # The links the file named but SciCat could not give, each said in a few words
    # ("proposal 999 not in SciCat"): the dataset is created without them.
    missing: list[str] = field(default_factory=list)


def first(*candidates: Any) -> Any:
    """The first candidate that is not empty."""
    return next((c for c in candidates if c not in (None, "", [], {})), "")


@dataclass
class Sourced:
    """A field's value and where it came from: "template", "file", "message", "lookup",
    "default" (the configuration), "ingestor" (what it computes) or "none"."""

    value: Any
    source: str
    detail: str = ""  # which path, key or template

    def describe(self) -> str:
        return f"{self.source}: {self.detail}" if self.detail else self.source


def first_of(*candidates: tuple[str, str, Any]) -> Sourced:
    """The first of the (source, detail, value) candidates that has a value."""
    for source, detail, value in candidates:
        if value not in (None, "", [], {}):
            return Sourced(value, source, detail)
    return Sourced("", "none", "no source had a value")


def group_list(groups: Any) -> list[str]:
    """Access groups as a list: experiment control may send one string, "a, b" meaning two
    groups (list() of it would make a group of each character)."""
    if isinstance(groups, str):
        return [g.strip() for g in groups.split(",") if g.strip()]
    return [str(g) for g in groups or [] if g not in (None, "")]


def message_metadata(run_start: Optional[RunStart], finished: FinishedWriting) -> dict[str, Any]:
    """The run start's metadata JSON, updated by the wrdn's."""
    return {**(run_start.metadata if run_start else {}), **finished.metadata}


def instrument_name(run_start: Optional[RunStart], finished: FinishedWriting, nexus: NexusMetadata,
                    defaults: DatasetDefaults) -> Sourced:
    metadata = message_metadata(run_start, finished)
    found = first_of(("message", "metadata instrument_name", metadata.get("instrument_name")),
                     ("message", "run start's instrument_name", run_start.instrument_name if run_start else ""),
                     ("file", "/entry/instrument/name", nexus.text("instrument_name")),
                     ("default", "dataset.instrument_name", defaults.instrument_name))
    return dataclasses.replace(found, value=str(found.value))


def proposal_id(run_start: Optional[RunStart], finished: FinishedWriting, nexus: NexusMetadata,
                defaults: DatasetDefaults) -> Sourced:
    found = first_of(("message", "metadata proposal_id", message_metadata(run_start, finished).get("proposal_id")),
                     ("file", "/entry/experiment_identifier", nexus.text("experiment_identifier")),
                     ("message", "run start's experiment_identifier",
                      run_start.structure_values.get("experiment_identifier") if run_start else ""),
                     ("default", "dataset.default_proposal_id", defaults.default_proposal_id))
    return dataclasses.replace(found, value=str(found.value))


def sample_candidates(run_start: Optional[RunStart], finished: FinishedWriting, nexus: NexusMetadata) -> list[str]:
    """Names that may be a SciCat sample id, most explicit first."""
    named = (message_metadata(run_start, finished).get("sample_id"), nexus.text("sample_name"))
    return [str(n) for n in named if n not in (None, "")]


def instrument_id_candidates(run_start: Optional[RunStart], finished: FinishedWriting,
                             defaults: DatasetDefaults) -> list[str]:
    named = (message_metadata(run_start, finished).get("instrument_id"), defaults.instrument_id)
    return [str(n) for n in named if n not in (None, "")]


def iso_utc(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ms_to_iso(milliseconds: int) -> str:
    return iso_utc(milliseconds / 1000) if milliseconds else ""


def iso_or_empty(text: str) -> str:
    """``text`` if it is an ISO-8601 time SciCat accepts (UTC assumed without offset)."""
    try:
        parsed = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return ""
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return iso_utc(parsed.timestamp())


def safe_key(key: str) -> str:
    """A scientificMetadata key SciCat stores: no '.', no '$', no NUL (MongoDB field names)."""
    return key.replace(".", "_").replace("$", "_").replace("\0", "_").strip() or "_"


def safe_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {safe_key(str(k)): safe_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [safe_keys(v) for v in value]
    return value


def scientific_entry(value: Any, unit: str = "") -> dict[str, Any]:
    return {"value": safe_keys(value), "unit": unit}


def build_scientific_metadata(
    run_start: Optional[RunStart], finished: FinishedWriting, nexus: NexusMetadata, metadata: dict[str, Any]
) -> dict[str, Any]:
    science: dict[str, Any] = {}
    for name, value in nexus.science.items():
        science[safe_key(name)] = scientific_entry(value.value, value.unit)
    for key, value in metadata.items():
        if isinstance(value, dict) and "value" in value:  # already {value, unit}
            science[safe_key(key)] = scientific_entry(value["value"], str(value.get("unit", "")))
        else:
            science[safe_key(key)] = scientific_entry(value)
    # The writer's own identifiers last: operators search by job_id.
    science["job_id"] = scientific_entry(finished.job_id)
    if finished.service_id:
        science["file_writer_service_id"] = scientific_entry(finished.service_id)
    if run_start is not None:
        science["run_name"] = scientific_entry(run_start.run_name)
        if run_start.start_time_ms:
            science["run_start_time"] = scientific_entry(ms_to_iso(run_start.start_time_ms))
        if run_start.stop_time_ms:
            science["run_stop_time"] = scientific_entry(ms_to_iso(run_start.stop_time_ms))
    return science


@dataclass
class BuiltDataset:
    """A dataset payload, where each of its fields came from, and the templates that could
    not be filled (each with the value it lacked), for the field-source report."""

    dataset: dict[str, Any]
    sources: dict[str, Sourced]
    unfilled: dict[str, str] = field(default_factory=dict)


def build_dataset(
    run_start: Optional[RunStart],
    finished: FinishedWriting,
    nexus: NexusMetadata,
    data_file: DataFile,
    defaults: DatasetDefaults,
    facts: Optional[CatalogueFacts] = None,
) -> BuiltDataset:
    """The SciCat raw dataset for one finished file: the field templates first, then the
    built-in rules (see the mapping above)."""
    run = run_start or RunStart(job_id=finished.job_id, filename=finished.file_name)
    structure = run.structure_values
    metadata = message_metadata(run_start, finished)
    facts = facts or CatalogueFacts()
    proposal = facts.proposal or Proposal(proposal_id="")
    first_user = next((u.name for u in nexus.users if u.name), "")
    user_emails = [u.email for u in nexus.users if "@" in u.email]
    folder, file_name = os.path.split(data_file.path)
    instrument = instrument_name(run_start, finished, nexus, defaults)
    users = ("file", "first NXuser's name", first_user)

    owner_group = first_of(("message", "metadata owner_group", metadata.get("owner_group")),
                           ("lookup", "the proposal's ownerGroup", proposal.owner_group),
                           ("default", "dataset.ownable.ownerGroup", defaults.ownable.ownerGroup))
    owner = first_of(("message", "metadata owner", metadata.get("owner")), users,
                     ("default", "dataset.owner", defaults.owner), ("default", "the owner group", owner_group.value))
    access_groups = first_of(("message", "metadata access_groups", metadata.get("access_groups")),
                             ("lookup", "the proposal's accessGroups", proposal.access_groups),
                             ("default", "dataset.ownable.accessGroups", defaults.ownable.accessGroups))
    access_groups.value = group_list(access_groups.value)
    sources: dict[str, Sourced] = {
        "type": Sourced("raw", "ingestor", "always"),
        "datasetName": first_of(("message", "run start's run name", run.run_name),
                                ("file", "/entry/title", nexus.text("title")),
                                ("ingestor", "the file name without extension", os.path.splitext(file_name)[0])),
        "description": first_of(("file", "/entry/title", nexus.text("title")),
                                ("message", "run start's title", structure.get("title")),
                                ("file", "/entry/experiment_description", nexus.text("experiment_description"))),
        "owner": owner,
        "ownerGroup": owner_group,
        "accessGroups": access_groups,
        "contactEmail": first_of(("message", "metadata contact_email", metadata.get("contact_email")),
                                 ("file", "the NXusers' emails", ";".join(user_emails)),
                                 ("lookup", "the proposal's pi_email or email", proposal.contact_email),
                                 ("default", "dataset.contact_email", defaults.contact_email)),
        "principalInvestigator": first_of(
            ("message", "metadata principal_investigator", metadata.get("principal_investigator")),
            ("lookup", "the proposal's PI", proposal.principal_investigator), users,
            ("default", "dataset.principal_investigator", defaults.principal_investigator),
            ("default", "the owner", owner.value)),
        "creationLocation": first_of(("message", "metadata creation_location", metadata.get("creation_location")),
                                     (instrument.source, f"the instrument name ({instrument.detail})",
                                      instrument.value)),
        "sourceFolder": Sourced(folder, "ingestor", "the file's folder"),
        "creationTime": Sourced(iso_utc(data_file.mtime), "ingestor", "the file's modification time"),
        "proposalId": proposal_id(run_start, finished, nexus, defaults),
        "instrumentId": first_of(("lookup", "the instrument SciCat has", facts.instrument_id)),
        "sampleId": first_of(("lookup", "the sample SciCat has", facts.sample_id)),
        "startTime": first_of(("file", "/entry/start_time", iso_or_empty(nexus.text("start_time"))),
                              ("message", "run start's start time", ms_to_iso(run.start_time_ms))),
        "endTime": first_of(("file", "/entry/end_time", iso_or_empty(nexus.text("end_time"))),
                            ("message", "run start's stop time", ms_to_iso(run.stop_time_ms))),
        "runNumber": first_of(("file", "/entry/entry_identifier", nexus.text("entry_identifier")),
                              ("message", "run start's entry_identifier", structure.get("entry_identifier", ""))),
        "dataFormat": Sourced("NeXus HDF5", "ingestor", "always"),
        "isPublished": Sourced(False, "ingestor", "always"),
        "scientificMetadata": Sourced(build_scientific_metadata(run_start, finished, nexus, metadata), "ingestor",
                                      "dataset.scientific_metadata, the messages' metadata, the writer's ids"),
        # By the file's name, not its path: --ingest-file sees the file under this host's
        # mount, the loop under the writer's path, and both must give the same pid.
        "pid": first_of(("ingestor", "dataset.pid_prefix and the uuid5 of job id and file name",
                         defaults.pid_prefix and deterministic_pid(defaults.pid_prefix, finished.job_id,
                                                                   os.path.basename(finished.file_name)))),
    }
    values = TemplateValues(
        named={"instrument": instrument.value, "proposal_id": sources["proposalId"].value, "run_name": run.run_name,
               "run_number": sources["runNumber"].value, "title": first(nexus.text("title"), structure.get("title")),
               "job_id": finished.job_id, "file_name": file_name, "file_stem": os.path.splitext(file_name)[0],
               "file_path": data_file.path, "source_folder": folder, "start_time": sources["startTime"].value,
               "end_time": sources["endTime"].value, "pid_prefix": defaults.pid_prefix.rstrip("/"),
               "service_id": finished.service_id},
        nexus=nexus.at_paths, metadata=metadata, proposal=proposal.fields)
    unfilled = {}
    for template in field_templates(defaults.fields, "fields"):
        try:
            sources[template.field] = Sourced(template.fill(values), "template", template.text)
        except MissingValue as e:
            unfilled[template.field] = f"{template.text}: no value for {e}"
    if defaults.ingestor_group and defaults.ingestor_group not in (sources["ownerGroup"].value,
                                                                   *sources["accessGroups"].value):
        sources["accessGroups"] = Sourced([*sources["accessGroups"].value, defaults.ingestor_group],
                                          sources["accessGroups"].source,
                                          sources["accessGroups"].detail + ", then dataset.ingestor_group")
    missing = [name for name in SCICAT_REQUIRED if not sources[name].value]
    if missing:
        raise IncompleteDataset(f"no value for {', '.join(missing)}: set them in the dataset section of the config")
    # Optional fields without a value are left out rather than sent empty.
    sources = {k: v for k, v in sources.items() if v.value != ""}
    return BuiltDataset({k: v.value for k, v in sources.items()}, sources, unfilled)


# Fixed forever: changing it would give already ingested files new pids.
PID_NAMESPACE = uuid.UUID("5b0c2c8e-6f4e-4d0a-9a43-3c1f0e7d2b61")


def deterministic_pid(prefix: str, job_id: str, file_name: str) -> str:
    """The same pid for the same job and file, however often the wrdn comes."""
    return f"{prefix.rstrip('/')}/{uuid.uuid5(PID_NAMESPACE, job_id + '|' + file_name)}"


def build_origdatablock(dataset_pid: str, dataset: dict[str, Any], data_file: DataFile) -> dict[str, Any]:
    """The file list of a dataset: here, the one finished file."""
    entry: dict[str, Any] = {
        "path": os.path.relpath(data_file.path, dataset["sourceFolder"]),
        "size": data_file.size,
        "time": iso_utc(data_file.mtime),
        "uid": data_file.uid,
        "gid": data_file.gid,
        "perm": data_file.perm,
    }
    block: dict[str, Any] = {"datasetId": dataset_pid, "size": data_file.size, "dataFileList": [entry]}
    if data_file.checksum:
        entry["chk"] = data_file.checksum
        block["chkAlg"] = data_file.checksum_algorithm
    return block


# =============================================================================
# 4a. Field templates: the facility's own values for dataset fields
# =============================================================================
#
# dataset.fields (and an instrument's) maps a SciCat raw-dataset field to a template: a
# string with {...} placeholders, a list of them, or any other JSON value, whose strings
# are templates too (techniques: [{"pid": "...", "name": "{nexus:/entry/technique}"}]).
# Parsed at start, so a mistake stops the program naming the key; filled per file from
# the values gathered before build_dataset (the file, the messages, SciCat's proposal).
# A placeholder without a value makes the whole field fall back to its built-in rule.

# {name}: values the built-in rules find (never another template's).
NAMED_VALUES = ("instrument", "proposal_id", "run_name", "run_number", "title", "job_id", "file_name", "file_stem",
                "file_path", "source_folder", "start_time", "end_time", "pid_prefix", "service_id")
# {kind:name}: a NeXus path, a key of the messages' metadata JSON, a field of the proposal.
PLACEHOLDER_KINDS = ("nexus", "metadata", "proposal")

TEXT, TEXTS, NUMBER, FLAG, RECORD, RECORDS = ("a string", "a string or a list of strings", "a number",
                                              "true or false", "an object", "a list of objects")
# SciCat's raw dataset in v3 names (POST /api/v3/Datasets as the backend takes it, recorded)
# -> what the field holds.
DATASET_FIELD_KINDS = {
    "pid": TEXT, "owner": TEXT, "ownerEmail": TEXT, "orcidOfOwner": TEXT, "contactEmail": TEXT,
    "ownerGroup": TEXT, "accessGroups": TEXTS, "instrumentGroup": TEXT, "sourceFolder": TEXT,
    "sourceFolderHost": TEXT, "size": NUMBER, "packedSize": NUMBER, "numberOfFiles": NUMBER,
    "numberOfFilesArchived": NUMBER, "creationTime": TEXT, "validationStatus": TEXT, "keywords": TEXTS,
    "description": TEXT, "datasetName": TEXT, "classification": TEXT, "license": TEXT, "isPublished": FLAG,
    "techniques": RECORDS, "sharedWith": TEXTS, "relationships": RECORDS, "datasetlifecycle": RECORD,
    "scientificMetadataSchema": TEXT, "scientificMetadataValid": FLAG, "comment": TEXT,
    "dataQualityMetrics": NUMBER, "proposalId": TEXT, "sampleId": TEXT, "instrumentId": TEXT,
    "principalInvestigator": TEXT, "creationLocation": TEXT, "runNumber": TEXT, "startTime": TEXT,
    "endTime": TEXT, "dataFormat": TEXT, "investigator": TEXT, "inputDatasets": TEXTS, "usedSoftware": TEXTS,
    "jobParameters": RECORD, "jobLogData": TEXT,
}
NOT_TEMPLATED = {"type": "always raw", "scientificMetadata": "dataset.scientific_metadata says what goes in it"}


class MissingValue(Exception):
    """A placeholder with no value for this file; its text is the placeholder."""


@dataclass(frozen=True)
class Placeholder:
    kind: str  # one of PLACEHOLDER_KINDS, "" for a named value
    name: str

    def __str__(self) -> str:
        return "{" + (f"{self.kind}:" if self.kind else "") + self.name + "}"


@dataclass
class TemplateValues:
    """What the placeholders of one file's templates may name."""

    named: dict[str, Any]
    nexus: dict[str, Any]  # by path
    metadata: dict[str, Any]
    proposal: dict[str, Any]

    def look_up(self, placeholder: Placeholder) -> Any:
        found = {"": self.named, "nexus": self.nexus, "metadata": self.metadata,
                 "proposal": self.proposal}[placeholder.kind].get(placeholder.name)
        if isinstance(found, dict) and "value" in found:  # metadata given as {value, unit}
            found = found["value"]
        if found in (None, "", [], {}):
            raise MissingValue(str(placeholder))
        return found


def as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):  # as SciCat lists people and emails
        return ";".join(as_text(v) for v in value)
    return json.dumps(value) if isinstance(value, dict) else str(value)


@dataclass
class TextTemplate:
    """One string of a template: literal text and placeholders, in turn."""

    parts: list[Union[str, Placeholder]]

    def fill(self, values: TemplateValues) -> Union[str, list[str]]:
        """The text; a lone placeholder naming a list gives the list (spliced into a list field)."""
        if len(self.parts) == 1 and isinstance(self.parts[0], Placeholder):
            value = values.look_up(self.parts[0])
            if isinstance(value, list):
                return [as_text(v) for v in value]
        return "".join(p if isinstance(p, str) else as_text(values.look_up(p)) for p in self.parts)


def parse_text_template(text: str, where: str) -> TextTemplate:
    import string

    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as e:
        raise ConfigError(f"{where}: {e} in {text!r} (a literal brace is written {{{{ or }}}})") from None
    parts: list[Union[str, Placeholder]] = []
    for literal, name, spec, conversion in parsed:
        if literal:
            parts.append(literal)
        if name is None:
            continue
        shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
        if conversion or "{" in (spec or ""):
            raise ConfigError(f"{where}: {shown!r} is not a placeholder this ingestor fills")
        if name in PLACEHOLDER_KINDS:
            if not spec:
                raise ConfigError(f"{where}: {{{name}:...}} must say what it names, e.g. {{nexus:/entry/title}}")
            if name == "nexus" and not spec.startswith("/"):
                raise ConfigError(f"{where}: {shown} needs an absolute path in the file")
            parts.append(Placeholder(name, spec))
        elif spec:
            raise ConfigError(f"{where}: {shown}: unknown placeholder kind {name!r} "
                              f"(known: {', '.join(PLACEHOLDER_KINDS)})")
        elif name in NAMED_VALUES:
            parts.append(Placeholder("", name))
        else:
            raise ConfigError(f"{where}: unknown placeholder {shown} (named values: {', '.join(NAMED_VALUES)}; "
                              f"or {{nexus:/path}}, {{metadata:key}}, {{proposal:field}})")
    return TextTemplate(parts)


def _parse_json_template(value: Any, where: str) -> Any:
    """The configured JSON with each string parsed into a TextTemplate."""
    if isinstance(value, str):
        return parse_text_template(value, where)
    if isinstance(value, list):
        return [_parse_json_template(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _parse_json_template(v, f"{where}.{k}") for k, v in value.items()}
    return value


def _fill_json(node: Any, values: TemplateValues) -> Any:
    if isinstance(node, TextTemplate):
        return node.fill(values)
    if isinstance(node, list):
        filled: list[Any] = []
        for item in node:
            value = _fill_json(item, values)
            filled += value if isinstance(item, TextTemplate) and isinstance(value, list) else [value]
        return filled
    if isinstance(node, dict):
        return {k: _fill_json(v, values) for k, v in node.items()}
    return node


def _fits(value: Any, kind: str) -> bool:
    """Whether a configured template can give what the field holds."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return {TEXT: isinstance(value, str),
            TEXTS: isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)),
            NUMBER: number, FLAG: isinstance(value, bool), RECORD: isinstance(value, dict),
            RECORDS: isinstance(value, list) and all(isinstance(v, dict) for v in value)}[kind]


@dataclass
class FieldTemplate:
    """One entry of dataset.fields, parsed."""

    field: str
    text: str  # as configured, for the field-source report
    parsed: Any
    placeholders: list[Placeholder]

    def fill(self, values: TemplateValues) -> Any:
        """The field's value for one file; MissingValue when a placeholder has none."""
        value = _fill_json(self.parsed, values)
        if DATASET_FIELD_KINDS[self.field] == TEXTS and isinstance(value, str):
            return [value]
        if DATASET_FIELD_KINDS[self.field] == TEXT and isinstance(value, list):
            return as_text(value)
        return value


def _placeholders_in(node: Any) -> list[Placeholder]:
    if isinstance(node, TextTemplate):
        return [p for p in node.parts if isinstance(p, Placeholder)]
    items = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    return [p for item in items for p in _placeholders_in(item)]


def field_templates(fields: dict[str, Any], where: str) -> list[FieldTemplate]:
    """dataset.fields parsed; a field SciCat's raw dataset lacks, a value the field cannot
    hold or a placeholder this ingestor does not fill is a ConfigError naming the key."""
    templates = []
    for name, template in fields.items():
        key = f"{where}.{name}"
        if name.startswith("#"):
            continue
        if name in NOT_TEMPLATED:
            raise ConfigError(f"{key}: not templated: {NOT_TEMPLATED[name]}")
        if name not in DATASET_FIELD_KINDS:
            raise ConfigError(f"{key}: SciCat's raw dataset has no field {name!r} (its fields, in v3 names: "
                              f"{', '.join(sorted(DATASET_FIELD_KINDS))})")
        if not _fits(template, DATASET_FIELD_KINDS[name]):
            raise ConfigError(f"{key}: expected {DATASET_FIELD_KINDS[name]}, got {json.dumps(template)[:60]}")
        parsed = _parse_json_template(template, key)
        templates.append(FieldTemplate(name, template if isinstance(template, str) else json.dumps(template),
                                       parsed, _placeholders_in(parsed)))
    return templates


def template_nexus_paths(fields: dict[str, Any]) -> list[str]:
    """The paths in the file the templates name, to be read with the file."""
    return sorted({p.name for t in field_templates(fields, "fields") for p in t.placeholders if p.kind == "nexus"})


# =============================================================================
# 5. Talking to SciCat
# =============================================================================


class SciCatError(Exception):
    """SciCat refused a request, or could not be reached after the retries."""

    def __init__(self, what: str, status: Optional[int] = None, body: str = ""):
        self.status = status
        self.body = body
        answer = f"HTTP {status}: {body[:500]}" if status is not None else body
        super().__init__(f"{what}: {answer}")


class AmbiguousWrite(SciCatError):
    """A POST SciCat may have carried out though no usable answer came back (a timeout or reset
    after sending, a gateway's 502, any 5xx, a 2xx without the record): never repeated blindly."""


class DatasetWithoutFiles(SciCatError):
    """The dataset is in SciCat but its origdatablock could not be made: --replay completes it."""

    def __init__(self, pid: str, cause: SciCatError):
        self.pid = pid
        super().__init__(f"dataset without file list: {pid}", cause.status, str(cause))


# Answers worth waiting out: the backend restarting, overloaded, or a proxy in between.
TRANSIENT_STATUS = (429, 500, 502, 503, 504)
# The longest wait between two retries: with many retries configured, a doubling
# backoff would otherwise leave minutes between tries of a SciCat that is back.
RETRY_DELAY_MAX_S = 60.0
# Log in again this long before the token runs out, not at the last second.
TOKEN_RENEW_MARGIN_S = 60.0
# Upper bounds of the SciCat latency histogram's buckets, in seconds.
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
HEALTH_PROBE_TIMEOUT_S = 5.0
# An answer of SciCat's /health is reused this long: a monitor polling often, or many at
# once, must not become a load on SciCat.
HEALTH_PROBE_CACHE_S = 3.0
# While an answer takes longer than this the loop polls Kafka, in slices as long.
IN_FLIGHT_POLL_S = 0.2


def retry_delay(config: "SciCatConfig", attempt: int) -> float:
    """How long to wait before retry number attempt (from 1): doubling, capped, jittered."""
    return min(config.retry_backoff_s * 2 ** (attempt - 1), RETRY_DELAY_MAX_S) * random.uniform(0.5, 1.5)


def was_sent(error: Exception) -> bool:
    """Whether a failed request may have reached SciCat: not when the connection was never made."""
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    import requests

    if isinstance(error, requests.ConnectTimeout):
        return False
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return not isinstance(reason, (NewConnectionError, ConnectTimeoutError))


@dataclass
class LatencyHistogram:
    """How long SciCat took to answer, request by request."""

    # counts[i]: answers within LATENCY_BUCKETS_S[i] and above the bound before; the last, above them all.
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    total_s: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.total_s += seconds
        self.count += 1

    def mean_ms(self) -> float:
        return 1000 * self.total_s / self.count if self.count else 0.0


class LookupCache:
    """SciCat's answers about proposals, instruments and samples, reused for ttl_s.

    Files come one after another from the same proposal and instrument; an entry
    made in SciCat later (a proposal synchronised late) is seen once ttl_s is up.
    """

    CAPACITY = 1000  # bounded: the daemon runs for years

    def __init__(self, ttl_s: float):
        self.ttl_s = ttl_s
        self._entries: OrderedDict[tuple[str, str], tuple[float, Any]] = OrderedDict()

    def get(self, kind: str, key: str, fetch: typing.Callable[[], Any]) -> Any:
        now = time.monotonic()
        cached = self._entries.get((kind, key))
        if cached is not None and cached[0] > now:
            return cached[1]
        value = fetch()  # a SciCatError is not kept: the next file asks again
        self._entries[(kind, key)] = (now + self.ttl_s, value)
        self._entries.move_to_end((kind, key))
        while len(self._entries) > self.CAPACITY:
            self._entries.popitem(last=False)
        return value


def proposal_from_scicat(doc: dict[str, Any]) -> Proposal:
    def text(name: str) -> str:
        return str(doc.get(name) or "").strip()

    email = first(text("pi_email"), text("email"))
    return Proposal(
        proposal_id=text("proposalId"),
        owner_group=text("ownerGroup"),
        access_groups=[str(g) for g in doc.get("accessGroups") or [] if g],
        principal_investigator=first(" ".join(filter(None, (text("pi_firstname"), text("pi_lastname")))), email),
        contact_email=email if "@" in email else "",
        fields=doc,
    )


@dataclass(frozen=True)
class AttachmentCall:
    """One request of the attachments API, in the shape of the API version it goes to."""

    method: str
    path: str  # below the API base of that version
    body: Any = None
    params: Any = None


def attachment_post(api: "DatasetApi", pid: str, thumbnail: Thumbnail, ownable: Ownable) -> AttachmentCall:
    """The POST attaching a picture to a dataset: v3 names the dataset in the path, v4 in a
    relationship and wants isPublished (both as recorded from scicat-backend-next 4.27)."""
    body = {"thumbnail": thumbnail.data_uri(), "caption": thumbnail.caption, "ownerGroup": ownable.ownerGroup,
            "accessGroups": list(ownable.accessGroups)}
    if api.version == "v4":
        return AttachmentCall("POST", "/attachments", {
            **body, "isPublished": False,
            "relationships": [{"targetId": pid, "targetType": "dataset", "relationType": "is attached to"}]})
    return AttachmentCall("POST", api.dataset_path(pid) + "/attachments", body)


# v3 lists a dataset's newest ten attachments and takes no filter (recorded): ours is found
# unless ten more were attached since. v4 lists ten unless told; told this, more.
ATTACHMENT_SEARCH_LIMIT = 100


def attachment_search(api: "DatasetApi", pid: str) -> AttachmentCall:
    """The GET listing a dataset's attachments (their captions at least)."""
    if api.version == "v4":
        where = {"where": {"relationships.targetId": pid}, "fields": ["caption"],
                 "limits": {"limit": ATTACHMENT_SEARCH_LIMIT}}
        return AttachmentCall("GET", "/attachments", params={"filter": json.dumps(where)})
    return AttachmentCall("GET", api.dataset_path(pid) + "/attachments")


class SciCatClient:
    """SciCat's REST API: log in, keep the token fresh, create and find datasets.

    Every exchange has a deadline of scicat.timeout_s for the whole of it (a trickling answer
    too); while it runs, `stay_in_group` polls Kafka so the loop keeps its consumer group."""

    def __init__(self, config: SciCatConfig, wait: Any = time.sleep, stay_in_group: Any = None):
        import requests

        self.config = config
        # How to pass the time between retries: the loop's own wait keeps
        # the consumer in its group while SciCat is down.
        self.wait = wait
        self.stay_in_group = stay_in_group
        self.retries = 0
        self.repeats = RepeatLimiter()  # SciCat down: one line per 30 s, not one per retry
        self.latency = LatencyHistogram()
        self.session = requests.Session()
        self.session.verify = config.verify_tls
        self.session.headers["Accept"] = "application/json"
        self._token = config.token
        self._token_renew_at = float("inf") if config.token else 0.0
        self.lookups = LookupCache(config.lookup_cache_s)
        self._api: Optional[DatasetApi] = None  # chosen once: at start, else with the first file

    def connect(self) -> None:
        """Log in, and choose the API for datasets (scicat.api)."""
        self.login()
        self.dataset_api()

    def dataset_api(self) -> DatasetApi:
        if self._api is None:
            self._api = choose_api(self.config, lambda base: self.request(
                "GET", "/datasets", params=V4_PROBE_QUERY, base=base).status_code)
        return self._api

    # -- authentication --------------------------------------------------------

    def login(self) -> None:
        if not self._can_log_in():
            return  # a static token
        credentials = {"username": self.config.username, "password": self.config.password}
        logger.info("logging in to SciCat at %s as %s", self.config.host, self.config.username)
        # A 401 too is retried: SciCat restarting or its identity provider slow refuse for a few
        # seconds; a wrong password still refuses after the retries.
        try:
            response = self._send("POST", "/auth/login", credentials, authenticated=False, also_transient=(401,))
        except SciCatError as e:  # still refused, or unreachable, after the retries
            raise SciCatError(f"login as {self.config.username} failed", e.status, e.body) from None
        if response.status_code != 201:
            raise SciCatError(f"login as {self.config.username} failed", response.status_code, response.text)
        try:
            answer = response.json()
            self._token = answer["access_token"]
        except (ValueError, KeyError, TypeError):
            raise SciCatError("login answered without an access_token", response.status_code,
                              response.text[:200]) from None
        lifetime = float(answer.get("expires_in") or 3600)
        self._token_renew_at = time.monotonic() + max(lifetime - TOKEN_RENEW_MARGIN_S, lifetime / 2)
        logger.info("logged in to SciCat at %s as %s", self.config.host, self.config.username)

    def _can_log_in(self) -> bool:
        return bool(self.config.username and self.config.password)

    # -- requests --------------------------------------------------------------

    def _exchange(self, method: str, url: str, body: Any, params: Any, headers: dict[str, str]):
        """One HTTP exchange, given up at the deadline however the answer trickles in.

        It runs in a thread of its own (an abandoned one ends at the socket's read timeout);
        this thread waits, polling Kafka once the answer is slow."""
        import requests

        deadline = time.monotonic() + self.config.timeout_s
        outcome: list[Any] = []
        done = threading.Event()

        def exchange() -> None:
            try:
                outcome.append(self.session.request(method, url, json=body, params=params, headers=headers,
                                                     timeout=self.config.timeout_s))
            except Exception as e:  # handed to the waiting thread
                outcome.append(e)
            done.set()

        threading.Thread(target=exchange, daemon=True, name="scicat-request").start()
        if not done.wait(min(IN_FLIGHT_POLL_S, self.config.timeout_s)):
            while (left := deadline - time.monotonic()) > 0 and not done.is_set():
                slice_started = time.monotonic()
                if self.stay_in_group is not None:
                    self.stay_in_group(min(left, IN_FLIGHT_POLL_S))
                if time.monotonic() - slice_started < min(left, IN_FLIGHT_POLL_S) / 2:
                    done.wait(min(left, IN_FLIGHT_POLL_S))  # no Kafka, or stopping: just wait
        if not done.is_set():
            raise requests.Timeout(f"no complete answer within {self.config.timeout_s:g} s")
        if isinstance(outcome[0], Exception):
            raise outcome[0]
        return outcome[0]

    def _send(self, method: str, path: str, body: Any = None, params: Any = None, authenticated: bool = True,
              also_transient: tuple[int, ...] = (), base: str = ""):
        """One request to base (scicat.host unless given) + path, with retries for what is worth
        waiting out. A POST that may have been carried out is not repeated here: AmbiguousWrite,
        for the caller to check first."""
        import requests

        repeatable = method == "GET" or path == "/auth/login"
        attempt = 0
        while True:
            headers = {"Authorization": f"Bearer {self._token}"} if authenticated and self._token else {}
            try:
                started = time.monotonic()
                response = self._exchange(method, (base or self.config.host) + path, body, params, headers)
                self.latency.observe(time.monotonic() - started)
                status = response.status_code
                problem = f"HTTP {status}" if status in TRANSIENT_STATUS + also_transient else ""
                sent = status != 429  # 429: refused before doing anything
            except (requests.ConnectionError, requests.Timeout) as e:
                response, problem, sent = None, f"{type(e).__name__}: {e}", was_sent(e)
            if not problem:
                return response
            if sent and not repeatable:
                raise AmbiguousWrite(f"{method} {path}", None if response is None else response.status_code,
                                     problem if response is None else response.text)
            if attempt >= self.config.max_retries:
                if response is None:
                    raise SciCatError(f"{method} {path}", None, f"SciCat unreachable ({problem})")
                raise SciCatError(f"{method} {path}", response.status_code, response.text)
            attempt += 1
            delay = retry_delay(self.config, attempt)
            self.retries += 1
            said = ("SciCat at %s: %s %s: %s; retry %d/%d in %.1f s", self.config.host, method, path, problem[:200],
                    attempt, self.config.max_retries, delay)
            if path == "/auth/login":  # each retry: whoever starts the ingestor waits on them
                logger.warning(*said)
            else:  # once per 30 s by the kind of problem (HTTP 503, ConnectionError), not its varying details
                self.repeats.log(logging.WARNING, problem.partition(":")[0], *said)
            self.wait(delay)

    def request(self, method: str, path: str, body: Any = None, params: Any = None, base: str = ""):
        """An authenticated request; logs in again once if the token was refused."""
        if self._can_log_in() and time.monotonic() >= self._token_renew_at:
            self.login()
        response = self._send(method, path, body, params, base=base)
        if response.status_code == 401 and self._can_log_in():
            logger.info("SciCat refused the token (expired?); logging in again")
            self.login()
            response = self._send(method, path, body, params, base=base)
        return response

    def _json(self, method: str, path: str, what: str, body: Any = None, params: Any = None) -> Any:
        """The JSON answer of a request on datasets or origdatablocks, to the chosen API, that must
        succeed; None for a 404 or an empty answer."""
        return self._answer(method, self.request(method, path, body, params, base=self.dataset_api().base), what)

    @staticmethod
    def _answer(method: str, response: Any, what: str) -> Any:
        """The JSON of an answer; None for a GET answered 404 or with an empty body (SciCat's
        "nothing found"); SciCatError for a refusal or an answer that is not JSON."""
        if method == "GET" and response.status_code == 404:
            return None
        if response.status_code not in (200, 201):
            raise SciCatError(f"SciCat refused {what}", response.status_code, response.text)
        if not response.content.strip():
            return None
        try:
            return response.json()
        except ValueError:
            kind = "HTML" if response.text.lstrip().startswith("<") else "no JSON"
            # A POST answered 2xx did something: what, only SciCat can say.
            error = AmbiguousWrite if method == "POST" else SciCatError
            raise error(f"SciCat answered {what} with {kind}", response.status_code, response.text) from None

    def _created(self, path: str, record: dict[str, Any], what: str, key: str) -> dict[str, Any]:
        """POST a record; the answer must be the record, with its key, else the POST is ambiguous."""
        answer = self._json("POST", path, what, record)
        if not isinstance(answer, dict) or not isinstance(answer.get(key), str) or not answer[key]:
            shape = "an empty body" if answer is None else f"{json.dumps(answer)[:200]} (no {key})"
            raise AmbiguousWrite(f"SciCat answered {what} with {shape}", 201, "")
        return answer

    def post_dataset(self, dataset: dict[str, Any]) -> dict[str, Any]:
        api = self.dataset_api()
        return self._created(api.datasets, api.dataset_payload(dataset), "the dataset", "pid")

    def post_origdatablock(self, block: dict[str, Any]) -> dict[str, Any]:
        return self._created(self.dataset_api().origdatablocks, block, "the origdatablock", "_id")

    def post_attachment(self, call: AttachmentCall) -> dict[str, Any]:
        return self._created(call.path, call.body, "the thumbnail", "_id")

    def attachments(self, call: AttachmentCall) -> list[dict[str, Any]]:
        found = self._json(call.method, call.path, "reading attachments", params=call.params) or []
        if not isinstance(found, list):
            raise SciCatError("SciCat answered the attachments with no list", None, json.dumps(found)[:200])
        return [a for a in found if isinstance(a, dict)]

    def _dataset_answer(self, found: Any, what: str) -> Optional[dict[str, Any]]:
        if isinstance(found, list):  # a search: the first match
            found = found[0] if found else None
        if found is None or found == {}:
            return None
        if not isinstance(found, dict) or not found.get("pid"):
            raise SciCatError(f"SciCat answered {what} with no dataset", None, json.dumps(found)[:200])
        return found

    def get_dataset(self, pid: str) -> Optional[dict[str, Any]]:
        return self._dataset_answer(
            self._json("GET", self.dataset_api().dataset_path(pid), "reading a dataset"),
            f"reading dataset {pid}")

    def find_dataset_by_job(self, job_id: str) -> Optional[dict[str, Any]]:
        # "limits": SciCat ignores a top-level "limit" (recorded from scicat-backend-next 4.27).
        where = {"where": {"scientificMetadata.job_id.value": job_id}, "limits": {"limit": 1}}
        found = self._json("GET", self.dataset_api().datasets, "the search by job id",
                           params={"filter": json.dumps(where)})
        return self._dataset_answer(found, f"the search for job {job_id}")

    def find_origdatablock(self, pid: str, file_path: str) -> Optional[dict[str, Any]]:
        """The dataset's origdatablock listing a file of this name, if there is one. By name, not
        path: a dataset made by another ingestor under the same pid (scicat-ingestor's, say) may
        list the file by an absolute path, or relative to another folder."""
        path, query = self.dataset_api().blocks_of(pid)
        blocks = self._json("GET", path, "reading origdatablocks", params=query) or []
        if not isinstance(blocks, list):
            raise SciCatError(f"SciCat answered the origdatablocks of {pid} with no list", None,
                              json.dumps(blocks)[:200])
        return next((b for b in blocks if isinstance(b, dict)
                     and any(isinstance(f, dict) and os.path.basename(str(f.get("path"))) == os.path.basename(file_path)
                             for f in b.get("dataFileList") or [])), None)

    # -- lookups (cached) --------------------------------------------------------

    def _look_up(self, path: str, what: str, params: Any = None) -> Any:
        """A lookup's JSON answer; None when SciCat has nothing there, or will not show it to us."""
        response = self.request("GET", path, params=params)
        if response.status_code == 403:
            logger.warning("SciCat does not let %s read %s (HTTP 403): taken as not found",
                           self.config.username or "this token", what)
            return None
        if response.status_code == 200 and not response.content.strip():
            return None  # how SciCat answers an absent instrument id, or a findOne without a match
        return self._answer("GET", response, what) or None  # null, [] and {} say "nothing" too

    def find_proposal(self, proposal_id: str) -> Optional[Proposal]:
        def fetch() -> Optional[Proposal]:
            doc = self._look_up("/Proposals/" + urllib.parse.quote(proposal_id, safe=""), f"proposal {proposal_id}")
            return proposal_from_scicat(doc) if isinstance(doc, dict) else None

        return self.lookups.get("proposal", proposal_id, fetch)

    def instrument_exists(self, instrument_id: str) -> bool:
        path = "/Instruments/" + urllib.parse.quote(instrument_id, safe="")
        return self.lookups.get("instrument", instrument_id,
                                lambda: isinstance(self._look_up(path, f"instrument {instrument_id}"), dict))

    def find_instrument_by_name(self, name: str) -> str:
        """The pid of the instrument with this name; "" when SciCat has none."""
        def fetch() -> str:
            where = {"where": {"name": name}, "limits": {"limit": 1}}
            found = self._look_up("/Instruments", f"instrument {name}", {"filter": json.dumps(where)})
            return str(found[0].get("pid") or "") if isinstance(found, list) and found else ""

        return self.lookups.get("instrument name", name, fetch)

    def sample_exists(self, sample_id: str) -> bool:
        path = "/Samples/" + urllib.parse.quote(sample_id, safe="")
        return self.lookups.get("sample", sample_id,
                                lambda: isinstance(self._look_up(path, f"sample {sample_id}"), dict))


def probe_scicat(config: SciCatConfig) -> tuple[bool, str]:
    """Is SciCat up: its unauthenticated GET /health, on a connection of its own (safe from any thread)."""
    import requests

    started = time.monotonic()
    try:
        response = requests.get(config.host + "/health", verify=config.verify_tls,
                                timeout=min(config.timeout_s, HEALTH_PROBE_TIMEOUT_S))
    except requests.RequestException as e:
        return False, f"unreachable at {config.host} ({type(e).__name__})"
    if response.status_code != 200:
        return False, f"GET /health answered HTTP {response.status_code}"
    return True, f"GET /health answered in {1000 * (time.monotonic() - started):.0f} ms"


class DryRunCatalogue:
    """Stands in for SciCatClient under --dry-run: logs what would be created. Nothing is
    asked of it (Ingestor.look_up): the configured defaults show instead of SciCat's records."""

    retries = 0
    asks = False  # whether Ingestor.look_up asks it for proposals, instruments and samples

    def __init__(self, config: SciCatConfig) -> None:
        self.latency = LatencyHistogram()
        # Not even which API SciCat serves is asked: auto shows what v3 would be sent.
        self.api = DatasetApi.of("v4" if config.api == "v4" else "v3", config.host,
                                 f"dry run, scicat.api {config.api}")

    def dataset_api(self) -> DatasetApi:
        return self.api

    def connect(self) -> None:
        logger.info("dry run: nothing will be written to SciCat, nor asked: proposals, instruments and samples "
                    "count as not found; datasets are shown as its %s API would take them (%s)", self.api.version,
                    self.api.why)

    def post_dataset(self, dataset: dict[str, Any]) -> dict[str, Any]:
        payload = self.api.dataset_payload(dataset)
        logger.info("dry run: would create dataset %s", json.dumps(payload, sort_keys=True))
        return {**dataset, "pid": dataset.get("pid") or f"dry-run/{dataset['scientificMetadata']['job_id']['value']}"}

    def post_origdatablock(self, block: dict[str, Any]) -> dict[str, Any]:
        logger.info("dry run: would create origdatablock %s", json.dumps(block, sort_keys=True))
        return block

    def get_dataset(self, pid: str) -> None:
        return None

    def find_dataset_by_job(self, job_id: str) -> None:
        return None

    def find_origdatablock(self, pid: str, file_path: str) -> None:
        return None

    def post_attachment(self, call: AttachmentCall) -> dict[str, Any]:
        # In full, as the datasets are: the picture can be looked at (examples/demo.py writes it out).
        logger.info("dry run: would attach by %s %s: %s", call.method, call.path, json.dumps(call.body))
        return call.body

    def attachments(self, call: AttachmentCall) -> list[dict[str, Any]]:
        return []


class AskingDryRunCatalogue(DryRunCatalogue):
    """--check-config --ingest-file: a dry run that asks SciCat what it has (the proposal,
    instrument and sample, whether the dataset is there already) and writes nothing, so the
    field report shows the values a real run would give."""

    asks = True

    def __init__(self, client: SciCatClient) -> None:
        super().__init__(client.config)
        self.client = client
        self.latency = client.latency

    def connect(self) -> None:
        self.api = self.client.dataset_api()  # asked, as a real run would (scicat.api auto)
        logger.info("dry run: nothing will be written to SciCat; it is asked for proposals, instruments, "
                    "samples and whether each dataset, and its picture, is there already; datasets are shown "
                    "as its %s API would take them", self.api.version)

    def post_dataset(self, dataset: dict[str, Any]) -> dict[str, Any]:
        if "pid" in dataset and self.client.get_dataset(dataset["pid"]) is not None:
            # As SciCat answers a second creation: the publisher then reads the dataset back.
            raise SciCatError(f"dry run: SciCat has a dataset with pid {dataset['pid']} already", 409)
        return super().post_dataset(dataset)

    def get_dataset(self, pid: str) -> Optional[dict[str, Any]]:  # type: ignore[override]
        return self.client.get_dataset(pid)

    def find_dataset_by_job(self, job_id: str) -> Optional[dict[str, Any]]:  # type: ignore[override]
        return self.client.find_dataset_by_job(job_id)

    def find_origdatablock(self, pid: str, file_path: str) -> Optional[dict[str, Any]]:  # type: ignore[override]
        return self.client.find_origdatablock(pid, file_path)

    def attachments(self, call: AttachmentCall) -> list[dict[str, Any]]:
        return self.client.attachments(call)

    def find_proposal(self, proposal_id: str) -> Optional[Proposal]:
        return self.client.find_proposal(proposal_id)

    def instrument_exists(self, instrument_id: str) -> bool:
        return self.client.instrument_exists(instrument_id)

    def find_instrument_by_name(self, name: str) -> str:
        return self.client.find_instrument_by_name(name)

    def sample_exists(self, sample_id: str) -> bool:
        return self.client.sample_exists(sample_id)


# =============================================================================
# 5a. The v3/v4 translation
# =============================================================================

# SciCat serves datasets and origdatablocks under /api/v3 and, since 4.x, /api/v4 beside it
# (login, proposals, instruments and samples stay on the v3 paths). The dataset is built
# in v3's names (section 4); for v4 a few of them become lists under other names, as v4
# refuses the v3 names (400, "should not exist"). Every other field is passed on as it is.

# v3 name -> the v4 list that holds it.
V4_LISTS = {
    "principalInvestigator": "principalInvestigators",
    "proposalId": "proposalIds",
    "sampleId": "sampleIds",
    "instrumentId": "instrumentIds",
}


def v4_base(host: str) -> str:
    """The v4 API base made from scicat.host (…/api/v3 -> …/api/v4); "" when host names no v3."""
    head, slash, version = host.rstrip("/").rpartition("/")
    return f"{head}/v4" if slash and version.lower() == "v3" else ""


def in_v4_names(dataset: dict[str, Any]) -> dict[str, Any]:
    """A dataset built in v3's names as v4 takes it; a value given as a list stays that list."""
    translated = {}
    for name, value in dataset.items():
        if name in V4_LISTS:
            if value is not None:
                translated[V4_LISTS[name]] = value if isinstance(value, list) else [value]
        else:
            translated[name] = value
    return translated


@dataclass(frozen=True)
class DatasetApi:
    """Where one API version keeps datasets and origdatablocks, and in which names."""

    version: str  # "v3" or "v4"
    base: str  # the API base, e.g. https://scicat.example.org/api/v4
    datasets: str  # the collection's path under base
    origdatablocks: str
    why: str = field(default="", compare=False)  # how it was chosen, for the log and --check-config

    @staticmethod
    def of(version: str, host: str, why: str) -> "DatasetApi":
        if version == "v4":
            return DatasetApi("v4", v4_base(host), "/datasets", "/origdatablocks", why)
        return DatasetApi("v3", host, "/Datasets", "/OrigDatablocks", why)

    def dataset_payload(self, dataset: dict[str, Any]) -> dict[str, Any]:
        return in_v4_names(dataset) if self.version == "v4" else dataset

    def dataset_path(self, pid: str) -> str:
        return f"{self.datasets}/{urllib.parse.quote(pid, safe='')}"

    def blocks_of(self, pid: str) -> tuple[str, Optional[dict[str, str]]]:
        """(path, query) of the dataset's origdatablocks: v4 has no route under the dataset but a
        filter (as recorded: where datasetId; a dataset here has one block, whatever the default limit)."""
        if self.version == "v4":
            return self.origdatablocks, {"filter": json.dumps({"where": {"datasetId": pid}})}
        return self.dataset_path(pid) + "/origdatablocks", None


def v4_served(status: int) -> Optional[bool]:
    """What the status of GET <v4 base>/datasets says: 404, no v4 here (a v3-only backend); any
    other answer below 500 (200; 401 or 403, v4 reads need a token) comes from a route that is
    there, so v4 datasets are served; a 5xx says nothing."""
    return None if status >= 500 else status != 404


# Asked of GET <v4 base>/datasets: as little as SciCat can answer.
V4_PROBE_QUERY = {"filter": json.dumps({"fields": ["pid"], "limits": {"limit": 1}})}


def choose_api(config: SciCatConfig, status_of_v4_datasets: typing.Callable[[str], int]) -> DatasetApi:
    """The API scicat.api names; for "auto", v4 if the backend serves v4 datasets, else v3.
    status_of_v4_datasets(v4 base) is the status of GET <v4 base>/datasets?V4_PROBE_QUERY
    (a SciCatError, or a status that says nothing, leaves it undecided)."""
    if config.api != "auto":
        api = DatasetApi.of(config.api, config.host, f"scicat.api is {config.api}")
    elif not (base := v4_base(config.host)):
        api = DatasetApi.of("v3", config.host, "scicat.api auto, and scicat.host names no v3 to make a v4 base of")
    else:
        status = status_of_v4_datasets(base)
        served = v4_served(status)
        if served is None:
            raise SciCatError("asking whether SciCat serves v4 datasets (scicat.api auto)", status, "")
        api = DatasetApi.of("v4" if served else "v3", config.host,
                            f"scicat.api auto: GET {base}/datasets answered HTTP {status}")
    logger.info("datasets and origdatablocks through SciCat's %s API at %s (%s)", api.version, api.base, api.why)
    return api


# =============================================================================
# 5b. Creating each record once
# =============================================================================

# A POST whose answer is lost may have been carried out: repeating it blindly
# would give a file two datasets or two file lists, which only an administrator
# can clean up. So after an ambiguous POST the publisher waits the backoff (a
# gateway may answer before the backend has finished), asks SciCat whether the
# record is there (the dataset by its pid or job id, the origdatablock by the
# file's path, the picture by its caption) and POSTs again only if it is not.


@dataclass
class DatasetMade:
    """The dataset a file has in SciCat, and how it got there."""

    status: str  # "ingested" or "duplicate" (SciCat had it before this message)
    record: dict[str, Any]
    just_posted: bool  # made by our POST just now, so without a file list yet


class Publisher:
    """Creates a file's dataset and its origdatablock in SciCat, and attaches its picture, each exactly once."""

    def __init__(self, catalogue: Any, config: SciCatConfig, check_by_job_id: bool, wait: Any):
        self.catalogue = catalogue
        self.config = config
        self.check_by_job_id = check_by_job_id
        self.wait = wait

    def publish(self, dataset: dict[str, Any], data_file: DataFile, known_pid: str = "") -> DatasetMade:
        """The dataset: status "ingested", or "duplicate" when SciCat had it already.

        A redelivered message, or a replayed one (known_pid), finds the dataset and only
        completes what a crash or a failure between the two POSTs left undone."""
        existing = None
        # With our own pid no lookup first: SciCat's 409 tells a duplicate, one request less per file.
        if known_pid:
            existing = self.catalogue.get_dataset(known_pid)
        elif "pid" not in dataset and self.check_by_job_id:
            existing = self.find_dataset(dataset)
        if existing is not None:
            made = DatasetMade("duplicate", existing, just_posted=False)
        else:
            made = self.create_once("the dataset", lambda: self.post_dataset(dataset),
                                    lambda: self.found_dataset(dataset))
        pid = made.record["pid"]
        block = build_origdatablock(pid, dataset, data_file)
        file_path = block["dataFileList"][0]["path"]
        try:
            # A dataset our POST just made has no file list; one found may have.
            if made.just_posted or self.catalogue.find_origdatablock(pid, file_path) is None:
                self.create_once(f"the origdatablock of {pid}", lambda: self.catalogue.post_origdatablock(block),
                                 lambda: self.catalogue.find_origdatablock(pid, file_path))
        except SciCatError as e:
            raise DatasetWithoutFiles(pid, e) from None
        return made

    def find_dataset(self, dataset: dict[str, Any]) -> Optional[dict[str, Any]]:
        if "pid" in dataset:
            return self.catalogue.get_dataset(dataset["pid"])
        return self.catalogue.find_dataset_by_job(dataset["scientificMetadata"]["job_id"]["value"])

    def found_dataset(self, dataset: dict[str, Any]) -> Optional[DatasetMade]:
        """After an ambiguous POST: the dataset that POST made, if it did."""
        existing = self.find_dataset(dataset)
        return DatasetMade("ingested", existing, just_posted=False) if existing is not None else None

    def post_dataset(self, dataset: dict[str, Any]) -> DatasetMade:
        """The dataset created, or the one SciCat has under its pid already (409)."""
        try:
            return DatasetMade("ingested", self.catalogue.post_dataset(dataset), just_posted=True)
        except AmbiguousWrite:
            raise
        except SciCatError as e:
            if e.status != 409 or "pid" not in dataset:
                raise
            existing = self.catalogue.get_dataset(dataset["pid"])
            if existing is None:
                raise
            return DatasetMade("duplicate", existing, just_posted=False)

    def attach(self, made: DatasetMade, dataset: dict[str, Any], thumbnail: Thumbnail) -> str:
        """Attach the file's picture once: "attached", or "attached already" when a redelivered
        or replayed message finds the dataset with one (any caption of ours, whatever it plots).
        A dataset our POST just made has none: not asked."""
        pid = made.record["pid"]
        if not made.just_posted and self.find_picture(pid) is not None:
            return "attached already"
        ownable = Ownable(dataset["ownerGroup"], list(dataset.get("accessGroups") or []))
        call = attachment_post(self.catalogue.dataset_api(), pid, thumbnail, ownable)
        self.create_once(f"the thumbnail of {pid}", lambda: self.catalogue.post_attachment(call),
                         lambda: self.find_picture(pid))
        return "attached"

    def find_picture(self, pid: str) -> Optional[dict[str, Any]]:
        found = self.catalogue.attachments(attachment_search(self.catalogue.dataset_api(), pid))
        return next((a for a in found if str(a.get("caption", "")).startswith(THUMBNAIL_CAPTION_PREFIX)), None)

    def create_once(self, what: str, post: typing.Callable[[], Any], find: typing.Callable[[], Any]) -> Any:
        """What post() answers; after an ambiguous POST, what find() finds, else post() again."""
        attempt = 0
        while True:
            try:
                return post()
            except AmbiguousWrite as e:
                if attempt >= self.config.max_retries:
                    raise
                attempt += 1
                delay = retry_delay(self.config, attempt)
                self.catalogue.retries += 1
                logger.warning("%s may have been created (%s); checking in %.1f s before retry %d/%d",
                               what, str(e)[:200], delay, attempt, self.config.max_retries)
                self.wait(delay)
                found = find()
                if found is not None:
                    logger.info("SciCat has %s already although its answer was lost: not created again", what)
                    return found


# =============================================================================
# 6. The loop
# =============================================================================


class LinkLookup:
    """The lookups for one link of a dataset (its proposal, instrument or sample).

    SciCat's failures are kept, not raised: a link SciCat lacks, or cannot tell
    after its retries, never costs the file, which is created without it.
    """

    def __init__(self) -> None:
        self.failure = ""

    def ask(self, question: typing.Callable[[], Any]) -> Any:
        try:
            return question()
        except SciCatError as e:
            self.failure = str(e)
            return None

    def missing(self, job_id: str, what: str, instead: str) -> str:
        """Warn once that the dataset goes without this link; returns the words for the audit line."""
        why = f"SciCat could not tell ({self.failure})" if self.failure else "not in SciCat"
        logger.warning("job %s: %s %s: dataset created without that link, %s", job_id, what, why, instead)
        return f"{what}: {why}"


class LeftUncommitted(Exception):
    """Handling stopped while waiting: the message in hand is left uncommitted, to be read again."""


class StopRequested(LeftUncommitted):
    """SIGINT or SIGTERM came while waiting (or while starting): the message in hand is left uncommitted.

    Its argument is the signal's name."""


class PartitionRevoked(LeftUncommitted):
    """A rebalance took the partition of the message in hand while it waited: its new owner reads it again."""


@dataclass
class Delivery:
    """One Kafka message as the loop got it."""

    payload: bytes
    topic: str = ""
    partition: int = -1
    offset: int = -1
    sent_at: float = 0.0  # Kafka's timestamp, seconds since the epoch; 0 when it has none

    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


def partition_names(partitions: list[Any]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "none"


@dataclass
class Outcome:
    """What became of one finished file."""

    status: str  # "ingested", "duplicate", "skipped" or "failed"
    reason: str = ""
    pid: str = ""
    path: str = ""
    durations: dict[str, float] = field(default_factory=dict)
    # Links the file named that the dataset went without (CatalogueFacts.missing).
    missing_links: list[str] = field(default_factory=list)
    # What became of its picture: attached, attached already, none (and why), failed: why.
    thumbnail: str = ""


def utc_now() -> str:
    return iso_utc(time.time())


def append_line_durably(path: str, record: dict[str, Any]) -> None:
    """Append one JSON line and fsync it, safe against a concurrent --replay."""
    import fcntl

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    while True:
        with open(path, "a", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            # --replay may have moved the file away while we waited for the lock.
            try:
                same_file = os.fstat(f.fileno()).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same_file = False
            if same_file:
                f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())
                return


class Spool:
    """Failed files, one JSON line each, kept until --replay ingests them."""

    FILE_NAME = "failed.jsonl"

    def __init__(self, directory: str, dry_run: bool = False):
        self.path = os.path.join(directory, self.FILE_NAME)
        self.dry_run = dry_run
        # What the spool file holds, by spool_key, and the file's (inode, size) when that was read.
        self._held: set[str] = set()
        self._held_of: tuple[int, int] = (0, 0)

    def add(self, record: dict[str, Any]) -> bool:
        """Whether the record was written: a dry run leaves nothing for a later --replay to act on."""
        if self.dry_run:
            return False
        append_line_durably(self.path, record)
        return True

    @staticmethod
    def read_all(path: str) -> list[dict[str, Any]]:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def add_once(self, record: dict[str, Any]) -> bool:
        """Add the record unless the spool file holds one for the same file already: a message
        read again (after a crash or a rebalance) must not make --replay see a failure twice."""
        key = spool_key(record)
        if key in self.holds() or not self.add(record):
            return False
        self._held.add(key)
        self._held_of = self._file_state()
        return True

    def holds(self) -> set[str]:
        """The keys of the records in the spool file, read again only when the file changed
        (another process added to it, or --replay took it)."""
        state = self._file_state()
        if state != self._held_of:
            try:
                with open(self.path, encoding="utf-8") as f:
                    self._held = {spool_key(json.loads(line)) for line in f if line.strip()}
            except FileNotFoundError:
                self._held = set()
            except (OSError, ValueError) as e:  # a torn last line; its record is read as is by --replay
                logger.warning("cannot read %s to look for a record of the same file: %s", self.path, e)
            self._held_of = state
        return self._held

    def _file_state(self) -> tuple[int, int]:
        try:
            found = os.stat(self.path)
        except FileNotFoundError:
            return (0, 0)
        return (found.st_ino, found.st_size)

    @staticmethod
    def take_all(path: str) -> list[dict[str, Any]]:
        """Move the spool file aside and return its records; new failures start a new file."""
        import fcntl

        taken = f"{path}.replay-{os.getpid()}"
        with open(path, encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            os.rename(path, taken)
            lines = f.read().splitlines()
        os.unlink(taken)
        return [json.loads(line) for line in lines if line.strip()]


# A refused write is told at most this often, however often it is tried again.
WRITE_FAILURE_LOG_INTERVAL_S = 60.0
WRITE_RETRY_MAX_S = 60.0


@dataclass
class WriteFailure:
    path: str
    since: str
    error: str

    def state(self) -> str:
        return f"cannot write {self.path} since {self.since}: {self.error}"


class PatientWriter:
    """Writes to the spool and the audit trail that wait out a disk that refuses them (full,
    read-only, a folder gone), trying again with backoff. Meanwhile the message in hand stays
    uncommitted, /health names what fails, and the log says so once a minute; the ingestor
    never exits over it."""

    def __init__(self, wait: typing.Callable[[float], None]):
        self.wait = wait  # the loop's: keeps the consumer in its group, ends on a stop
        # "spool" or "audit" -> why its last write failed, while it does (read by /health).
        self.failing: dict[str, WriteFailure] = {}
        self.repeats = RepeatLimiter(WRITE_FAILURE_LOG_INTERVAL_S)

    def write(self, what: str, path: str, append: typing.Callable[[], Any]) -> Any:
        """What append returns, once it did not raise OSError."""
        delay = 1.0
        while True:
            try:
                result = append()
            except OSError as e:
                since = self.failing[what].since if what in self.failing else utc_now()
                self.failing[what] = WriteFailure(path, since, str(e.strerror or e))
                self.repeats.log(logging.ERROR, what, "cannot write the %s %s: %s; the message stays uncommitted "
                                 "and is written once the disk takes it", what, path, e)
                self.wait(delay)
                delay = min(2 * delay, WRITE_RETRY_MAX_S)
                continue
            if self.failing.pop(what, None):
                logger.warning("the %s %s is written again", what, path)
            return result

    def state(self, what: str) -> str:
        """Why writing the spool or audit trail fails; "" when it does not."""
        failure = self.failing.get(what)
        return failure.state() if failure else ""


def spool_key(record: dict[str, Any]) -> str:
    """What a spool record is about: the job and file of a finished file, else (a damaged wrdn)
    the message itself."""
    finished = record.get("finished")
    if finished:
        return json.dumps(["file", finished.get("job_id", ""), finished.get("file_name", "")])
    return json.dumps(["message", record.get("message_b64", "")])


def spool_record(delivery: Optional[Delivery], finished: Optional[FinishedWriting],
                 run_start: Optional[RunStart], reason: str, attempts: int, dataset_pid: str = "") -> dict[str, Any]:
    import base64

    return {
        "time": utc_now(),
        "topic": delivery.topic if delivery else "",
        "partition": delivery.partition if delivery else -1,
        "offset": delivery.offset if delivery else -1,
        "message_b64": base64.b64encode(delivery.payload).decode() if delivery else "",
        "finished": dataclasses.asdict(finished) if finished else None,
        "run_start": dataclasses.asdict(run_start) if run_start else None,
        "reason": reason,
        "attempts": attempts,
        # A dataset SciCat has without its file list: --replay completes this one, never makes another.
        "dataset_pid": dataset_pid,
    }


OUTCOMES = ("ingested", "duplicate", "skipped", "failed")
# How often the loop asks Kafka for the partitions' end offsets: the consumer lag,
# and whether Kafka answers at all. Never less often than the statistics line.
KAFKA_CHECK_INTERVAL_S = 10.0
KAFKA_QUERY_TIMEOUT_S = 3.0


@dataclass
class Statistics:
    messages: Counter = field(default_factory=Counter)  # by schema id, "undecodable" too
    outcomes: Counter = field(default_factory=Counter)  # by OUTCOMES
    spooled: int = 0
    scicat_seconds: float = 0.0
    started: float = field(default_factory=time.monotonic)
    # Kept up to date by the loop; read by the health endpoint's thread too.
    consumer_lag: dict[str, int] = field(default_factory=dict)  # by "topic[partition]"
    kafka_ok: bool = False
    kafka_state: str = "not checked yet"
    last_poll: float = field(default_factory=time.monotonic)

    def summary(self, waiting_run_starts: int, jobs: Counter, retries: int, latency: LatencyHistogram) -> str:
        seen = ", ".join(f"{k} {v}" for k, v in sorted(self.messages.items())) or "none"
        files = ", ".join(f"{k} {self.outcomes[k]}" for k in OUTCOMES)
        created = self.outcomes["ingested"] + self.outcomes["duplicate"]
        mean_ms = 1000 * self.scicat_seconds / created if created else 0.0
        lag = f"consumer lag {sum(self.consumer_lag.values())}" if self.kafka_ok else f"Kafka {self.kafka_state}"
        return (
            f"statistics: up {time.monotonic() - self.started:.0f} s; messages: {seen}; files: {files}; "
            f"spooled {self.spooled}; SciCat retries {retries}, {latency.count} requests {latency.mean_ms():.0f} ms "
            f"mean, {mean_ms:.0f} ms per file; {lag}; run starts waiting {waiting_run_starts}; writer jobs: "
            + ", ".join(f"{event.replace('_', ' ')} {jobs[event]}" for event in JOB_EVENTS)
        )

    def files_summary(self, dry_run: bool) -> str:
        """What became of the finished files, for people: '3 files: 2 would be created, 1 already in SciCat'."""
        labels = {"ingested": "would be created" if dry_run else "created", "duplicate": "already in SciCat",
                  "skipped": "skipped (the writer reported an error)",
                  "failed": "failed" if dry_run else "failed (spooled for --replay)"}
        total = sum(self.outcomes[k] for k in OUTCOMES)
        parts = [f"{self.outcomes[k]} {labels[k]}" for k in OUTCOMES if self.outcomes[k]]
        return f"{total} file{'' if total == 1 else 's'}" + (": " + ", ".join(parts) if parts else "")


def tell(text: str) -> None:
    """The one line saying what a command did: logged, and printed too when the log does not go to stdout."""
    logger.info(text)
    if not any(getattr(handler, "stream", None) is sys.stdout for handler in logger.handlers):
        print(text, flush=True)


def field_report(path: str, selected: SelectedSettings, built: BuiltDataset) -> list[str]:
    """--dry-run and --check-config --ingest-file: each field of the file's dataset, its value
    and where it came from, so that templates can be written against a real file."""
    lines = [f"fields of the dataset for {path}: settings of {selected.section} ({selected.why})"]
    for name in sorted(built.sources, key=str.casefold):
        if name == "scientificMetadata":
            shown = f"{len(built.sources[name].value)} entries"
        else:
            shown = json.dumps(built.sources[name].value)
            shown = shown if len(shown) <= 80 else shown[:79] + "\u2026"
        unfilled = f" (template {built.unfilled[name]})" if name in built.unfilled else ""
        lines.append(f"  {name:<22} {shown}  <- {built.sources[name].describe()}{unfilled}")
    for name in sorted(set(built.unfilled) - set(built.sources)):
        lines.append(f"  {name:<22} (left out)  <- template {built.unfilled[name]}")
    return lines


NEXUS_EXTENSIONS = (".hdf", ".hdf5", ".h5", ".nxs", ".nx5", ".nexus")


def nexus_files_under(path: str) -> list[str]:
    """The path itself if it is a file, else the NeXus files below the folder, sorted.
    Hidden files are left out: writers keep a file there until it is complete."""
    if not os.path.isdir(path):
        return [os.path.abspath(path)]
    found = []
    for folder, subfolders, names in os.walk(path):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        found += [os.path.join(os.path.abspath(folder), n) for n in sorted(names)
                  if n.lower().endswith(NEXUS_EXTENSIONS) and not n.startswith(".")]
    return found


# Fixed forever: job ids of files ingested by --ingest-file that carry none.
OFFLINE_JOB_NAMESPACE = uuid.UUID("0d4a5e36-2f1b-4c8e-b1a7-6e0f9c3d2a57")


def offline_job_id(path: str, files: FilesConfig) -> str:
    """The job id a file given to --ingest-file goes by: the one the file writer stored in it
    (entry_identifier_uuid, so a file the loop ingested already is found), else one made from
    the real path, the same at each run."""
    try:
        real = check_allowed(map_path(path, files.path_map), files.allowed_roots)
        # Never opened unless a regular file: a FIFO would block open(2) for good.
        stored = read_nexus_metadata(real).text("entry_identifier_uuid") if os.path.isfile(real) else ""
    except FileRefused:
        stored = ""  # ingest() says what is wrong with the file
    return stored or str(uuid.uuid5(OFFLINE_JOB_NAMESPACE, os.path.realpath(path)))


# Offsets of messages that touch no file (heartbeats, run starts, junk) are committed
# at most this often: committing each of a flood of heartbeats would keep the broker
# busy answering commits instead of fetches. Read again after a crash, they change
# nothing outside this process.
PASSED_OVER_COMMIT_INTERVAL_S = 1.0


class Ingestor:
    """Consumes the command topic and turns every finished file into a dataset."""

    def __init__(self, config: Config, catalogue: Optional[DryRunCatalogue] = None, print_fields: bool = False):
        self.config = config
        # A dry run logs each dataset's field report; --check-config --ingest-file prints it.
        self.show_field = tell if print_fields else logger.info
        self.catalogue: Union[SciCatClient, DryRunCatalogue] = (
            (catalogue or DryRunCatalogue(config.scicat)) if config.options.dry_run
            else SciCatClient(config.scicat, wait=self.wait, stay_in_group=self.pass_time)
        )
        self.publisher = Publisher(self.catalogue, config.scicat, config.options.check_by_job_id, self.wait)
        options = config.options
        # In memory until run() opens its file: --replay and --ingest-file need none.
        self.run_starts = RunStartStore(options.run_start_cache_size, options.run_start_max_age_s)
        self.watchdog = JobWatchdog(options.job_silence_s, options.run_start_cache_size, self.report_job)
        self.spool = Spool(config.spool.directory, dry_run=config.options.dry_run)
        self.writer = PatientWriter(self.wait)
        self.reader = FileReader(config, self.wait)
        # The message being handled, and whether a rebalance took its partition meanwhile.
        self.in_hand: Optional[Delivery] = None
        self.in_hand_revoked = False
        # Handled messages not committed yet: (topic, partition) -> the offset to commit. Those
        # whose commit failed, and those touching no file until the next once-a-second commit.
        self.uncommitted: dict[tuple[str, int], int] = {}
        # (topic, partition) -> the offset last committed: a floor that has not moved is not committed again.
        self.committed: dict[tuple[str, int], int] = {}
        self.next_commit = 0.0
        self.stats = Statistics()
        self.repeats = RepeatLimiter()
        self.stop_requested = False
        self.log_reopening_requested = False
        self.stop_signal = ""
        self.consumer: Any = None
        self.next_kafka_check = 0.0
        self.next_statistics = time.monotonic() + config.options.stats_interval_s

    def wait(self, seconds: float) -> None:
        """Let time pass without leaving the consumer group.

        The partitions are paused and polled, so Kafka sees a live member and
        no rebalance starts however long SciCat or a file takes. One that other
        members start (joining or leaving) is served here; if it takes the
        partition of the message in hand, the wait ends with PartitionRevoked.
        """
        self.pass_time(seconds)
        if self.stop_requested:
            raise StopRequested(self.stop_signal)
        if self.in_hand_revoked:
            raise PartitionRevoked()

    def pass_time(self, seconds: float) -> None:
        """wait() without raising: ends early on a stop request or a revocation. While a SciCat
        request is in flight, so that it runs to its end (or its deadline) before we act on them."""
        deadline = time.monotonic() + seconds
        if self.consumer is None:  # --replay: no Kafka
            while not self.stop_requested and time.monotonic() < deadline:
                time.sleep(min(0.2, deadline - time.monotonic()))
        else:
            from confluent_kafka import KafkaException, TopicPartition

            paused = self.consumer.assignment()
            self.consumer.pause(paused)
            try:
                while (not self.stop_requested and not self.in_hand_revoked
                       and (left := deadline - time.monotonic()) > 0):
                    msg = self.consumer.poll(min(left, 0.5))
                    self.tick()
                    if msg is not None and not msg.error():
                        # A rebalance handed us a partition that is not paused: put the message back.
                        tp = TopicPartition(msg.topic(), msg.partition(), msg.offset())
                        self.consumer.seek(tp)
                        self.consumer.pause([tp])
                        paused.append(tp)
            except KafkaException as e:
                self.repeats.log(logging.WARNING, f"wait {e}", "Kafka while waiting: %s", e)
            finally:
                # Those a rebalance took too: a partition keeps its pause through a
                # revocation and would come back paused, never to be read again.
                self.consumer.resume(paused)

    # -- one finished file -----------------------------------------------------

    def read_file(self, finished: FinishedWriting, run_start: Optional[RunStart],
                  durations: dict[str, float]) -> FileReading:
        """The file's metadata, description and picture, and its instrument's dataset settings,
        waiting up to files.wait_s for the file to be readable."""
        files = self.config.files
        path = check_allowed(map_path(finished.file_name, files.path_map), files.allowed_roots)
        deadline = time.monotonic() + files.wait_s
        delay = 0.5
        while True:
            try:
                reading = self.reader.read(path, finished, run_start)
                durations["metadata_s"], durations["checksum_s"] = reading.metadata_s, reading.checksum_s
                if self.config.thumbnail.enabled:
                    durations["thumbnail_s"] = reading.thumbnail_s
                return reading
            except FileNotReady as e:
                if time.monotonic() + delay > deadline:
                    raise FileRefused(f"{e} (waited {files.wait_s:.0f} s)") from None
                logger.info("%s; waiting for it", e)
                self.wait(delay)
                delay = min(2 * delay, 5.0)

    def look_up(self, run_start: Optional[RunStart], finished: FinishedWriting, nexus: NexusMetadata,
                settings: DatasetDefaults) -> CatalogueFacts:
        """Ask SciCat (cached) for the proposal, instrument and sample the file belongs to.

        What SciCat does not have, or cannot tell after its retries, never costs the file:
        the dataset goes without that link, with one warning naming it.
        """
        catalogue = self.catalogue
        facts = CatalogueFacts()
        if isinstance(catalogue, DryRunCatalogue) and not catalogue.asks:
            return facts  # not asked, so nothing to warn of: its login said so once
        proposal_named = proposal_id(run_start, finished, nexus, settings).value
        if proposal_named:
            lookup = LinkLookup()
            facts.proposal = lookup.ask(lambda: catalogue.find_proposal(proposal_named))
            if facts.proposal is None:
                facts.missing.append(lookup.missing(finished.job_id, f"proposal {proposal_named}",
                                                    "owned as the configuration says"))
        ids = instrument_id_candidates(run_start, finished, settings)
        instrument = instrument_name(run_start, finished, nexus, settings).value
        lookup = LinkLookup()  # by id first, then by name: one warning, naming all that was tried
        facts.instrument_id = next((i for i in ids if lookup.ask(lambda: catalogue.instrument_exists(i))), "")
        if not facts.instrument_id and instrument:
            facts.instrument_id = lookup.ask(lambda: catalogue.find_instrument_by_name(instrument)) or ""
            if facts.instrument_id and ids:  # linked all the same; the configured id wants fixing
                logger.info("job %s: instrument id %s is not in SciCat; linked by the name %s instead",
                            finished.job_id, " / ".join(ids), instrument)
        if not facts.instrument_id and (ids or instrument):
            tried = [f"id {i}" for i in ids] + ([f"name {instrument}"] if instrument else [])
            facts.missing.append(lookup.missing(finished.job_id, f"instrument {' / '.join(tried)}",
                                                "named in creationLocation only"))
        samples = sample_candidates(run_start, finished, nexus)
        lookup = LinkLookup()
        facts.sample_id = next((s for s in samples if lookup.ask(lambda: catalogue.sample_exists(s))), "")
        if samples and not facts.sample_id:
            facts.missing.append(lookup.missing(finished.job_id, f"sample {' / '.join(samples)}", "without sampleId"))
        return facts

    def ingest(self, finished: FinishedWriting, run_start: Optional[RunStart], known_pid: str = "") -> Outcome:
        """Ingest the file a wrdn announces; every failure becomes an Outcome. known_pid: the
        dataset a replayed record's first attempt made, to be completed."""
        if finished.error_encountered:
            return Outcome("skipped", f"the file writer reported an error: {finished.message or 'no message'}")
        durations: dict[str, float] = {}
        started = time.monotonic()
        try:
            reading = self.read_file(finished, run_start, durations)
            nexus, data_file, selected = reading.nexus, reading.data_file, reading.selected
            facts = self.look_up(run_start, finished, nexus, selected.settings)
            built = build_dataset(run_start, finished, nexus, data_file, selected.settings, facts)
            for name, why in built.unfilled.items():
                logger.debug("job %s: %s: its template %s; its built-in rule applies", finished.job_id, name, why)
            if self.config.options.dry_run:
                for line in field_report(data_file.path, selected, built):
                    self.show_field(line)
            dataset = built.dataset
            made = self.publisher.publish(dataset, data_file, known_pid)
            status, pid = made.status, made.record["pid"]
            thumbnail = self.attach_picture(finished.job_id, made, dataset, reading.picture)
        except DatasetWithoutFiles as e:
            return Outcome("failed", str(e), pid=e.pid, durations=durations)
        except (FileRefused, IncompleteDataset, SciCatError) as e:
            return Outcome("failed", str(e), durations=durations)
        except LeftUncommitted:
            raise
        except Exception as e:  # a bug must cost one file (spooled), not the daemon
            logger.exception("unexpected error ingesting job %s", finished.job_id)
            return Outcome("failed", f"unexpected error: {type(e).__name__}: {e}", durations=durations)
        durations["scicat_s"] = time.monotonic() - started - sum(durations.values())
        self.stats.scicat_seconds += durations["scicat_s"]
        logger.info(
            "%s job %s: file %s, proposal %s, dataset %r, %d bytes, 1 file, pid %s",
            "ingested" if status == "ingested" else "already in SciCat:", finished.job_id, data_file.path,
            dataset.get("proposalId", "-"), dataset["datasetName"], data_file.size, pid,
        )
        return Outcome(status, pid=pid, path=data_file.path, durations=durations, missing_links=facts.missing,
                       thumbnail=thumbnail)

    def attach_picture(self, job_id: str, made: DatasetMade, dataset: dict[str, Any],
                       picture: ThumbnailOutcome) -> str:
        """Attach the file's picture to its dataset; what became of it, for the audit. A picture
        that failed costs a warning, never the dataset, which stays as it is."""
        if not self.config.thumbnail.enabled:
            return ""
        problem, pid = picture.problem, made.record["pid"]
        if picture.thumbnail is not None:
            try:
                return self.publisher.attach(made, dataset, picture.thumbnail)
            except SciCatError as e:
                problem = f"SciCat refused it: {e}"[:300]
        if problem:
            logger.warning("job %s: dataset %s goes without a thumbnail: %s", job_id, pid, problem)
            return f"failed: {problem}"
        logger.debug("job %s: no thumbnail for dataset %s: the file has no NXdata with a signal", job_id, pid)
        return "none: no NXdata with a signal"

    def record(self, outcome: Outcome, finished: FinishedWriting, run_start: Optional[RunStart],
               delivery: Optional[Delivery], attempts: int = 1) -> None:
        """Count, log, audit and (for what did not make it into SciCat) spool an outcome."""
        self.stats.outcomes[outcome.status] += 1
        if outcome.status in ("skipped", "failed"):
            log = logger.warning if outcome.status == "skipped" else logger.error
            spooled = self.spool_once(spool_record(delivery, finished, run_start, outcome.reason, attempts,
                                                   outcome.pid))
            log("%s job %s, file %s: %s; %s", "NOT ingesting" if outcome.status == "skipped"
                else "FAILED to ingest", finished.job_id, finished.file_name, outcome.reason,
                "spooled for --replay" if spooled
                else "not spooled: dry run" if self.spool.dry_run
                else "in the spool already (its message came again)")
        more = {"thumbnail": outcome.thumbnail} if outcome.thumbnail else {}
        self.audit(finished.job_id, outcome.path or finished.file_name, outcome.status, outcome.reason,
                   pid=outcome.pid, missing_links=outcome.missing_links, **more,
                   durations_s={k: round(v, 6) for k, v in outcome.durations.items()})

    def spool_once(self, record: dict[str, Any]) -> bool:
        """Spool a record unless the spool holds one for the same file (or damaged message) already;
        a disk that refuses it is waited out."""
        if not self.writer.write("spool", self.spool.path, lambda: self.spool.add_once(record)):
            return False
        self.stats.spooled += 1
        return True

    def audit(self, job_id: str, file_name: str, outcome: str, reason: str, **more: Any) -> None:
        if self.config.audit.file:
            line = {"time": utc_now(), "job_id": job_id, "file": file_name, "outcome": outcome, "reason": reason,
                    **more}
            self.writer.write("audit", self.config.audit.file, lambda: append_line_durably(self.config.audit.file, line))

    def report_job(self, event: str, job_id: str, file_name: str, why: str) -> None:
        """The watchdog's report: once per job, in the log and the audit trail."""
        logger.warning("file writer job %s (%s) %s: %s", job_id, file_name or "file unknown",
                       event.replace("_", " "), why)
        self.audit(job_id, file_name, f"job_{event}", why)

    # -- one Kafka message -----------------------------------------------------

    def handle(self, delivery: Delivery) -> bool:
        """Act on one message; returns once it is safe to commit its offset.

        True for a finished file's message (a damaged one too, once spooled),
        False for the others: read again after a crash, they change nothing
        outside this process. A message that fails in a way nothing foresaw is
        spooled as it came and committed: read again, it would fail again, at
        every restart, and hold up every file after it."""
        try:
            return self.handle_message(delivery)
        except LeftUncommitted:
            raise
        except Exception as e:
            logger.exception("unexpected error handling the message at %s; spooled for --replay", delivery.where())
            self.spool_once(spool_record(delivery, None, None, f"unexpected error: {type(e).__name__}: {e}", 1))
            return True

    def handle_message(self, delivery: Delivery) -> bool:
        started = time.monotonic()
        try:
            message = decode_message(delivery.payload)
        except UndecodableMessage as e:
            self.stats.messages["undecodable"] += 1
            logger.warning("passing over an undecodable message at %s: %s; starts %s",
                           delivery.where(), e, preview(delivery.payload))
            if delivery.payload[4:8] == SCHEMA_FINISHED_WRITING.encode():
                # A damaged wrdn may be the only news of a file: keep it for a human.
                self.spool_once(spool_record(delivery, None, None, str(e), 1))
                return True
            return False
        decode_s = time.monotonic() - started
        if isinstance(message, (PassedOver, JobAnswer, Heartbeat)):
            schema = message.schema if isinstance(message, PassedOver) else delivery.payload[4:8].decode()
            self.stats.messages[schema] += 1
            if isinstance(message, JobAnswer):
                self.watchdog.answered(message)
                if message.start_failed and message.job_id:  # no wrdn will come for it
                    self.run_starts.finish(message.job_id)
            elif isinstance(message, Heartbeat):
                self.watchdog.heard(message.job_id, message.file_name)
            logger.debug("passing over a %s message at %s", schema, delivery.where())
            return False
        if message.metadata_error:
            logger.warning("job %s at %s: %s; going on without it", message.job_id, delivery.where(),
                           message.metadata_error)
        if isinstance(message, RunStart):
            self.stats.messages[SCHEMA_RUN_START] += 1
            self.watchdog.started(message)
            # On disk before its offset is committed (the commit comes after handle() returns).
            if self.run_starts.remember(message, delivery.sent_at):
                logger.info("run start: job %s, file %s, run %r", message.job_id, message.filename,
                            message.run_name)
            else:  # the echo on the control topic of the pool's, or one read again
                logger.debug("run start of job %s at %s: known already", message.job_id, delivery.where())
            return False
        self.stats.messages[SCHEMA_FINISHED_WRITING] += 1
        run_start = self.run_starts.get(message.job_id)
        if run_start is None:
            logger.info("finished writing job %s without its run start: using the file's own metadata",
                        message.job_id)
        outcome = self.ingest(message, run_start)
        outcome.durations["decode_s"] = decode_s
        self.record(outcome, message, run_start, delivery)
        # Only now: a wait abandoned above (stop, rebalance) keeps the run start, for the wrdn read again.
        self.run_starts.finish(message.job_id)
        self.watchdog.finished(message.job_id)
        return True

    # -- the consumer ----------------------------------------------------------

    def consumer_settings(self) -> dict[str, Any]:
        kafka = self.config.kafka
        return {
            "bootstrap.servers": ",".join(kafka.bootstrap_servers),
            "group.id": kafka.group_id,
            "auto.offset.reset": kafka.auto_offset_reset,
            # Committed by hand once a message is handled: at least once, never lost.
            "enable.auto.commit": False,
            "error_cb": self._on_kafka_error,
            # librdkafka's own log lines go where ours go, not to a bare stderr.
            "logger": self.kafka_logger(),
            **kafka.consumer,
        }

    def _on_kafka_error(self, error: Any) -> None:
        self.repeats.log(logging.WARNING, f"error {error.code()}", "Kafka: %s", error)

    def kafka_logger(self) -> logging.Logger:
        kafka_logger = logging.getLogger("scicat_ingestor.kafka")
        if not any(isinstance(f, RepeatFilter) for f in kafka_logger.filters):
            kafka_logger.addFilter(RepeatFilter(self.repeats))
        return kafka_logger

    def commit_handled(self, partitions: Optional[set[tuple[str, int]]] = None) -> None:
        """Commit the offsets of handled messages (on these partitions) not committed yet. A run start
        still waiting for its wrdn does not hold them back: it is in the run start store already."""
        from confluent_kafka import KafkaException, TopicPartition

        offsets = [TopicPartition(*key, offset) for key, offset in self.uncommitted.items()
                   if (partitions is None or key in partitions) and offset != self.committed.get(key)]
        if partitions is None:
            self.next_commit = time.monotonic() + PASSED_OVER_COMMIT_INTERVAL_S
        if not offsets:
            return
        try:
            committed = self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as e:
            # Kept for the next commit or the revocation; should that fail too, the message
            # comes again, here or elsewhere, and publish() makes that harmless.
            logger.warning("could not commit %s: %s", partition_names(offsets), e)
            return
        for tp in committed:
            if tp.error:
                logger.warning("could not commit %s[%d]@%d: %s", tp.topic, tp.partition, tp.offset, tp.error)
            else:
                key = (tp.topic, tp.partition)
                self.committed[key] = tp.offset
                if self.uncommitted.get(key) == tp.offset:  # else a newer one came meanwhile
                    del self.uncommitted[key]

    def let_go(self, partitions: list[Any]) -> None:
        """These partitions are no longer ours: abandon the message in hand if it is on one of them."""
        gone = {(tp.topic, tp.partition) for tp in partitions}
        if self.in_hand is not None and (self.in_hand.topic, self.in_hand.partition) in gone:
            self.in_hand_revoked = True
        for key in gone:
            self.uncommitted.pop(key, None)
            self.committed.pop(key, None)
        # Their run starts stay: unkeyed, a job's wrdn may come to us on a partition we keep.

    def on_assign(self, _consumer: Any, partitions: list[Any]) -> None:
        logger.info("partitions assigned: %s", partition_names(partitions))

    def on_revoke(self, _consumer: Any, partitions: list[Any]) -> None:
        """A rebalance takes partitions away: commit what is handled on them while they are still ours."""
        logger.info("partitions revoked: %s", partition_names(partitions))
        self.commit_handled({(tp.topic, tp.partition) for tp in partitions})
        self.let_go(partitions)

    def on_lost(self, _consumer: Any, partitions: list[Any]) -> None:
        """The group went on without us (no heartbeat within session.timeout.ms, or no poll within
        max.poll.interval.ms): too late to commit."""
        logger.warning("partitions lost: %s; their uncommitted messages go to their new owners",
                       partition_names(partitions))
        self.let_go(partitions)

    def request_log_reopening(self, _signum: int, _frame: Any = None) -> None:
        # Done between two polls (tick), not inside the handler: a line may be half written.
        self.log_reopening_requested = True

    def request_stop(self, signum: int, _frame: Any = None) -> None:
        self.stop_signal = signal.Signals(signum).name
        logger.info("%s received: finishing the current message, then stopping", self.stop_signal)
        self.stop_requested = True

    def log_statistics(self) -> None:
        logger.info(self.stats.summary(len(self.run_starts), self.watchdog.counts, self.catalogue.retries,
                                       self.catalogue.latency))

    def tick(self) -> None:
        """The chores between two polls: note the loop is alive, check Kafka, log the statistics."""
        now = self.stats.last_poll = time.monotonic()
        self.reader.forget_ended()
        if self.log_reopening_requested:
            self.log_reopening_requested = False
            logger.info("SIGHUP received: log files reopened (%s)", ", ".join(reopen_log_files()) or "none")
        self.run_starts.forget_expired()
        self.watchdog.check()
        if now >= self.next_kafka_check:
            self.check_kafka()
            self.next_kafka_check = time.monotonic() + min(KAFKA_CHECK_INTERVAL_S,
                                                           self.config.options.stats_interval_s)
        if now >= self.next_statistics:
            self.log_statistics()
            self.next_statistics = time.monotonic() + self.config.options.stats_interval_s

    def check_kafka(self) -> None:
        """Whether Kafka answers, and the consumer lag: each partition's end offset minus our position."""
        from confluent_kafka import KafkaException

        kafka = self.config.kafka
        try:
            self.consumer.list_topics(kafka.topics[0], timeout=KAFKA_QUERY_TIMEOUT_S)
            positions = self.consumer.position(self.consumer.assignment())
            offsets = {(tp.topic, tp.partition): tp.offset for tp in positions}
            not_read_yet = [tp for tp in positions if tp.offset < 0]
            if not_read_yet:  # nothing consumed since the assignment: the group's committed offset
                for tp in self.consumer.committed(not_read_yet, timeout=KAFKA_QUERY_TIMEOUT_S):
                    offsets[(tp.topic, tp.partition)] = tp.offset
            lag = {}
            for tp in positions:
                low, high = self.consumer.get_watermark_offsets(tp, timeout=KAFKA_QUERY_TIMEOUT_S, cached=False)
                offset = offsets[(tp.topic, tp.partition)]
                if offset < 0:  # nothing committed either: where auto_offset_reset starts
                    offset = low if kafka.auto_offset_reset == "earliest" else high
                lag[f"{tp.topic}[{tp.partition}]"] = max(high - offset, 0)
        except KafkaException as e:
            self.stats.kafka_ok, self.stats.kafka_state = False, f"unreachable: {e.args[0].str()}"
            return
        self.stats.consumer_lag = lag
        self.stats.kafka_ok, self.stats.kafka_state = True, f"up, partitions assigned: {len(lag)}"

    def run(self) -> None:
        """Poll, handle, commit, until asked to stop."""
        from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError

        kafka = self.config.kafka
        try:
            self.catalogue.connect()  # a wrong password should stop us at start, not at the first file
        except SciCatError as e:
            if e.status not in (None, *TRANSIENT_STATUS):
                raise
            logger.warning("SciCat is not reachable at start (%s); going on, it is tried again for each file", e)
        self.run_starts.open(self.config.options.run_start_state_file)
        for run_start in self.run_starts.waiting():
            self.watchdog.watch(run_start.job_id, run_start.filename)
        self.consumer = Consumer(self.consumer_settings())
        self.consumer.subscribe(kafka.topics, on_assign=self.on_assign, on_revoke=self.on_revoke,
                                on_lost=self.on_lost)
        logger.info("consuming %s from %s as group %s", ", ".join(kafka.topics),
                    ",".join(kafka.bootstrap_servers), kafka.group_id)
        try:
            while not self.stop_requested:
                msg = self.consumer.poll(kafka.poll_timeout_s)
                self.tick()
                if msg is None:
                    self.commit_handled()  # a quiet moment: catch up
                    continue
                if msg.error():
                    if msg.error().code() != KafkaError._PARTITION_EOF:
                        self.repeats.log(logging.WARNING, f"error {msg.error().code()}", "Kafka: %s", msg.error())
                    continue
                kind, sent_ms = msg.timestamp()
                delivery = Delivery(msg.value() or b"", msg.topic(), msg.partition(), msg.offset(),
                                    sent_ms / 1000 if kind != TIMESTAMP_NOT_AVAILABLE else 0.0)
                self.in_hand, self.in_hand_revoked = delivery, False
                try:
                    touched_file = self.handle(delivery)
                except PartitionRevoked:
                    # Finishing it now could race its new owner into a second dataset.
                    logger.warning("a rebalance took %s while its message waited: left uncommitted for the "
                                   "partition's new owner", delivery.where())
                    continue
                finally:
                    self.in_hand = None
                self.uncommitted[(delivery.topic, delivery.partition)] = delivery.offset + 1
                if touched_file or time.monotonic() >= self.next_commit:
                    self.commit_handled()
        except StopRequested:
            logger.info("stopped while waiting: the message in hand will be read again at the next start")
        finally:
            self.check_kafka()  # the lag as we leave
            self.log_statistics()
            self.commit_handled()
            self.consumer.close()
            self.reader.close()
            self.run_starts.close()
            logger.info("consumer closed; stopped")

    def ingest_files(self, paths: list[str]) -> int:
        """--ingest-file: ingest files (or the NeXus files under folders) without Kafka,
        as if their wrdn had come; 0 when none failed."""
        missing = [path for path in paths if not os.path.exists(path)]
        if missing:
            logger.error("--ingest-file: no such file or folder: %s", ", ".join(missing))
            return 2
        files = [found for path in paths for found in nexus_files_under(path)]
        logger.info("ingesting %d files given on the command line", len(files))
        failed = 0
        try:
            self.catalogue.connect()
            for path in files:
                finished = FinishedWriting(job_id=offline_job_id(path, self.config.files), file_name=path)
                outcome = self.ingest(finished, None)
                self.record(outcome, finished, None, None)
                failed += outcome.status == "failed"
        except StopRequested:
            logger.info("stopped: the files not yet ingested are ingested by running the same command again")
            return 1
        finally:
            self.reader.close()
            self.log_statistics()
            tell(f"--ingest-file: {self.stats.files_summary(self.config.options.dry_run)}")
        return 1 if failed else 0

    def replay(self, spool_file: str) -> int:
        """Ingest the spooled records again; keep those that still fail. 0 when none is left."""
        import base64

        path = spool_file or self.spool.path
        nothing = f"--replay: nothing to replay, {path} does not exist"
        if not os.path.exists(path):
            tell(nothing)
            return 0
        # Before the records are taken: a login that fails or is stopped must leave them in the spool.
        self.catalogue.connect()
        try:
            # A dry run leaves the spool as it is: its records were not really ingested.
            records = Spool.read_all(path) if self.config.options.dry_run else Spool.take_all(path)
        except FileNotFoundError:  # another replay took them meanwhile
            tell(nothing)
            return 0
        logger.info("replaying %d spooled records from %s", len(records), path)
        remaining = 0
        for record in records:
            try:
                finished = (FinishedWriting(**record["finished"]) if record.get("finished")
                            else decode_message(base64.b64decode(record.get("message_b64", ""))))
                if not isinstance(finished, FinishedWriting):  # spooled by an unexpected error: no file to ingest
                    logger.info("a spooled %s message names no file to ingest; dropped from the spool",
                                type(finished).__name__)
                    continue
                run_start = RunStart(**record["run_start"]) if record.get("run_start") else None
                outcome = self.ingest(finished, run_start, record.get("dataset_pid", ""))
            except StopRequested:
                outcome = Outcome("failed", "replay stopped before this record")
            except Exception as e:  # a record a human must look at; keep it as it is
                logger.error("cannot replay a record from %s: %s", path, e)
                if not self.config.options.dry_run:
                    self.writer.write("spool", path, lambda: append_line_durably(path, record))
                remaining += 1
                continue
            if outcome.status in ("ingested", "duplicate"):
                self.record(outcome, finished, run_start, None)
            else:
                remaining += 1
                # Failing again before reaching the dataset must not forget which dataset waits for its files.
                outcome.pid = outcome.pid or record.get("dataset_pid", "")
                delivery = Delivery(base64.b64decode(record.get("message_b64", "")), record.get("topic", ""),
                                    record.get("partition", -1), record.get("offset", -1))
                self.record(outcome, finished, run_start, delivery, attempts=record.get("attempts", 1) + 1)
        self.reader.close()
        done = len(records) - remaining
        if self.config.options.dry_run:
            tell(f"--replay (dry run, the spool left as it was): {len(records)} records: {done} would be "
                 f"ingested, {remaining} would still fail")
        else:
            tell(f"--replay: {len(records)} records: {done} ingested, {remaining} still failing "
                 f"(in {self.spool.path})")
        return 1 if remaining else 0


# =============================================================================
# 6b. Health and metrics, beside the loop
# =============================================================================
#
# With health.port set, an HTTP server in a daemon thread answers GET /health
# and GET /metrics. It only reads what the loop keeps in its Statistics, and
# asks SciCat's own /health on a connection of its own: it never holds up the
# loop, and the loop never waits for it.


@dataclass
class PartHealth:
    ok: bool
    state: str


def folder_writable(folder: str) -> bool:
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def spool_health(spool: Spool, failing: str) -> PartHealth:
    try:
        with open(spool.path, "rb") as f:
            records = f.read().count(b"\n")
        waiting = f"records waiting for --replay: {records}" if records else "empty"
    except FileNotFoundError:
        waiting = "empty"
    except OSError as e:
        waiting = f"cannot be read: {e.strerror}"
    if failing:
        return PartHealth(False, f"{failing}; {waiting}")
    if not folder_writable(os.path.dirname(spool.path)):
        return PartHealth(False, f"{os.path.dirname(spool.path)} is not writable; {waiting}")
    return PartHealth(True, waiting)


def loop_health(stats: Statistics, kafka: KafkaConfig) -> PartHealth:
    """Stalled when it has not polled for longer than Kafka lets a group member be silent."""
    limit_s = float(kafka.consumer.get("max.poll.interval.ms", 300000)) / 1000
    silent_s = time.monotonic() - stats.last_poll
    if silent_s > limit_s:
        return PartHealth(False, f"stalled: no poll for {silent_s:.0f} s (max.poll.interval.ms is {limit_s:.0f} s)")
    return PartHealth(True, f"polled {silent_s:.1f} s ago")


class SciCatProbe:
    """SciCat's health for GET /health: asked at most once at a time, the answer reused for
    HEALTH_PROBE_CACHE_S. A stale answer is renewed in a thread of its own while the requests
    meanwhile get the last one, so /health answers at once even while SciCat takes seconds."""

    def __init__(self, config: SciCatConfig):
        self.config = config
        self._asking = threading.Lock()
        self._answer: Optional[PartHealth] = None
        self._answered_at = -math.inf

    def health(self) -> PartHealth:
        if self._answer is None:  # the very first: nothing to show but what SciCat says
            with self._asking:
                if self._answer is None:
                    self._ask()
        elif time.monotonic() - self._answered_at >= HEALTH_PROBE_CACHE_S and self._asking.acquire(blocking=False):
            threading.Thread(target=self._ask_and_release, name="health-scicat", daemon=True).start()
        assert self._answer is not None
        return self._answer

    def _ask(self) -> None:
        self._answer = PartHealth(*probe_scicat(self.config))
        self._answered_at = time.monotonic()

    def _ask_and_release(self) -> None:
        try:
            self._ask()
        finally:
            self._asking.release()


def health_report(ingestor: "Ingestor", scicat: SciCatProbe) -> dict[str, Any]:
    """The state of each part; "ok" only when every part is."""
    config = ingestor.config
    parts = {
        "kafka": PartHealth(ingestor.stats.kafka_ok, ingestor.stats.kafka_state),
        "scicat": PartHealth(True, "not used: dry run") if config.options.dry_run else scicat.health(),
        "spool": spool_health(ingestor.spool, ingestor.writer.state("spool")),
        "audit": PartHealth(False, ingestor.writer.state("audit")) if ingestor.writer.state("audit")
        else PartHealth(True, f"writing {config.audit.file}" if config.audit.file else "off"),
        "loop": loop_health(ingestor.stats, config.kafka),
        "files": ingestor.reader.health(),
    }
    return {
        "status": "ok" if all(part.ok for part in parts.values()) else "unhealthy",
        **{name: dataclasses.asdict(part) for name, part in parts.items()},
        "consumer_lag": dict(ingestor.stats.consumer_lag),
        "version": __version__,
    }


class MetricsCollector:
    """The loop's Statistics as Prometheus metrics, read at each scrape."""

    def __init__(self, ingestor: "Ingestor"):
        self.ingestor = ingestor

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        stats, catalogue = self.ingestor.stats, self.ingestor.catalogue
        messages = CounterMetricFamily("scicat_ingestor_messages", "Kafka messages seen, by schema id",
                                       labels=["type"])
        for kind, count in dict(stats.messages).items():  # a copy: the loop may add a kind meanwhile
            messages.add_metric([kind], count)
        yield messages
        files = CounterMetricFamily("scicat_ingestor_files", "Finished files handled, by outcome", labels=["outcome"])
        for outcome in OUTCOMES:
            files.add_metric([outcome], stats.outcomes[outcome])
        yield files
        yield CounterMetricFamily("scicat_ingestor_spooled", "Records written to the spool", value=stats.spooled)
        yield CounterMetricFamily("scicat_ingestor_scicat_retries", "SciCat requests retried",
                                  value=catalogue.retries)
        counts = list(catalogue.latency.counts)  # one snapshot, so the buckets agree with each other
        cumulative = [sum(counts[:i + 1]) for i in range(len(counts))]
        yield HistogramMetricFamily(
            "scicat_ingestor_scicat_request_seconds", "How long SciCat took to answer a request",
            buckets=[*zip([*map(str, LATENCY_BUCKETS_S), "+Inf"], cumulative)],
            sum_value=catalogue.latency.total_s,
        )
        lag = GaugeMetricFamily("scicat_ingestor_consumer_lag", "Messages not yet handled: end offset minus position",
                                labels=["partition"])
        for partition, count in dict(stats.consumer_lag).items():
            lag.add_metric([partition], count)
        yield lag
        yield GaugeMetricFamily("scicat_ingestor_kafka_up", "1 when Kafka answered the last check",
                                value=int(stats.kafka_ok))
        yield GaugeMetricFamily("scicat_ingestor_run_starts_waiting", "Run starts waiting for their wrdn",
                                value=len(self.ingestor.run_starts))
        jobs = CounterMetricFamily("scicat_ingestor_writer_jobs",
                                   "The file writer's jobs: started, finished, failed to start, gone silent",
                                   labels=["event"])
        counts = dict(self.ingestor.watchdog.counts)
        for event in JOB_EVENTS:
            jobs.add_metric([event], counts.get(event, 0))
        yield jobs


# Requests answered at once; more wait in the listen queue. Bounded: 100 monitors
# polling at once must not mean 100 threads.
HEALTH_THREADS = 4
HEALTH_LISTEN_QUEUE = 128
HEALTH_CLIENT_TIMEOUT_S = 5.0


class HealthRequestHandler(BaseHTTPRequestHandler):
    server: "HealthServer"
    timeout = HEALTH_CLIENT_TIMEOUT_S  # a client that sends nothing frees its thread

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/health":
            report = health_report(self.server.ingestor, self.server.scicat)
            status = 200 if report["status"] == "ok" else 503
            self.answer(status, "application/json", redact_urls(json.dumps(report)).encode())
        elif path == "/metrics":
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

            self.answer(200, CONTENT_TYPE_LATEST, generate_latest(self.server.registry))
        else:
            self.answer(404, "text/plain", b"GET /health or /metrics\n")

    def answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("health endpoint: " + format, *args)


class HealthServer(HTTPServer):
    """GET /health and GET /metrics, served from a thread beside the loop by a few workers."""

    request_queue_size = HEALTH_LISTEN_QUEUE

    def __init__(self, ingestor: "Ingestor", config: HealthConfig):
        prometheus = require_package("prometheus_client", "health.port")
        self.ingestor = ingestor
        self.scicat = SciCatProbe(ingestor.config.scicat)
        self.workers = ThreadPoolExecutor(HEALTH_THREADS, thread_name_prefix="health")
        self.registry = prometheus.CollectorRegistry()
        self.registry.register(MetricsCollector(ingestor))
        prometheus.ProcessCollector(registry=self.registry)  # memory, CPU time, open files
        super().__init__((config.address, config.port), HealthRequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.workers.submit(self._answer_one, request, client_address)

    def _answer_one(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception as e:  # a client that went away, or sent garbage
            logger.debug("health endpoint: request from %s failed: %s", client_address[0], e)
        finally:
            self.shutdown_request(request)

    def start(self) -> None:
        threading.Thread(target=self.serve_forever, name="health", daemon=True).start()
        host, port = self.server_address[:2]
        logger.info("health and metrics at http://%s:%d/health and /metrics", host, port)


# =============================================================================
# 7. The command line
# =============================================================================


def check_config(config: Config) -> int:
    """--check-config: try every outside part once, one line per check; 0 when all pass."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    failures = checks = 0

    def report(what: str, problem: str, detail: str = "") -> None:
        nonlocal failures, checks
        checks += 1
        failures += bool(problem)
        print(f"{'FAIL' if problem else 'ok  '} {what}: {problem or detail}")

    kafka = config.kafka
    # Only what a connection needs: the consumer's own settings mean nothing to an admin client.
    connection = {k: v for k, v in kafka.consumer.items() if k.startswith(("security.", "sasl.", "ssl."))}
    try:
        # Its connection errors are summed up in the one line reported below.
        quiet = logging.getLogger("scicat_ingestor.kafka.check")
        quiet.setLevel(logging.CRITICAL)
        admin = AdminClient({"bootstrap.servers": ",".join(kafka.bootstrap_servers), "logger": quiet, **connection})
        topics = admin.list_topics(timeout=10).topics
        report("kafka", "", f"reached {','.join(kafka.bootstrap_servers)}")
        for topic in kafka.topics:
            if topic in topics and topics[topic].error is None:
                count = len(topics[topic].partitions)
                report(f"kafka topic {topic}", "", f"{count} partition{'s' if count != 1 else ''}")
            else:
                report(f"kafka topic {topic}", "no such topic")
    except KafkaException as e:
        report("kafka", f"cannot reach {','.join(kafka.bootstrap_servers)}: {e.args[0].str()}")
    if config.options.dry_run:
        report("scicat", "", "not tried: dry run")
    else:
        client = SciCatClient(dataclasses.replace(config.scicat, max_retries=0))
        try:
            client.login()
            api = client.dataset_api()
            response = client.request("GET", api.datasets, params={"filter": json.dumps({"limits": {"limit": 1}})},
                                      base=api.base)
            problem = "" if response.status_code == 200 else f"reading datasets answered HTTP {response.status_code}"
            report("scicat", problem, f"logged in at {config.scicat.host}; datasets through {api.version} "
                                      f"at {api.base} ({api.why})")
        except SciCatError as e:
            report("scicat", str(e))
    for root in config.files.allowed_roots:
        readable = os.path.isdir(root) and os.access(root, os.R_OK | os.X_OK)
        report(f"files root {root}", "" if readable else "not a readable folder", "readable")
    for what, folder in (("spool", config.spool.directory), ("audit", os.path.dirname(config.audit.file)),
                         ("run start store", os.path.dirname(config.options.run_start_state_file))):
        if folder:
            report(f"{what} folder {folder}", "" if folder_writable(folder) else "not writable", "writable")
    print(f"--check-config: {checks} checks, " + (f"{failures} failed" if failures else "all passed"))
    return 1 if failures else 0


def show_fields(config: Config, paths: list[str]) -> int:
    """--check-config --ingest-file FILE: each file's dataset, field by field with where each
    value came from, as a dry run that asks SciCat what it has (unless --dry-run) and writes nothing."""
    catalogue = None
    if not config.options.dry_run:
        client = SciCatClient(dataclasses.replace(config.scicat, max_retries=0))
        try:
            client.login()
            catalogue = AskingDryRunCatalogue(client)
        except SciCatError as e:
            print(f"SciCat not asked ({e}): proposals, instruments and samples count as not found")
    config.options.dry_run = True
    return Ingestor(config, catalogue, print_fields=True).ingest_files(paths)


def parse_arguments(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scicat_ingestor.py",
        description=(
            "Create a SciCat raw dataset, with its file list and metadata, for every file the ESS "
            "file writer finishes. Listens on Kafka for run start (pl72) and finished writing (wrdn) "
            "messages, reads the NeXus file's metadata and posts to SciCat's REST API."
        ),
        epilog="Flags given here override the configuration file's options section. "
        "See config.sample.json and README.md for every configuration key.",
    )
    parser.add_argument("-c", "--config", "--config-file", dest="config_file", default="config.json",
                        metavar="PATH", help="JSON configuration file (default: %(default)s)")
    parser.add_argument("-v", "--verbose", action="store_true", default=None, help="log to standard output")
    parser.add_argument("--sys-log", dest="system_log", action="store_true", default=None,
                        help="also log to the local syslog")
    parser.add_argument("--graylog", action="store_true", default=None,
                        help="also log to Graylog, as GELF to options.graylog_host and graylog_port (needs graypy)")
    parser.add_argument("--file-log", dest="file_log", metavar="PATH", default=None, help="also log to this file")
    parser.add_argument("--log-prefix", dest="log_message_prefix", metavar="TEXT", default=None,
                        help='text between the level and the message (default: " SFI: ")')
    parser.add_argument("--debug", dest="logging_level", metavar="LEVEL", default=None,
                        type=str.upper, choices=LOG_LEVELS, help="log level: " + ", ".join(LOG_LEVELS))
    parser.add_argument("--dry-run", dest="dry_run", action="store_true", default=None,
                        help="do everything but write to SciCat; log the dataset and origdatablock instead")
    parser.add_argument("--replay", metavar="SPOOL_FILE", nargs="?", const="", default=None,
                        help="ingest the spooled failures again (default: the spool.directory's failed.jsonl), "
                        "keep those that still fail, and exit: 0 when none is left")
    parser.add_argument("--ingest-file", metavar="PATH", nargs="+", default=None,
                        help="ingest these files, or every NeXus file under these folders, without Kafka (to "
                        "backfill files written while the ingestor was down), and exit: 0 when none failed")
    parser.add_argument("--check-config", action="store_true",
                        help="check the configuration, Kafka and its topics, the SciCat login, the file roots, "
                        "the spool and audit folders; print one line per check and exit 0 or 1. Ingests nothing. "
                        "With --ingest-file FILE: also each field of FILE's dataset and where its value came from "
                        "(SciCat asked, nothing written)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser.parse_args(argv)


def apply_arguments(options: OptionsConfig, args: argparse.Namespace) -> None:
    """Flags given on the command line win over the file; absent ones change nothing."""
    for f in dataclasses.fields(OptionsConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            setattr(options, f.name, value)


def setup_logging(options: OptionsConfig) -> None:
    formatter = logging.Formatter(f"%(asctime)s [%(levelname)s]{options.log_message_prefix}%(message)s")
    handlers: list[logging.Handler] = []
    if options.verbose:
        handlers.append(logging.StreamHandler(sys.stdout))
    if options.file_log:
        path = options.file_log if isinstance(options.file_log, str) else options.file_log_base_name
        if options.file_log is True and options.file_log_timestamp:
            path += dt.datetime.now().strftime("_%Y%m%d%H%M%S")
        handlers.append(logging.handlers.WatchedFileHandler(path))
    if options.system_log:
        address = "/dev/log" if os.path.exists("/dev/log") else ("localhost", 514)
        syslog = logging.handlers.SysLogHandler(address=address, facility=options.system_log_facility)
        syslog.setFormatter(logging.Formatter(f"scicat_ingestor[%(process)d]:{options.log_message_prefix}%(message)s"))
        handlers.append(syslog)
    if options.graylog:
        if not options.graylog_host:
            raise ConfigError("options.graylog_host: needed to log to Graylog")
        graypy = require_package("graypy", "options.graylog")
        gelf = graypy.GELFUDPHandler if options.graylog_protocol == "udp" else graypy.GELFTCPHandler
        graylog = gelf(options.graylog_host, options.graylog_port, facility=options.graylog_facility)
        # GELF carries the time and level in fields of their own.
        graylog.setFormatter(logging.Formatter("%(message)s"))
        handlers.append(graylog)
    if not handlers:
        # Errors must be seen somewhere even without -v.
        handlers.append(logging.StreamHandler(sys.stderr))
        handlers[-1].setLevel(logging.WARNING)
    for handler in handlers:
        if handler.formatter is None:
            handler.setFormatter(formatter)
        handler.addFilter(LogSafety())
        logger.addHandler(handler)
    logger.setLevel(options.logging_level.upper())
    logger.propagate = False


# Exit statuses. examples/systemd/scicat-ingestor.service does not restart on the two that
# restarting cannot fix (RestartPreventExitStatus): a wrong configuration, and a password
# SciCat refused at start (retrying it could lock the account). Everything else is
# restarted, an unexpected error too.
EXIT_OK = 0
EXIT_FAILED = 1  # --replay, --ingest-file, --check-config: not everything worked; or an unexpected error
EXIT_CONFIG = 2  # argparse's status for a wrong command line too
EXIT_LOGIN_REFUSED = 77  # sysexits' EX_NOPERM
EXITS_NOT_RESTARTED = (EXIT_CONFIG, EXIT_LOGIN_REFUSED)


def reopen_log_files() -> list[str]:
    """SIGHUP: open the log files anew, for a logrotate that moved them without copytruncate."""
    reopened = []
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler):
            with handler.lock or contextlib.nullcontext():
                if handler.stream is not None:
                    handler.stream.close()
                handler.stream = handler._open()
                if isinstance(handler, logging.handlers.WatchedFileHandler):
                    handler._statstream()
            reopened.append(handler.baseFilename)
    return reopened


# The packages the script imports (module: the package to install), and the mark of a
# process that already moved to the checkout's .venv, so that it never loops.
REQUIRED_PACKAGES = {"confluent_kafka": "confluent-kafka", "streaming_data_types": "ess-streaming-data-types",
                     "h5py": "h5py", "requests": "requests", "PIL": "pillow"}
VENV_REEXEC_MARK = "SCICAT_INGESTOR_VENV"


def use_checkout_environment() -> Optional[str]:
    """Started as ./scicat_ingestor.py, the shebang's python3 may lack the packages that the
    checkout's .venv (made by make) has: carry on there. Else one line naming what to install."""
    import importlib

    missing = []
    for module, package in REQUIRED_PACKAGES.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(package)
    if not missing:
        return None
    script = os.path.abspath(__file__)
    venv_python = os.path.join(os.path.dirname(script), ".venv", "bin", "python")
    if os.access(venv_python, os.X_OK) and not os.environ.get(VENV_REEXEC_MARK):
        os.environ[VENV_REEXEC_MARK] = venv_python
        os.execv(venv_python, [venv_python, script, *sys.argv[1:]])
    return (f"scicat_ingestor: {sys.executable} lacks the Python packages {', '.join(missing)}: "
            f"pip install -r requirements_SFI.txt (or run make venv in the checkout)")


def stop_at_once(signum: int, _frame: Any = None) -> None:
    """SIGINT or SIGTERM before the ingestor takes them over: nothing is in hand, so stop now."""
    raise StopRequested(signal.Signals(signum).name)


def main(argv: Optional[list[str]] = None) -> int:
    signal.signal(signal.SIGTERM, stop_at_once)
    signal.signal(signal.SIGINT, stop_at_once)
    try:
        if problem := use_checkout_environment():
            print(problem, file=sys.stderr)
            return EXIT_CONFIG
        return run_command(parse_arguments(argv))
    except StopRequested as e:
        # Stopped before a message was taken in hand (logging in, checking, reading the configuration).
        tell(f"{e.args[0] if e.args else 'signal'} received while starting: stopped, nothing ingested")
        return 0


def run_command(args: argparse.Namespace) -> int:
    # Warnings about legacy keys come while reading the file, before logging is set up.
    logging.basicConfig(format="%(levelname)s: %(message)s", level=logging.WARNING)
    try:
        config = load_config(args.config_file, dry_run=bool(args.dry_run))
        apply_arguments(config.options, args)
        setup_logging(config.options)
    except (ConfigError, ValueError, OSError) as e:
        print(f"scicat_ingestor: configuration error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    logger.info("scicat_ingestor %s starting with %s", __version__, args.config_file)
    logger.debug("configuration: %s", json.dumps(redacted(dataclasses.asdict(config))))
    if args.check_config:
        status = check_config(config)
        return max(status, show_fields(config, args.ingest_file)) if args.ingest_file else status
    ingestor = Ingestor(config)
    if config.health.port and args.replay is None:
        try:
            HealthServer(ingestor, config.health).start()
        except (ConfigError, OSError) as e:
            logger.critical("cannot start the health endpoint on %s:%d: %s", config.health.address,
                            config.health.port, e)
            return EXIT_CONFIG
    signal.signal(signal.SIGTERM, ingestor.request_stop)
    signal.signal(signal.SIGINT, ingestor.request_stop)
    signal.signal(signal.SIGHUP, ingestor.request_log_reopening)
    try:
        if args.replay is not None:
            return ingestor.replay(args.replay)
        if args.ingest_file:
            return ingestor.ingest_files(args.ingest_file)
        ingestor.run()
    except SciCatError as e:
        logger.critical("cannot start: %s", e)
        return EXIT_LOGIN_REFUSED
    except ConfigError as e:  # the run start store's file: taken by another instance, or not writable
        logger.critical("cannot start: %s", e)
        return EXIT_CONFIG
    except StopRequested:  # while starting (the login's retries): main() says so and exits 0
        raise
    except Exception:  # a bug: said in the log, and systemd starts it again
        logger.critical("stopping on an unexpected error (exit status %d: restarted under systemd)", EXIT_FAILED,
                        exc_info=True)
        return EXIT_FAILED
    stats = ingestor.stats
    tell(f"stopped on {ingestor.stop_signal or 'request'} after {time.monotonic() - stats.started:.0f} s: "
         f"{sum(stats.messages.values())} messages, {stats.files_summary(config.options.dry_run)}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
