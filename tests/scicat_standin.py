"""A strict stand-in for the SciCat backend's REST API, for the tests.

It enforces the contract of docs/scicat-api.md (login and tokens, who may create
and read what, the raw dataset and origdatablock payloads, the lookups), answers like the
real backend (scicat-backend-next 4.x) does, including its sharp edges, and lets a
test look inside and inject faults. Field tables are hard-coded from the backend's
own OpenAPI document (CreateRawDatasetObsoleteDto, CreateOrigDatablockDto,
CreateDatasetOrigDatablockDto, DataFile) so the tests need nothing outside the repo.

When scicat-sdk-py is installed, every payload the stand-in accepts is also checked
with the SDK's pydantic model: if the SDK rejects it, the request fails with 400 and
the case is kept in `sdk_disagreements`, so a lenient rule here cannot go unnoticed.

    with SciCatStandIn() as scicat:
        requests.post(scicat.url + "/auth/login", json={"username": "ingestor", "password": "secret"})
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import math
import re
import secrets
import socket
import threading
import time
import traceback
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_PREFIX = "/api/v3"
V4_PREFIX = "/api/v4"

# -- validation rules ------------------------------------------------------------

# ISO 8601 as the backend's isDateString takes it (recorded): a year alone, week and ordinal
# dates, offsets with or without a colon, no zone; not a space for the "T".
# Only the extended forms: basic ones such as 20240501T120000Z pass that check, but a
# JavaScript Date cannot parse them, so the backend cannot store them.
_ISO_RE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?|-W\d{2}(?:-\d)?|-\d{3})?"
                     r"(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:[.,]\d+)?)?)?(?:Z|[+-](\d{2})(?::?(\d{2}))?)?)?")
# What the backend's email checks take: a dotted domain ending in two letters at least.
_EMAIL_RE = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_URL_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)?[^\s/:]+(\.[^\s/:]+)+(:\d+)?(/\S*)?")


def _is_iso(v: Any) -> bool:
    match = _ISO_RE.fullmatch(v) if isinstance(v, str) else None
    if not match:
        return False
    year, month, day, hour, minute, second, off_h, off_m = (int(g) if g else None for g in match.groups())
    try:
        datetime(year, month or 1, day or 1, hour or 0, minute or 0, second or 0)  # month 13, Feb 30, 25:00
    except ValueError:
        return False
    return (off_h or 0) <= 23 and (off_m or 0) <= 59


def _stored_time(v: str) -> str:
    """As the backend stores a time: UTC with milliseconds (no zone counts as UTC)."""
    short = re.fullmatch(r"(\d{4})(?:-(\d{2})|-(\d{3}))?", v)  # a year, a month, an ordinal date
    if short:
        year, month, day_of_year = short.groups()
        start = datetime(int(year), int(month or 1), 1, tzinfo=timezone.utc)
        return _stored_time((start + timedelta(days=int(day_of_year or 1) - 1)).isoformat())
    try:
        parsed = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return v
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _is_emails(v: Any) -> bool:
    """One email, or several separated by ';' (a space after it allowed; none empty)."""
    return isinstance(v, str) and all(_EMAIL_RE.fullmatch(part.strip()) for part in v.split(";"))


def _is_string_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _is_list_of(keys: frozenset[str]) -> Callable[[Any], bool]:
    """An array of objects with exactly these keys, all string-valued (TechniqueClass etc.)."""
    return lambda v: isinstance(v, list) and all(
        isinstance(x, dict) and set(x) == keys and all(isinstance(s, str) for s in x.values()) for x in v)


LIFECYCLE_KEYS = frozenset({
    "archivable", "retrievable", "publishable", "dateOfDiskPurging", "archiveRetentionTime", "dateOfPublishing",
    "publishedOn", "isOnCentralDisk", "archiveStatusMessage", "retrieveStatusMessage", "archiveReturnMessage",
    "retrieveReturnMessage", "exportedTo", "retrieveIntegrityCheck", "storageLocation"})


@dataclass(frozen=True)
class Rule:
    name: str  # class-validator's constraint name, so errors read like the backend's
    ok: Callable[[Any], bool]
    says: str


STRING = Rule("isString", lambda v: isinstance(v, str), "must be a string")
NON_EMPTY = Rule("isNotEmpty", lambda v: isinstance(v, str) and v != "", "must be a non-empty string")
# bool is an int in Python but not in JSON; a float, even 3.0, is refused (the doc: "a float gets 400").
INTEGER = Rule("isInt", lambda v: type(v) is int, "must be an integer number")
NUMBER = Rule("isNumber", lambda v: type(v) in (int, float) and math.isfinite(v),
              "must be a number conforming to the specified constraints")
BOOLEAN = Rule("isBoolean", lambda v: type(v) is bool, "must be a boolean value")
DATE = Rule("isDateString", _is_iso, "must be a valid ISO 8601 date string")
EMAIL = Rule("isEmail", lambda v: isinstance(v, str) and bool(_EMAIL_RE.fullmatch(v)), "must be an email")
EMAILS = Rule("customEmailList", _is_emails, "Expected an email or a list of semicolon separated emails")
URL = Rule("isUrl", lambda v: isinstance(v, str) and bool(_URL_RE.fullmatch(v)), "must be a URL address")
STRINGS = Rule("isArray", _is_string_list, "must be an array of strings")
OBJECT = Rule("isObject", lambda v: isinstance(v, dict), "must be an object")
TECHNIQUES = Rule("nestedValidation", _is_list_of(frozenset({"pid", "name"})), "must be an array of {pid, name} strings")
RELATIONSHIPS = Rule("isArray", _is_list_of(frozenset({"pid", "relationship"})),
                     "must be an array of {pid, relationship} strings")
LIFECYCLE = Rule("isObject", lambda v: isinstance(v, dict) and set(v) <= LIFECYCLE_KEYS,
                 "must be an object with datasetlifecycle fields only")
FILE_LIST = Rule("arrayMinSize", lambda v: isinstance(v, list) and len(v) > 0, "must contain at least 1 elements")

# field -> (rule, required). POST /api/v3/Datasets as the backend takes it (recorded):
# the properties of its CreateRawDatasetObsoleteDto for "raw", of the derived DTO for
# "derived". datasetName is optional (made from sourceFolder); size and numberOfFiles
# are integers; an empty owner, sourceFolder or datasetName passes here and fails later (500).
_COMMON_DATASET_FIELDS: dict[str, tuple[Rule, bool]] = {
    "type": (STRING, True), "owner": (STRING, True), "ownerGroup": (STRING, True), "contactEmail": (EMAILS, True),
    "sourceFolder": (STRING, True), "creationTime": (DATE, True),
    "datasetName": (STRING, False), "pid": (STRING, False), "accessGroups": (STRINGS, False),
    "instrumentGroup": (STRING, False), "ownerEmail": (EMAIL, False), "orcidOfOwner": (STRING, False),
    "sourceFolderHost": (URL, False), "size": (INTEGER, False), "packedSize": (INTEGER, False),
    "numberOfFiles": (INTEGER, False), "numberOfFilesArchived": (INTEGER, False), "validationStatus": (STRING, False),
    "keywords": (STRINGS, False), "description": (STRING, False), "classification": (STRING, False),
    "license": (STRING, False), "isPublished": (BOOLEAN, False), "techniques": (TECHNIQUES, False),
    "sharedWith": (STRINGS, False), "relationships": (RELATIONSHIPS, False), "datasetlifecycle": (LIFECYCLE, False),
    "scientificMetadata": (OBJECT, False), "scientificMetadataSchema": (STRING, False),
    "scientificMetadataValid": (BOOLEAN, False), "comment": (STRING, False), "dataQualityMetrics": (NUMBER, False),
    "proposalId": (STRING, False), "sampleId": (STRING, False), "instrumentId": (STRING, False),
}
RAW_DATASET_FIELDS: dict[str, tuple[Rule, bool]] = {
    **_COMMON_DATASET_FIELDS, "principalInvestigator": (STRING, True), "creationLocation": (STRING, True),
    "runNumber": (STRING, False), "startTime": (DATE, False), "endTime": (DATE, False), "dataFormat": (STRING, False),
    # Derived-dataset fields the backend's raw DTO carries too (it accepts them on a raw dataset).
    "investigator": (STRING, False), "inputDatasets": (STRINGS, False), "usedSoftware": (STRINGS, False),
    "jobParameters": (OBJECT, False), "jobLogData": (STRING, False),
}
DERIVED_DATASET_FIELDS: dict[str, tuple[Rule, bool]] = {
    **_COMMON_DATASET_FIELDS, "investigator": (STRING, True), "inputDatasets": (STRINGS, True),
    "usedSoftware": (STRINGS, True), "jobParameters": (OBJECT, False), "jobLogData": (STRING, False),
}
# v3 name -> the v4 list holding it: stored with both, answered in the names of the route's version.
V4_LISTS = {"principalInvestigator": "principalInvestigators", "proposalId": "proposalIds",
            "sampleId": "sampleIds", "instrumentId": "instrumentIds"}
# POST /api/v4/datasets: CreateDatasetDto. The raw fields in their v4 names, datasetName required,
# creationLocation optional; owner is not checked here, but its absence is a 500 (recorded).
V4_DATASET_FIELDS: dict[str, tuple[Rule, bool]] = {
    **{k: v for k, v in RAW_DATASET_FIELDS.items() if k not in V4_LISTS and k != "investigator"},
    "owner": (STRING, False), "creationLocation": (STRING, False), "datasetName": (STRING, True),
    **{name: (STRINGS, False) for name in V4_LISTS.values()},
}
# Fields the database requires non-empty: "" passes the DTO and fails in Mongoose (500).
MONGOOSE_REQUIRED = ("owner", "sourceFolder", "datasetName", "pid")
# Stored documents are limited by the database, the request body by the backend's parser.
MAX_BODY_BYTES = MAX_DOCUMENT_BYTES = 16 * 1024 * 1024

# DataFile: the backend's OpenAPI has no "metadata" here (scicat-sdk-py 5.x has): refused.
DATA_FILE_FIELDS: dict[str, tuple[Rule, bool]] = {
    "path": (STRING, True), "size": (NUMBER, True), "time": (DATE, True),
    "chk": (STRING, False), "uid": (STRING, False), "gid": (STRING, False), "perm": (STRING, False),
    "type": (STRING, False),
}

# POST /Datasets/{pid}/origdatablocks: CreateDatasetOrigDatablockDto. Unlike the doc's
# "same body minus datasetId", the backend's own schema has no ownerGroup/accessGroups here:
# the stricter schema wins, as a stand-in that accepts more than the backend hides bugs.
DATASET_BLOCK_FIELDS: dict[str, tuple[Rule, bool]] = {
    "size": (INTEGER, True), "dataFileList": (FILE_LIST, True), "chkAlg": (NON_EMPTY, False),
    "isPublished": (BOOLEAN, False),
}
PROPOSAL_FIELDS: dict[str, tuple[Rule, bool]] = {
    "proposalId": (STRING, True), "title": (STRING, True), "email": (EMAIL, True), "ownerGroup": (STRING, True),
    "accessGroups": (STRINGS, False), "isPublished": (BOOLEAN, False), "pi_email": (EMAIL, False),
    "pi_firstname": (STRING, False), "pi_lastname": (STRING, False), "firstname": (STRING, False),
    "lastname": (STRING, False), "abstract": (STRING, False), "startTime": (DATE, False), "endTime": (DATE, False),
    "MeasurementPeriodList": (Rule("isArray", lambda v: isinstance(v, list), "must be an array"), False),
    "metadata": (OBJECT, False), "parentProposalId": (STRING, False), "type": (STRING, False),
    "instrumentIds": (STRINGS, False), "instrumentGroup": (STRING, False),
}
INSTRUMENT_FIELDS: dict[str, tuple[Rule, bool]] = {
    "uniqueName": (STRING, True), "name": (STRING, True), "customMetadata": (OBJECT, False),
}
SAMPLE_FIELDS: dict[str, tuple[Rule, bool]] = {
    "ownerGroup": (STRING, True), "sampleId": (STRING, False), "owner": (STRING, False),
    "description": (STRING, False), "sampleCharacteristics": (OBJECT, False), "accessGroups": (STRINGS, False),
    "isPublished": (BOOLEAN, False), "instrumentGroup": (STRING, False), "proposalId": (STRING, False),
}
# POST /OrigDatablocks: CreateOrigDatablockDto.
BLOCK_FIELDS: dict[str, tuple[Rule, bool]] = {
    **DATASET_BLOCK_FIELDS, "datasetId": (NON_EMPTY, True), "ownerGroup": (STRING, False),
    "accessGroups": (STRINGS, False), "instrumentGroup": (STRING, False),
}


def validate(body: Any, table: dict[str, tuple[Rule, bool]], prefix: str = "") -> list[dict[str, Any]]:
    """class-validator-like errors: [{"property", "constraints": {rule: text}}], the field named in both."""
    if not isinstance(body, dict):
        return [{"property": prefix.rstrip(".") or "body", "constraints": {"isObject": "must be a JSON object"}}]
    problems = []
    for name, value in body.items():
        prop = prefix + name
        if name not in table:
            problems.append({"property": prop, "value": value,
                             "constraints": {"whitelistValidation": f"property {prop} should not exist"}})
        elif value is not None and not table[name][0].ok(value):  # null counts as absent (@IsOptional)
            rule = table[name][0]
            problems.append({"property": prop, "value": value, "constraints": {rule.name: f"{prop} {rule.says}"}})
    for name, (_, required) in table.items():
        if required and body.get(name) is None:
            problems.append({"property": prefix + name,
                             "constraints": {"isDefined": f"{prefix}{name} should not be null or undefined"}})
    if not isinstance(body.get("dataFileList"), list) and "dataFileList" in table:
        problems.append({"property": prefix + "dataFileList", "constraints": {"isArray": "dataFileList must be an array"}})
    if isinstance(body.get("dataFileList"), list) and table.get("dataFileList", (None,))[0] is FILE_LIST:
        for i, entry in enumerate(body["dataFileList"]):
            problems += validate(entry, DATA_FILE_FIELDS, f"{prefix}dataFileList.{i}.")
    return problems


# unit -> (SI unit, factor, offset): the conversions the recording shows; any other unit
# is copied as its own SI unit, as the backend does with a unit it cannot convert.
SI_UNITS = {"mm": ("m", 1e-3, 0.0), "cm": ("m", 1e-2, 0.0), "m": ("m", 1.0, 0.0), "angstrom": ("m", 1e-10, 0.0),
            "degC": ("K", 1.0, 273.15), "K": ("K", 1.0, 0.0), "meV": ("(kg m^2) / s^2", 1.602176634e-22, 0.0),
            "s": ("s", 1.0, 0.0), "ms": ("s", 1e-3, 0.0)}


def _in_si(value: Any, factor: float, offset: float) -> Any:
    if isinstance(value, list):
        return [_in_si(v, factor, offset) for v in value]
    return value * factor + offset if type(value) in (int, float) else value


def with_si_units(metadata: dict[str, Any]) -> dict[str, Any]:
    """Every {value, unit} entry with a unit, at any depth, gets valueSI/unitSI (overwriting
    the client's), lists elementwise, as the backend adds them; a unit of "" adds nothing."""
    out = {}
    for key, entry in metadata.items():
        if isinstance(entry, dict) and "value" in entry and isinstance(entry.get("unit"), str):
            if entry["unit"]:
                unit_si, factor, offset = SI_UNITS.get(entry["unit"], (entry["unit"], 1.0, 0.0))
                entry = {**entry, "valueSI": _in_si(entry["value"], factor, offset), "unitSI": unit_si}
        elif isinstance(entry, dict):
            entry = with_si_units(entry)
        out[key] = entry
    return out


_MISSING = object()
_LOOPBACK_OPERATORS = {"inq", "nin", "neq", "gt", "gte", "lt", "lte", "like", "regexp", "between", "and", "or"}


def _at_path(doc: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return _MISSING
        doc = doc[part]
    return doc


def matches(doc: dict[str, Any], where: dict[str, Any]) -> bool:
    """A MongoDB where: equality on (dotted) paths, "$in", "$or", "$and"; null matches absent."""
    for path, expected in where.items():
        if path in ("$or", "$and"):
            hits = (matches(doc, w) for w in expected)
            if not (any(hits) if path == "$or" else all(hits)):
                return False
            continue
        found = _at_path(doc, path)
        if isinstance(expected, dict) and set(expected) == {"$in"}:
            if found is _MISSING or found not in expected["$in"]:
                return False
        elif expected is None and found is _MISSING:
            continue
        elif found is _MISSING or found != expected:
            return False
    return True


def _unsupported_operator(where: dict[str, Any]) -> str:
    """The first where operator the stand-in does not implement ("" if none): loud, not a silent mismatch."""
    for path, expected in where.items():
        if path in ("$or", "$and"):
            inner = [_unsupported_operator(w) for w in expected if isinstance(w, dict)]
            if not isinstance(expected, list) or len(inner) != len(expected):
                return path
            if any(inner):
                return next(i for i in inner if i)
        elif path.startswith("$") or isinstance(expected, dict) and any(
                k.startswith("$") and k != "$in" or k in _LOOPBACK_OPERATORS for k in expected):
            return path
    return ""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _object_id() -> str:
    return secrets.token_hex(12)


def coerced(body: dict[str, Any]) -> dict[str, Any]:
    """What the backend's DTO turns into what it takes: a string where a list of strings
    belongs becomes a one-item list, a string or a list as scientificMetadata an object by index."""
    body = dict(body)
    for name in ("accessGroups", "keywords"):
        if isinstance(body.get(name), str):
            body[name] = [body[name]]
    metadata = body.get("scientificMetadata")
    if isinstance(metadata, (str, list)):
        body["scientificMetadata"] = {str(i): v for i, v in enumerate(metadata)}
    return body


def _v4_keys(value: Any) -> Any:
    """scientificMetadata as v4 answers show it: "." and "$" in keys percent-encoded."""
    if not isinstance(value, dict):
        return value
    return {k.replace(".", "%2E").replace("$", "%24"): _v4_keys(v) for k, v in value.items()}


def mongoose_validation_error(fields: list[str]) -> dict[str, Any]:
    """The database layer's 500 body for required fields given as ""."""
    errors = {name: {"name": "ValidatorError", "message": f"Path `{name}` is required.",
                     "properties": {"message": f"Path `{name}` is required.", "type": "required", "path": name,
                                    "value": "", "length": 0}, "kind": "required", "path": name, "value": ""}
              for name in fields}
    summary = ", ".join(f"{name}: Path `{name}` is required." for name in fields)
    return {"errors": errors, "_message": "DatasetClass validation failed", "name": "ValidationError",
            "message": f"DatasetClass validation failed: {summary}"}


def _filter_of(req: Request) -> dict[str, Any]:
    raw = (req.query.get("filter") or req.query.get("filters") or ["{}"])[0]
    try:
        flt = json.loads(raw)
    except ValueError:
        raise _Refused(_error(400, "Invalid JSON in filter: Expected property name or '}' in JSON at position 1"))
    if not isinstance(flt, dict):
        raise _Refused(_error(400, "Invalid JSON in filter: not an object"))
    return flt


def projected(doc: dict[str, Any], fields: Any) -> dict[str, Any]:
    """The "fields" of a filter: only those (and _id) are shown."""
    if not isinstance(fields, list) or not fields:
        return doc
    return {k: v for k, v in doc.items() if k in fields or k == "_id"}


# -- attachments ---------------------------------------------------------------------

V3_ATTACHMENTS_LISTED = V4_ATTACHMENTS_LISTED = 10  # recorded: the v3 list and count, v4 without limits
ATTACHMENT_TARGET_TYPES = ("dataset", "proposal", "sample", "published_data")
TARGETS = Rule("isArray", lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v),
               "must be an array of objects")
# field -> (rule, required), in the order the backend names them (recorded).
V3_ATTACHMENT_FIELDS: dict[str, tuple[Rule, bool]] = {
    "ownerGroup": (STRING, True), "caption": (STRING, True), "thumbnail": (STRING, False),
    "accessGroups": (STRINGS, False), "datasetId": (STRING, False), "id": (STRING, False),
}
V4_ATTACHMENT_FIELDS: dict[str, tuple[Rule, bool]] = {
    "ownerGroup": (STRING, True), "caption": (STRING, True), "isPublished": (BOOLEAN, True),
    "thumbnail": (STRING, False), "accessGroups": (STRINGS, False), "relationships": (TARGETS, False),
    "aid": (STRING, False),
}


def attachment_problems(body: dict[str, Any], fields: dict[str, tuple[Rule, bool]]) -> list[dict[str, Any]]:
    """class-validator's errors for an attachment body: unknown fields, then each field's rule
    ("caption must be a string", also for a missing one), then each relationship's."""
    problems = [{"property": name, "constraints": {"whitelistValidation": f"property {name} should not exist"}}
                for name in body if name not in fields]
    for name, (rule, required) in fields.items():
        value = body.get(name)
        if (value is None and required) or (value is not None and not rule.ok(value)):
            problems.append({"property": name, "constraints": {rule.name: f"{name} {rule.says}"}})
    for i, target in enumerate(body.get("relationships") if TARGETS.ok(body.get("relationships")) else []):
        if not isinstance(target.get("targetId"), str):
            problems.append({"property": f"relationships.{i}.targetId",
                             "constraints": {"isString": f"relationships.{i}.targetId must be a string"}})
        if target.get("targetType") not in ATTACHMENT_TARGET_TYPES:
            problems.append({"property": f"relationships.{i}.targetType", "constraints": {"isEnum": (
                f"relationships.{i}.targetType must be one of the following values: "
                f"{', '.join(ATTACHMENT_TARGET_TYPES)}")}})
    return problems


def _attachment_target(doc: dict[str, Any]) -> str | None:
    """The dataset an attachment is attached to (v3's datasetId)."""
    return next((r["targetId"] for r in doc["relationships"] if r.get("targetType") == "dataset"), None)


def _v3_attachment(doc: dict[str, Any]) -> dict[str, Any]:
    """An attachment in v3's names: datasetId and id, no relationships or aid."""
    shown = {k: v for k, v in doc.items() if k not in ("relationships", "aid")}
    return {**shown, "datasetId": _attachment_target(doc), "id": doc["_id"]}


def _attachment_matches(doc: dict[str, Any], where: dict[str, Any]) -> bool:
    """Equality on fields; "relationships.<field>" matches any of the attachment's relationships."""
    for path, expected in where.items():
        head, _, sub = path.partition(".")
        if head == "relationships" and sub:
            if not any(r.get(sub) == expected for r in doc["relationships"]):
                return False
        elif doc.get(path) != expected:
            return False
    return True


# -- the SDK's second opinion ------------------------------------------------------

_sdk_lock = threading.Lock()
_sdk_cache: dict[str, Any] | None = None


def sdk_models() -> dict[str, Any]:
    """route kind -> scicat-sdk-py model class; empty without the SDK. Loaded once: the
    SDK's package import takes a few seconds. Tests may swap an entry (monkeypatch.setitem)."""
    global _sdk_cache
    with _sdk_lock:
        if _sdk_cache is None:
            try:
                from scicat_sdk_py.models.create_dataset_orig_datablock_dto import CreateDatasetOrigDatablockDto
                from scicat_sdk_py.models.create_orig_datablock_dto import CreateOrigDatablockDto
                from scicat_sdk_py.models.create_raw_dataset_obsolete_dto import CreateRawDatasetObsoleteDto
                from scicat_sdk_py.models.create_dataset_dto import CreateDatasetDto
                _sdk_cache = {"dataset": CreateRawDatasetObsoleteDto, "dataset_v4": CreateDatasetDto,
                              "origdatablock": CreateOrigDatablockDto,
                              "dataset_origdatablock": CreateDatasetOrigDatablockDto}
            except ImportError:
                _sdk_cache = {}
        return _sdk_cache


# -- HTTP plumbing ------------------------------------------------------------------

@dataclass
class Request:
    method: str
    path: str  # as sent, without the query
    query: dict[str, list[str]]
    headers: Any
    raw_body: bytes
    args: tuple[str, ...] = ()
    user: str | None = None


@dataclass
class Answer:
    status: int
    body: Any = None  # JSON-encoded unless `empty`
    empty: bool = False


def _error(status: int, message: Any, **extra: Any) -> Answer:
    """Nest's error body: {message, error: the reason phrase, statusCode} (a 401 has no "error")."""
    if status != 401 and status in _KNOWN_STATUS:
        extra.setdefault("error", HTTPStatus(status).phrase)
    return Answer(status, {"message": message, **extra, "statusCode": status})


_KNOWN_STATUS = {int(s) for s in HTTPStatus}
FORBIDDEN = _error(403, "Forbidden resource")
UNAUTHORIZED = _error(401, "Unauthorized")
NOT_YOURS = _error(403, "Unauthorized access")
INTERNAL = Answer(500, "Internal server error")  # the backend's catch-all: a JSON string


class _Refused(Exception):
    """Stops a handler with this answer."""

    def __init__(self, answer: Answer):
        self.answer = answer


def _json_body(req: Request) -> Any:
    """The body as Express' parsers leave it: JSON, form fields, text as a string, else {}."""
    if len(req.raw_body) > MAX_BODY_BYTES:
        raise _Refused(INTERNAL)  # the parser's limit, answered as a 500 (never 413)
    ctype = (req.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if not req.raw_body.strip():
        return {}
    if ctype == "application/x-www-form-urlencoded":
        return {k: v[-1] for k, v in urllib.parse.parse_qs(req.raw_body.decode()).items()}
    if ctype == "text/plain":
        return req.raw_body.decode(errors="replace")
    if ctype != "application/json":
        return {}

    def refuse_constant(name: str) -> Any:  # NaN/Infinity are not JSON for JavaScript
        raise ValueError(f"unexpected token {name}")
    try:
        return json.loads(req.raw_body, parse_constant=refuse_constant)
    except ValueError:
        raise _Refused(_error(400, "Expected property name or '}' in JSON at position 1")) from None


def _object_body(req: Request, not_an_object: Answer | None = None) -> dict[str, Any]:
    """A JSON object body: a string (text/plain) is a 500 and an array a 400, as in the backend."""
    body = _json_body(req)
    if isinstance(body, str):
        raise _Refused(INTERNAL)
    if not isinstance(body, dict):
        raise _Refused(not_an_object or _error(400, ["the body must be a JSON object"]))
    return body


def _nest_refusal(problems: list[dict[str, Any]]) -> Answer:
    """A ValidationPipe's 400: the messages as a list."""
    return _error(400, [text for p in problems for text in p["constraints"].values()])


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address: tuple[str, int], standin: SciCatStandIn):
        self.standin = standin
        self.connections: set[Any] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Cut kept-alive connections too, so a stop() looks like a dead backend to a pooled client."""
        with self.connections_lock:
            for conn in list(self.connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client hanging up is no news; stand-in bugs are caught in dispatch()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real backend behind its proxy
    # Headers and body go out in two writes: with Nagle's algorithm the second waits for the
    # client's delayed ACK, 40 ms per answer that no real backend has.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # nothing on stderr per request (and so never a credential)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()  # the empty line after the last chunk (no trailers)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self) -> None:
        path, _, query = self.path.partition("?")
        req = Request(self.command, path, urllib.parse.parse_qs(query), self.headers, self._read_body())
        answer = self.server.standin._dispatch(req)
        data = b"" if answer.empty else json.dumps(answer.body).encode()
        self.send_response(answer.status)
        if not answer.empty:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


@dataclass
class _Fault:
    status: int
    count: int
    body: dict[str, Any] | None
    path_prefix: str | None

    def applies_to(self, path: str) -> bool:
        if self.path_prefix is None:
            return True
        prefix = self.path_prefix.lower()
        relative = path[len(API_PREFIX):] if path.lower().startswith((API_PREFIX, V4_PREFIX)) else path
        return path.lower().startswith(prefix) or relative.lower().startswith(prefix)


# -- the stand-in ---------------------------------------------------------------------

class SciCatStandIn:
    """A SciCat backend on 127.0.0.1:<ephemeral port>; `url` is its API base (…/api/v3)."""

    def __init__(self, *, users: dict[str, str] | None = None,
                 user_groups: dict[str, list[str]] | None = None,
                 privileged_users: set[str] | None = None, pid_users: set[str] | None = None,
                 admin_users: set[str] | None = None,
                 token_lifetime_s: float = 3600, static_tokens: set[str] | dict[str, str] | None = None,
                 pid_prefix: str = "20.500.12269", delay_s: float = 0.0, apis: tuple[str, ...] = ("v3", "v4")):
        """apis: the versions whose dataset and origdatablock routes are served (login, proposals,
        instruments and samples are on the v3 paths always): without "v4" a v3-only backend, without
        "v3" one that has switched v3 off."""
        self._users = dict(users if users is not None else {"ingestor": "secret"})
        self._user_groups = {k: list(v) for k, v in (user_groups or {}).items()}
        self._privileged = set(privileged_users if privileged_users is not None else {"ingestor"})
        self._pid_users = set(pid_users or ())
        # ADMIN_GROUPS: read everything. Anyone else reads only what one of its groups owns or
        # may access, or what is published: a privileged creator is not an admin.
        self._admins = set(admin_users if admin_users is not None else {"ingestor"})
        self.token_lifetime_s = token_lifetime_s
        # A static token acts as a given user (dict) or as the first user in `users` (set).
        first_user = next(iter(self._users), "ingestor")
        self._static_tokens = (dict(static_tokens) if isinstance(static_tokens, dict)
                               else {t: first_user for t in static_tokens or ()})
        self.pid_prefix = pid_prefix
        self.delay_s = delay_s
        self.apis = tuple(apis)

        self._lock = threading.RLock()
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> (user, monotonic expiry)
        self._datasets: dict[str, dict[str, Any]] = {}
        self._blocks: list[dict[str, Any]] = []
        self._proposals: dict[str, dict[str, Any]] = {}
        self._samples: dict[str, dict[str, Any]] = {}
        self._instruments: dict[str, dict[str, Any]] = {}
        self._attachments: list[dict[str, Any]] = []  # oldest first, in v4's names
        self._log: list[tuple[str, str, int]] = []
        self._logins = 0
        self._faults: list[_Fault] = []
        self._down = False
        self._reject: Callable[[dict[str, Any]], bool] | None = None
        self._disagreements: list[dict[str, Any]] = []
        self._internal_errors: list[str] = []

        self.port: int | None = None
        self.url: str | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> SciCatStandIn:
        """Serve; after a stop(), on the same port again (a SciCat restart)."""
        if self._server is not None:
            return self
        sdk_models()  # pay the SDK's import here, not inside the first request
        self._server = _Server(("127.0.0.1", self.port or 0), self)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}{API_PREFIX}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"scicat-standin-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; connections are refused until start(). The stored data is kept."""
        server, self._server = self._server, None
        if server is None:
            return
        stopper = threading.Thread(target=server.shutdown)
        stopper.start()
        try:  # wakes the loop's select() at once on Linux, instead of at its next poll
            server.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        stopper.join()
        server.drop_connections()
        server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> SciCatStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- seeding, inspection, faults (for the tests) ----------------------------------

    def add_proposal(self, doc: dict[str, Any]) -> None:
        """A proposal as the backend stores it; refuses one a real backend would not hold."""
        self._seed("proposal", doc, ("proposalId", "ownerGroup", "email", "title"))

    def add_sample(self, doc: dict[str, Any]) -> None:
        """A sample as the backend stores it."""
        self._seed("sample", doc, ("sampleId", "ownerGroup"))

    def add_instrument(self, doc: dict[str, Any]) -> None:
        """An instrument as the backend stores it, under the pid given."""
        self._seed("instrument", doc, ("pid", "uniqueName", "name"))

    def _seed(self, kind: str, doc: dict[str, Any], required: tuple[str, ...]) -> None:
        missing = [name for name in required if not isinstance(doc.get(name), str) or not doc[name]]
        if missing:
            raise ValueError(f"the backend requires {', '.join(missing)}: cannot seed {doc}")
        table, key, _ = self._catalogue(kind)
        with self._lock:
            table[doc[key]] = self._new_entry(kind, doc, "admin")

    def _snapshot(self, value: Any) -> Any:
        with self._lock:
            return copy.deepcopy(value)

    datasets = property(lambda self: self._snapshot(self._datasets), doc="pid -> stored dataset (a copy)")
    origdatablocks = property(lambda self: self._snapshot(self._blocks), doc="stored origdatablocks (a copy)")
    attachments = property(lambda self: self._snapshot(self._attachments), doc="stored attachments, v4 names (a copy)")
    requests_log = property(lambda self: self._snapshot(self._log), doc="[(method, path, status)], path w/o query")
    logins = property(lambda self: self._logins, doc="successful POST /auth/login count")
    sdk_disagreements = property(lambda self: self._snapshot(self._disagreements),
                                 doc="[{route, model, body, error}] the SDK refused what the stand-in accepted")
    internal_errors = property(lambda self: self._snapshot(self._internal_errors), doc="stand-in tracebacks")
    sdk_active = property(lambda self: bool(sdk_models()), doc="whether the SDK second opinion runs")

    def datasets_for_job(self, job_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(d) for d in self._datasets.values()
                    if _at_path(d, "scientificMetadata.job_id.value") == job_id]

    def remove_origdatablocks(self, pid: str) -> None:
        """Forget a dataset's origdatablocks (and re-sum it): a crash between the two POSTs."""
        with self._lock:
            self._blocks = [b for b in self._blocks if b["datasetId"] != pid]
            if pid in self._datasets:
                self._resum(pid)

    def issued_tokens(self) -> list[str]:
        """Every token handed out by a login, and the static ones (to check none is ever logged)."""
        with self._lock:
            return list(self._tokens) + list(self._static_tokens)

    def fail_next(self, status: int, count: int = 1, body: dict[str, Any] | None = None,
                  path_prefix: str | None = None) -> None:
        """The next `count` requests (under path_prefix, full or relative to /api/v3 or /api/v4, case ignored)
        get `status`, doing nothing."""
        if count > 0:
            with self._lock:
                self._faults.append(_Fault(status, count, body, path_prefix))

    def set_down(self, down: bool = True) -> None:
        """While down, every request (health included) gets 503."""
        with self._lock:
            self._down = down

    def reject_dataset_if(self, predicate: Callable[[dict[str, Any]], bool] | None) -> None:
        """A dataset POST answers 400 for a valid body where predicate(the dataset as it would be
        stored: v3 names and v4 lists, whichever version made it) is true; None clears."""
        with self._lock:
            self._reject = predicate

    def expire_all_tokens(self) -> None:
        """Every token from a login is expired from now on (static tokens stay valid)."""
        with self._lock:
            self._tokens = {t: (user, float("-inf")) for t, (user, _) in self._tokens.items()}

    # -- dispatch -------------------------------------------------------------------

    def _dispatch(self, req: Request) -> Answer:
        try:
            answer = self._injected_fault(req.path) or self._route(req)
        except Exception:  # a stand-in bug: loud for the test, quiet on stderr
            with self._lock:
                self._internal_errors.append(traceback.format_exc())
            answer = _error(500, "stand-in internal error, see SciCatStandIn.internal_errors")
        with self._lock:
            self._log.append((req.method, req.path, answer.status))
        if self.delay_s:
            time.sleep(self.delay_s)
        return answer

    def _injected_fault(self, path: str) -> Answer | None:
        with self._lock:
            if self._down:
                return _error(503, "Service Unavailable")
            for fault in self._faults:
                if fault.applies_to(path):
                    fault.count -= 1
                    self._faults = [f for f in self._faults if f.count > 0]
                    return Answer(fault.status, fault.body) if fault.body is not None else _error(
                        fault.status, HTTPStatus(fault.status).phrase if fault.status in _KNOWN_STATUS else "Error")
        return None

    def _routes(self) -> list[tuple[str, tuple[str | None, ...], Callable[[Request], Answer], str]]:
        """(method, path segments with None for a parameter, handler, who may call it): "anyone"
        without a token, "reader" anonymous too (a token the stand-in never issued counts as
        none, as in the backend), "writer" only with a valid token (else 403, never 401).
        The first match wins: fixed segments (count, findOne) before a parameter."""
        return [
            ("POST", ("auth", "login"), self._login, "anyone"),
            ("POST", ("users", "login"), lambda req: Answer(201, empty=True), "anyone"),  # the deprecated stub
            ("GET", ("auth", "whoami"), self._whoami, "reader"),
            ("POST", ("auth", "logout"), lambda req: Answer(200, {"logout": "successful"}), "writer"),
            ("GET", ("health",), lambda req: Answer(200, {"status": "ok", "info": {"mongodb": {"status": "up"}},
                                                           "error": {}, "details": {"mongodb": {"status": "up"}}}),
             "anyone"),
            ("POST", ("datasets",), self._create_dataset, "writer"),
            ("POST", ("datasets", "isvalid"), self._dataset_is_valid, "writer"),
            ("GET", ("datasets",), lambda req: self._find(req, self._datasets_readable(req.user), self._listed_dataset),
             "reader"),
            ("GET", ("datasets", "count"), lambda req: self._count(req, self._datasets_readable(req.user)), "reader"),
            ("GET", ("datasets", "findone"),
             lambda req: self._find(req, self._datasets_readable(req.user), self._dataset_view, one=True), "reader"),
            ("GET", ("datasets", None), self._get_dataset, "reader"),
            ("POST", ("datasets", None, "origdatablocks"), self._create_block, "writer"),
            ("GET", ("datasets", None, "origdatablocks"), self._blocks_of_dataset, "reader"),
            ("POST", ("origdatablocks",), self._create_block, "writer"),
            ("GET", ("origdatablocks",), lambda req: self._find(req, self._blocks), "reader"),
            ("GET", ("origdatablocks", "count"), lambda req: NOT_YOURS, "reader"),  # recorded: 403, even so
            ("GET", ("origdatablocks", None), self._get_block, "reader"),
            ("POST", ("proposals",), lambda req: self._create(req, "proposal"), "writer"),
            ("GET", ("proposals",), lambda req: self._find(req, self._readable(req.user, self._proposals)), "reader"),
            ("GET", ("proposals", None), lambda req: self._lookup(req, "proposal"), "reader"),
            ("POST", ("samples",), lambda req: self._create(req, "sample"), "writer"),
            ("GET", ("samples",), lambda req: self._find(req, self._readable(req.user, self._samples)), "reader"),
            ("GET", ("samples", None), lambda req: self._lookup(req, "sample"), "reader"),
            ("POST", ("instruments",), lambda req: self._create(req, "instrument"), "writer"),
            ("GET", ("instruments",), lambda req: self._find(req, self._instruments.values()), "reader"),
            ("GET", ("instruments", "findone"),
             lambda req: self._find(req, self._instruments.values(), one=True), "reader"),
            ("GET", ("instruments", None), self._get_instrument, "reader"),
            ("DELETE", ("datasets", None), self._delete_dataset, "writer"),
            ("DELETE", ("origdatablocks", None), self._delete_block, "writer"),
            ("DELETE", ("proposals", None), lambda req: self._delete(req, "proposal"), "writer"),
            ("DELETE", ("samples", None), lambda req: self._delete(req, "sample"), "writer"),
            ("DELETE", ("instruments", None), lambda req: self._delete(req, "instrument"), "writer"),
            *self._attachment_routes(),
        ]

    def _v4_routes(self) -> list[tuple[str, tuple[str | None, ...], Callable[[Request], Answer], str]]:
        """Under /api/v4: datasets and origdatablocks only, every route but the public one needing a token."""
        missing = _error(404, "dataset: null not found")
        return [
            ("POST", ("datasets",), self._create_v4_dataset, "writer"),
            ("POST", ("datasets", "isvalid"), self._v4_dataset_is_valid, "writer"),
            ("GET", ("datasets",), lambda req: self._find(req, self._datasets_readable(req.user), self._v4_view),
             "writer"),
            ("GET", ("datasets", "count"), lambda req: self._count(req, self._datasets_readable(req.user)), "writer"),
            ("GET", ("datasets", "findone"),
             lambda req: self._find(req, self._datasets_readable(req.user), self._v4_view, one=True), "writer"),
            ("GET", ("datasets", "public", None), self._get_public_v4_dataset, "anyone"),
            ("GET", ("datasets", None), lambda req: self._get_dataset(req, self._v4_view, missing), "writer"),
            ("DELETE", ("datasets", None), lambda req: self._delete_dataset(req, missing), "writer"),
            ("POST", ("origdatablocks",), self._create_block, "writer"),
            ("GET", ("origdatablocks",), lambda req: self._find(req, self._blocks, self._v4_block_view), "writer"),
            ("DELETE", ("origdatablocks", None), self._delete_block, "writer"),
        ]

    def _served_routes(self, prefix: str) -> list[tuple[str, tuple[str | None, ...], Callable[[Request], Answer], str]]:
        if prefix == V4_PREFIX:
            return self._v4_routes() + self._v4_attachment_routes() if "v4" in self.apis else []
        routes = self._routes()
        if "v3" not in self.apis:  # v3 switched off: its datasets and origdatablocks are gone
            routes = [r for r in routes if r[1][0] not in ("datasets", "origdatablocks")]
        return routes

    def _route(self, req: Request) -> Answer:
        path = req.path.rstrip("/") or "/"
        prefix = next((p for p in (API_PREFIX, V4_PREFIX) if path.lower().startswith(p + "/")), "")
        if path.lower() == "/health":
            rel, prefix = ["health"], API_PREFIX
        elif prefix:
            # Split before decoding: a pid's "/" comes as %2F and stays inside one segment.
            rel = [urllib.parse.unquote(s) for s in path[len(prefix) + 1:].split("/")]
        else:
            rel = None
        for method, pattern, handler, who in self._served_routes(prefix) if rel else ():
            if method != req.method or len(pattern) != len(rel):
                continue
            if all(p is None or p == seg.lower() for p, seg in zip(pattern, rel)):  # routes ignore case
                req.args = tuple(seg for p, seg in zip(pattern, rel) if p is None)
                try:
                    if who != "anyone":
                        req.user = self._authenticate(req)
                        if who == "writer" and req.user is None:
                            return FORBIDDEN
                    return handler(req)
                except _Refused as e:
                    return e.answer
        return _error(404, f"Cannot {req.method} {req.path}")

    # -- auth -----------------------------------------------------------------------

    def _login(self, req: Request) -> Answer:
        body = _json_body(req)
        user, password = (body.get("username"), body.get("password")) if isinstance(body, dict) else (None, None)
        known = self._users.get(user) if isinstance(user, str) else None
        if known is None or not isinstance(password, str) or not hmac.compare_digest(known.encode(),
                                                                                        password.encode()):
            return UNAUTHORIZED
        now = time.time()
        user_id = self._user_id(user)
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        claims = _b64(json.dumps({"_id": user_id, "username": user, "iat": int(now),
                                  "exp": int(now + self.token_lifetime_s)}).encode())
        token = f"{header}.{claims}.{_b64(secrets.token_bytes(32))}"
        with self._lock:
            self._tokens[token] = (user, time.monotonic() + self.token_lifetime_s)
            self._logins += 1
        return Answer(201, {
            "access_token": token, "id": token, "expires_in": self.token_lifetime_s,
            "ttl": self.token_lifetime_s, "created": _now(), "userId": user_id,
            "user": {"_id": user_id, "username": user, "email": f"{user}@scicat.local", "authStrategy": "local",
                     "__v": 0, "id": user_id},
        })

    @staticmethod
    def _user_id(user: str) -> str:
        return hashlib.sha1(user.encode()).hexdigest()[:24]  # an ObjectId's 24 hex digits, the same each login

    def _whoami(self, req: Request) -> Answer:
        if req.user is None:
            return Answer(200, empty=True)
        return Answer(200, {"_id": self._user_id(req.user), "username": req.user, "email": f"{req.user}@scicat.local",
                            "currentGroups": self._groups_of(req.user), "authStrategy": "local"})

    def _authenticate(self, req: Request) -> str | None:
        """The caller, or None for anonymous: no token, a token not in the header after
        "Bearer ", or one the stand-in never issued (the backend's reading of a bad JWT).
        A token it issued that has expired is refused with 401 (not recorded)."""
        scheme, _, token = (req.headers.get("Authorization") or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        with self._lock:
            if token in self._static_tokens:
                return self._static_tokens[token]
            user, expires = self._tokens.get(token, (None, float("inf")))
        if time.monotonic() >= expires:
            raise _Refused(UNAUTHORIZED)
        return user

    def _groups_of(self, user: str) -> list[str]:
        return self._user_groups.get(user, [user])

    def _may_read(self, user: str | None, doc: dict[str, Any]) -> bool:
        if doc.get("isPublished") is True:
            return True
        if user is None:
            return False
        if user in self._admins:
            return True
        groups = self._groups_of(user)
        return doc.get("ownerGroup") in groups or any(g in groups for g in doc.get("accessGroups") or [])

    def _readable(self, user: str | None, table: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        with self._lock:
            return [doc for doc in table.values() if self._may_read(user, doc)]

    def _may_create_dataset(self, user: str, body: dict[str, Any]) -> bool:
        if user in self._privileged:  # CREATE_DATASET_PRIVILEGED_GROUPS
            return True
        if body["ownerGroup"] not in self._groups_of(user):
            return False
        return body.get("pid") is None or user in self._pid_users  # CREATE_DATASET_WITH_PID_GROUPS

    # -- datasets ---------------------------------------------------------------------

    def _dataset_problems(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        table = {"raw": RAW_DATASET_FIELDS, "derived": DERIVED_DATASET_FIELDS}.get(body.get("type"))
        if table is None:  # the generic DTO, which knows neither type's own fields
            table = {k: v for k, v in DERIVED_DATASET_FIELDS.items() if k not in ("investigator",)}
        return validate(body, table)

    def _create_dataset(self, req: Request) -> Answer:
        body = coerced(_object_body(req, Answer(400, {"status": 400, "message": "[]"})))
        problems = self._dataset_problems(body)
        if problems:
            return Answer(400, {"status": 400, "message": json.dumps(problems)})
        return self._store_dataset(req, body, "3")

    def _create_v4_dataset(self, req: Request) -> Answer:
        body = _object_body(req)
        problems = validate(body, V4_DATASET_FIELDS)
        if problems:
            return _nest_refusal(problems)
        if body.get("owner") is None:  # past the DTO, the database's required field: an unmapped 500
            return Answer(500, {"message": "Something went wrong. Please try again later.", "statusCode": 500})
        answer = self._store_dataset(req, body, "4")
        return Answer(answer.status, self._v4_view(answer.body, with_ids=True)) if answer.status == 201 else answer

    def _store_dataset(self, req: Request, body: dict[str, Any], version: str) -> Answer:
        """A valid dataset body (in the names of its version) checked further, then stored."""
        if not self._may_create_dataset(req.user, body):
            return _error(403, "Unauthorized to create this dataset")
        doc = self._new_dataset(body, req.user, version)
        with self._lock:
            reject = self._reject
        if reject is not None and reject(copy.deepcopy(doc)):  # called unlocked: it is the test's code
            return Answer(400, {"status": 400, "message": "refused by the test (SciCatStandIn.reject_dataset_if)"})
        # The SDK's model requires datasetName (the doc: server-filled), and its relationships
        # follow a newer schema than the backend's {pid, relationship}: checked without them.
        if body["type"] == "raw":
            sdk_view = {k: v for k, v in body.items() if k != "relationships"} | {
                "datasetName": doc["datasetName"],  # and times as stored: the SDK parses fewer ISO forms
                **{k: _stored_time(body[k]) for k in ("creationTime", "startTime", "endTime") if k in body}}
            refusal = self._sdk_second_opinion("dataset" if version == "3" else "dataset_v4", sdk_view)
            if refusal:
                return refusal
        empty = [name for name in MONGOOSE_REQUIRED if doc.get(name) == ""]
        if empty:
            return Answer(500, mongoose_validation_error(empty))
        if len(json.dumps(doc)) > MAX_DOCUMENT_BYTES:
            return Answer(500, {"errorLabelSet": {}, "errorResponse": {
                "index": 0, "code": 10334, "errmsg": f"object to insert too large. max size: {MAX_DOCUMENT_BYTES}"},
                "index": 0, "code": 10334})
        with self._lock:
            if doc["pid"] in self._datasets:
                return _error(409, f"A dataset with pid {doc['pid']} already exists!")
            self._datasets[doc["pid"]] = doc
            if doc.get("proposalId") in self._proposals:
                self._proposals[doc["proposalId"]]["numberOfDatasets"] += 1
            return Answer(201, copy.deepcopy(doc))

    def _dataset_is_valid(self, req: Request) -> Answer:
        body = coerced(_object_body(req))
        return Answer(200, {"valid": not self._dataset_problems(body)})

    def _v4_dataset_is_valid(self, req: Request) -> Answer:
        """v4's isValid: unknown fields count as valid (recorded), missing or mistyped ones do not."""
        problems = validate(_object_body(req), V4_DATASET_FIELDS)
        return Answer(200, {"valid": all("whitelistValidation" in p["constraints"] for p in problems)})

    def _new_dataset(self, body: dict[str, Any], user: str, version: str = "3") -> dict[str, Any]:
        """The dataset as the backend stores it: v3 names and the v4 lists. The v3 echo shows both;
        one made through v4 has the v3 names of its lists' first items (none of an empty list)."""
        now = _now()
        pid = body["pid"] if "pid" in body else f"{self.pid_prefix}/{uuid.uuid4()}"
        # datasetName missing: the last two parts of sourceFolder, as the backend fills it.
        name = body["datasetName"] if "datasetName" in body else "/".join(
            body["sourceFolder"].rstrip("/").split("/")[-2:]).strip("/")
        lifecycle = {"archivable": True, "retrievable": False, "publishable": False, "dateOfDiskPurging": now,
                     "publishedOn": now, "isOnCentralDisk": True, "archiveStatusMessage": "datasetCreated",
                     "retrieveStatusMessage": "", "retrieveIntegrityCheck": False, "_id": _object_id(),
                     "archiveRetentionTime": now, "dateOfPublishing": now}
        defaults = {"accessGroups": [], "size": 0, "packedSize": 0, "numberOfFiles": 0, "numberOfFilesArchived": 0,
                    "keywords": [], "classification": "IN=medium,AV=low,CO=low", "isPublished": False,
                    "techniques": [], "sharedWith": [], "relationships": [], "scientificMetadata": {},
                    "inputDatasets": [], "usedSoftware": []}
        doc = {**defaults, **copy.deepcopy(body)}
        investigator = doc.pop("investigator", None)  # a raw dataset's is dropped
        derived = body["type"] == "derived"
        if derived:
            doc["principalInvestigator"] = investigator  # v3 answers name a derived dataset's investigator so
        doc.update(pid=pid, datasetName=name, version=version, createdBy=user, updatedBy=user, createdAt=now,
                   updatedAt=now, _id=pid, __v=0, creationTime=_stored_time(doc["creationTime"]),
                   datasetlifecycle={**lifecycle, **doc.get("datasetlifecycle", {})},
                   scientificMetadata=with_si_units(doc["scientificMetadata"]),
                   techniques=[{**t, "_id": _object_id()} for t in doc["techniques"]])
        if version == "4":
            for single, listed in V4_LISTS.items():
                doc[listed] = doc.get(listed) or []
                if doc[listed]:
                    doc[single] = doc[listed][0]
        else:
            doc.update(principalInvestigators=[doc.get("principalInvestigator")], proposalIds=[doc.get("proposalId")],
                       # A derived dataset has no sample or instrument of its own.
                       sampleIds=[] if derived else [doc.get("sampleId")],
                       instrumentIds=[] if derived else [doc.get("instrumentId")])
        return doc

    @staticmethod
    def _listed_dataset(doc: dict[str, Any]) -> dict[str, Any]:
        """A stored dataset as a search lists it: the absent links as null."""
        return {"proposalId": None, "sampleId": None, "instrumentId": None, **doc}

    def _dataset_view(self, doc: dict[str, Any]) -> dict[str, Any]:
        """A stored dataset as GET /Datasets/{pid} or findOne shows it: with its history too."""
        return {**self._listed_dataset(doc), "history": []}

    @staticmethod
    def _v4_view(doc: dict[str, Any], with_ids: bool = False) -> dict[str, Any]:
        """A stored dataset in v4's names (the lists only); with an "id" (its techniques' too) as a
        POST or DELETE answers it, without as a read shows it."""
        view = {k: v for k, v in doc.items() if k not in V4_LISTS}
        view["scientificMetadata"] = _v4_keys(doc["scientificMetadata"])
        if with_ids:
            view.update(id=doc["pid"], techniques=[{**t, "id": t["_id"]} for t in doc["techniques"]])
        return view

    @staticmethod
    def _v4_block_view(block: dict[str, Any]) -> dict[str, Any]:
        """An origdatablock as a v4 search lists it: no "id", on the block nor its files."""
        return {**{k: v for k, v in block.items() if k != "id"},
                "dataFileList": [{k: v for k, v in f.items() if k != "id"} for f in block["dataFileList"]]}

    def _datasets_readable(self, user: str | None) -> list[dict[str, Any]]:
        return self._readable(user, self._datasets)

    def _get_dataset(self, req: Request, view: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                     missing: Answer | None = None) -> Answer:
        with self._lock:
            doc = copy.deepcopy(self._datasets.get(req.args[0]))
        if doc is None:
            return missing or _error(404, f"dataset: {req.args[0]} not found")
        if not self._may_read(req.user, doc):
            return NOT_YOURS
        return Answer(200, projected((view or self._dataset_view)(doc), _filter_of(req).get("fields")))

    def _get_public_v4_dataset(self, req: Request) -> Answer:
        with self._lock:
            doc = copy.deepcopy(self._datasets.get(req.args[0]))
        if doc is None or doc.get("isPublished") is not True:  # not recorded: taken as not there
            return _error(404, "dataset: null not found")
        return Answer(200, self._v4_view(doc))

    # -- origdatablocks ---------------------------------------------------------------

    def _create_block(self, req: Request) -> Answer:
        nested = bool(req.args)  # POST /Datasets/{pid}/origdatablocks
        body = _object_body(req)
        problems = validate(body, DATASET_BLOCK_FIELDS if nested else BLOCK_FIELDS)
        if problems:
            return _nest_refusal(problems)
        pid = req.args[0] if nested else body["datasetId"]
        with self._lock:
            dataset = copy.deepcopy(self._datasets.get(pid))
        if dataset is None:
            return _error(404, f"Dataset: {pid} not found for attaching an origdatablock")
        if req.user not in self._privileged and dataset["ownerGroup"] not in self._groups_of(req.user):
            return FORBIDDEN
        refusal = self._sdk_second_opinion("dataset_origdatablock" if nested else "origdatablock", body)
        if refusal:
            return refusal
        now, block_id = _now(), str(uuid.uuid4())
        files = [{**f, "time": _stored_time(f["time"]), "_id": (file_id := _object_id()), "id": file_id}
                 for f in body["dataFileList"]]
        block = {"isPublished": False, **copy.deepcopy(body), "datasetId": pid, "dataFileList": files,
                 # ownerGroup/accessGroups: always the dataset's, whatever was sent
                 "ownerGroup": dataset["ownerGroup"], "accessGroups": list(dataset.get("accessGroups") or []),
                 "createdBy": req.user, "updatedBy": req.user, "createdAt": now, "updatedAt": now,
                 "_id": block_id, "__v": 0, "id": block_id}
        with self._lock:
            self._blocks.append(block)
            self._resum(pid)
            return Answer(201, copy.deepcopy(block))

    def _resum(self, pid: str) -> None:
        """The dataset's size and numberOfFiles are the sums over its origdatablocks."""
        blocks = [b for b in self._blocks if b["datasetId"] == pid]
        self._datasets[pid].update(size=sum(b["size"] for b in blocks),
                                   numberOfFiles=sum(len(b["dataFileList"]) for b in blocks), updatedAt=_now())

    def _blocks_of_dataset(self, req: Request) -> Answer:
        with self._lock:
            if req.args[0] not in self._datasets:
                return _error(404, f"dataset: {req.args[0]} not found")
            if not self._may_read(req.user, self._datasets[req.args[0]]):
                return NOT_YOURS
            return Answer(200, [copy.deepcopy(b) for b in self._blocks if b["datasetId"] == req.args[0]])

    def _get_block(self, req: Request) -> Answer:
        with self._lock:
            block = next((copy.deepcopy(b) for b in self._blocks if b["_id"] == req.args[0]), None)
        if block is not None and block["datasetId"] not in self._datasets:  # left behind by a dataset's delete
            return _error(404, f"Dataset: {block['datasetId']} not found for attaching an origdatablock")
        # A missing block is a 403 in the backend, for an admin too.
        return Answer(200, block) if block is not None and self._may_read(req.user, block) else NOT_YOURS

    # -- proposals, samples, instruments ------------------------------------------------

    def _create(self, req: Request, kind: str) -> Answer:
        table, key, fields = self._catalogue(kind)
        body = _object_body(req)
        problems = validate(body, fields)
        if problems:
            return _nest_refusal(problems)
        doc = self._new_entry(kind, body, req.user)
        with self._lock:
            if doc[key] in table or kind == "instrument" and any(
                    i["uniqueName"] == doc["uniqueName"] for i in table.values()):
                return {"proposal": _error(409, f"Proposal with {doc[key]} already exists"),
                        "instrument": _error(409, "Instrument with the same unique name already exists"),
                        "sample": INTERNAL}[kind]  # a duplicate sample: the database's unmapped error
            table[doc[key]] = doc
            return Answer(201, copy.deepcopy(doc))

    def _catalogue(self, kind: str) -> tuple[dict[str, dict[str, Any]], str, dict[str, tuple[Rule, bool]]]:
        return {"proposal": (self._proposals, "proposalId", PROPOSAL_FIELDS),
                "sample": (self._samples, "sampleId", SAMPLE_FIELDS),
                "instrument": (self._instruments, "pid", INSTRUMENT_FIELDS)}[kind]

    def _new_entry(self, kind: str, body: dict[str, Any], user: str) -> dict[str, Any]:
        """A proposal, sample or instrument as the backend stores it."""
        now = _now()
        if kind == "proposal":
            defaults = {"accessGroups": [], "isPublished": False, "MeasurementPeriodList": [], "metadata": {},
                        "parentProposalId": None, "type": "Default Proposal", "instrumentIds": [],
                        "numberOfDatasets": 0}
            key = body["proposalId"]
        elif kind == "sample":
            defaults = {"accessGroups": [], "isPublished": False}
            key = body.get("sampleId") or str(uuid.uuid4())
        else:
            defaults = {"customMetadata": {}}
            key = body.get("pid") or f"{self.pid_prefix}{uuid.uuid4()}"  # no "/": the backend glues them
        doc = {**defaults, **copy.deepcopy(body), {"proposal": "proposalId", "sample": "sampleId"}.get(kind, "pid"): key,
               "createdBy": user, "updatedBy": user, "createdAt": now, "updatedAt": now, "_id": key, "__v": 0,
               "id": key}
        if kind == "proposal":
            doc["MeasurementPeriodList"] = [{**m, "id": None} for m in doc["MeasurementPeriodList"]]
        if isinstance(doc.get("sampleCharacteristics"), dict):
            doc["sampleCharacteristics"] = with_si_units(doc["sampleCharacteristics"])
        return doc

    def _lookup(self, req: Request, kind: str) -> Answer:
        table = self._catalogue(kind)[0]
        doc = self._snapshot(table.get(req.args[0]))
        if doc is None:
            return _error(404, f"{kind.capitalize()}: {req.args[0]} not found")
        return Answer(200, doc) if self._may_read(req.user, doc) else _error(403, f"Unauthorized to this {kind}")

    def _get_instrument(self, req: Request) -> Answer:
        doc = self._snapshot(self._instruments.get(req.args[0]))
        return Answer(200, doc) if doc is not None else Answer(200, empty=True)  # absent: 200, empty body

    # -- deletes (no cascade, as in the backend) ----------------------------------------

    def _may_delete(self, user: str) -> None:
        if user not in self._admins and user not in self._privileged:
            raise _Refused(FORBIDDEN)

    def _delete_dataset(self, req: Request, missing: Answer | None = None) -> Answer:
        self._may_delete(req.user)
        with self._lock:
            doc = self._datasets.pop(req.args[0], None)
        if doc is None:
            return missing or Answer(404, {"message": "Not Found", "statusCode": 404})
        # Answered in v4's names (the lists only, and an "id"), by v3 too; its origdatablocks stay.
        return Answer(200, self._v4_view(doc, with_ids=True))

    def _delete_block(self, req: Request) -> Answer:
        self._may_delete(req.user)
        with self._lock:
            block = next((b for b in self._blocks if b["_id"] == req.args[0]), None)
            if block is None:
                return INTERNAL
            self._blocks.remove(block)
            if block["datasetId"] not in self._datasets:  # deleted all the same
                return _error(404, f"Dataset #{block['datasetId']} not found")
            self._resum(block["datasetId"])
            return Answer(200, copy.deepcopy(block))

    def _delete(self, req: Request, kind: str) -> Answer:
        self._may_delete(req.user)
        with self._lock:
            doc = self._catalogue(kind)[0].pop(req.args[0], None)
        if doc is None:
            return Answer(200, empty=True) if kind == "instrument" else _error(
                404, f"{kind.capitalize()}: {req.args[0]} not found")
        return Answer(200, doc)

    # -- reads ------------------------------------------------------------------------

    def _find(self, req: Request, docs: Any, view: Callable[[dict[str, Any]], dict[str, Any]] = dict,
              one: bool = False) -> Answer:
        """?filter={"where", "fields", "limits": {"limit", "skip", "order": "field:desc"}} (also as
        ?filters=); a top-level "limit", "skip" or "order" is ignored, as by the real backend."""
        flt = _filter_of(req)
        where = flt.get("where", {})
        if not isinstance(where, dict):
            return _error(400, "filter.where must be an object")
        unsupported = _unsupported_operator(where)
        if unsupported:  # loud rather than a silent mismatch: the real backend would apply it
            return _error(400, f"stand-in: the operator in where.{unsupported} is not implemented")
        limits = flt.get("limits") if isinstance(flt.get("limits"), dict) else {}
        limit, skip, order = limits.get("limit"), limits.get("skip"), limits.get("order")
        if limit is not None and type(limit) is not int:
            return _error(400, f"invalid argument to $limit stage: Expected a number in: $limit: {json.dumps(limit)}")
        with self._lock:
            found = [view(copy.deepcopy(d)) for d in docs if matches(d, where)]
        if isinstance(order, str):
            field_name, _, direction = order.partition(":")
            found.sort(key=lambda d: str(d.get(field_name, "")), reverse=direction.lower() == "desc")
        found = found[skip:] if type(skip) is int and skip > 0 else found
        found = [projected(d, flt.get("fields")) for d in (found[:limit] if limit and limit > 0 else found)]
        if one:
            return Answer(200, found[0]) if found else Answer(200, empty=True)
        return Answer(200, found)

    def _count(self, req: Request, docs: list[dict[str, Any]]) -> Answer:
        where = _filter_of(req).get("where", {})  # ?where= is not read: everything visible is counted
        return Answer(200, {"count": sum(1 for d in docs if matches(d, where))})

    # -- attachments: the v3 routes under a dataset and the v4 /attachments ones ---------------
    #
    # Stored once, in v4's names (relationships, aid); each route shows them as recorded:
    # v3 with a datasetId, newest first and at most ten; v4 lists without "id". No cascade:
    # a dataset's delete leaves its attachments.

    def _attachment_routes(self) -> list[tuple[str, tuple[str | None, ...], Callable[[Request], Answer], str]]:
        return [
            ("POST", ("datasets", None, "attachments"), self._create_attachment_v3, "writer"),
            ("GET", ("datasets", None, "attachments"), self._attachments_of_dataset, "reader"),
            ("GET", ("datasets", None, "attachments", "count"),
             lambda req: Answer(200, {"count": len(self._attachments_of(self._readable_dataset(req)))}), "reader"),
            ("GET", ("datasets", None, "thumbnail"), self._thumbnail_of_dataset, "reader"),
            ("DELETE", ("datasets", None, "attachments", None), self._delete_attachment_v3, "writer"),
            ("DELETE", ("datasets", None, "attachments"), self._delete_attachments_v3, "writer"),
        ]

    def _v4_attachment_routes(self) -> list[tuple[str, tuple[str | None, ...], Callable[[Request], Answer], str]]:
        return [
            ("POST", ("attachments",), self._create_attachment_v4, "writer"),
            ("POST", ("attachments", "isvalid"), self._attachment_is_valid, "writer"),
            ("GET", ("attachments",), lambda req: self._find_attachments(req, published_only=False), "reader"),
            ("GET", ("attachments", "public"), lambda req: self._find_attachments(req, published_only=True), "anyone"),
            ("GET", ("attachments", None), self._get_attachment, "reader"),
            ("DELETE", ("attachments", None), self._delete_attachment_v4, "writer"),
        ]

    def attachments_of(self, pid: str) -> list[dict[str, Any]]:
        """The attachments of a dataset, oldest first, in v4's names (a copy)."""
        with self._lock:
            return [copy.deepcopy(a) for a in self._attachments if _attachment_target(a) == pid]

    def _readable_dataset(self, req: Request) -> str:
        """The pid of the path's dataset, if it exists and the caller may read it."""
        with self._lock:
            dataset = self._datasets.get(req.args[0])
            if dataset is None:
                raise _Refused(_error(404, f"dataset: {req.args[0]} not found"))
            if not self._may_read(req.user, dataset):
                raise _Refused(NOT_YOURS)
        return req.args[0]

    def _attachments_of(self, pid: str) -> list[dict[str, Any]]:
        """As the v3 routes see them: newest first, ten at most (recorded: count says 10 of 12 too)."""
        with self._lock:
            return [copy.deepcopy(a) for a in reversed(self._attachments)
                    if _attachment_target(a) == pid][:V3_ATTACHMENTS_LISTED]

    def _attachments_of_dataset(self, req: Request) -> Answer:
        return Answer(200, [_v3_attachment(a) for a in self._attachments_of(self._readable_dataset(req))])

    def _thumbnail_of_dataset(self, req: Request) -> Answer:
        shown = next((a for a in self._attachments_of(self._readable_dataset(req)) if "thumbnail" in a), None)
        return Answer(200, {"thumbnail": shown["thumbnail"]} if shown else {})

    def _new_attachment(self, body: dict[str, Any], user: str, relationships: list[dict[str, Any]]) -> dict[str, Any]:
        now, aid = _now(), body.get("aid") or str(uuid.uuid4())
        doc = {"_id": aid, "createdBy": user, "updatedBy": user, "ownerGroup": body["ownerGroup"],
               "accessGroups": list(body.get("accessGroups") or []), "isPublished": body.get("isPublished", False),
               "aid": aid, **({"thumbnail": body["thumbnail"]} if body.get("thumbnail") is not None else {}),
               "caption": body["caption"],
               "relationships": [{**r, "relationType": r.get("relationType") or "is attached to"}
                                 for r in relationships],
               "createdAt": now, "updatedAt": now, "__v": 0}
        with self._lock:
            if any(a["_id"] == aid for a in self._attachments):
                raise _Refused(INTERNAL)  # a client aid used already: the database's duplicate key
            self._attachments.append(doc)
        return copy.deepcopy(doc)

    def _create_attachment_v3(self, req: Request) -> Answer:
        body = _object_body(req)
        problems = attachment_problems(body, V3_ATTACHMENT_FIELDS)
        if problems:
            return _nest_refusal(problems)
        with self._lock:
            dataset = copy.deepcopy(self._datasets.get(req.args[0]))
        if dataset is None:
            return _error(404, f"dataset: {req.args[0]} not found")
        if req.user not in self._privileged and dataset["ownerGroup"] not in self._groups_of(req.user):
            return FORBIDDEN
        # The path names the dataset (a datasetId in the body is ignored), the dataset its owner
        # group; a client's "id" is ignored too (recorded).
        doc = self._new_attachment({**body, "ownerGroup": dataset["ownerGroup"], "aid": None}, req.user,
                                   [{"targetId": dataset["pid"], "targetType": "dataset"}])
        return Answer(201, _v3_attachment(doc))

    def _delete_attachment_v3(self, req: Request) -> Answer:
        """Recorded: the dataset's oldest attachment goes, whatever the id; none left, an empty answer."""
        self._may_delete(req.user)
        pid = self._readable_dataset(req)
        with self._lock:
            doc = next((a for a in self._attachments if _attachment_target(a) == pid), None)
            if doc is None:
                return Answer(200, empty=True)
            self._attachments.remove(doc)
        return Answer(200, doc)

    def _delete_attachments_v3(self, req: Request) -> Answer:
        self._may_delete(req.user)
        pid = self._readable_dataset(req)
        with self._lock:
            kept = [a for a in self._attachments if _attachment_target(a) != pid]
            gone, self._attachments = len(self._attachments) - len(kept), kept
        return Answer(200, {"count": gone})

    def _create_attachment_v4(self, req: Request) -> Answer:
        body = _object_body(req)
        problems = attachment_problems(body, V4_ATTACHMENT_FIELDS)
        if problems:
            return _nest_refusal(problems)
        # Unlike v3, the owner group is kept as sent and the targets are not checked (recorded).
        doc = self._new_attachment(body, req.user, body.get("relationships") or [])
        return Answer(201, {**doc, "id": doc["_id"]})

    def _attachment_is_valid(self, req: Request) -> Answer:
        body = _object_body(req)
        problems = attachment_problems(body, V4_ATTACHMENT_FIELDS)
        return Answer(200, {"valid": not problems, "reason": [
            {"target": body, "property": p["property"], "children": [], "constraints": p["constraints"]}
            for p in problems]})

    def _find_attachments(self, req: Request, published_only: bool) -> Answer:
        flt = _filter_of(req)
        where = flt.get("where", {})
        if not isinstance(where, dict):
            return _error(400, "filter.where must be an object")
        unknown = next((k for k in where if k.split(".")[0] not in V4_ATTACHMENT_FIELDS and k != "_id"), None)
        if unknown:
            return _error(400, f"Property where.{unknown} should not exist in the filter object")
        limits = flt.get("limits") if isinstance(flt.get("limits"), dict) else {}
        limit = limits.get("limit") if type(limits.get("limit")) is int else V4_ATTACHMENTS_LISTED
        with self._lock:
            found = [copy.deepcopy(a) for a in self._attachments if _attachment_matches(a, where)
                     and self._may_read(None if published_only else req.user, a)]
        # Recorded: a projection lists them oldest first, a whole listing newest first.
        if not flt.get("fields"):
            found.reverse()
        return Answer(200, [projected(a, flt.get("fields")) for a in found[:limit]])

    def _get_attachment(self, req: Request) -> Answer:
        with self._lock:
            doc = next((copy.deepcopy(a) for a in self._attachments if a["_id"] == req.args[0]), None)
        if doc is None:
            return _error(404, f"Attachment: {req.args[0]} not found")
        if not self._may_read(req.user, doc):
            return _error(403, "Unauthorized to this attachment")
        return Answer(200, {**doc, "id": doc["_id"]})

    def _delete_attachment_v4(self, req: Request) -> Answer:
        self._may_delete(req.user)
        with self._lock:
            doc = next((a for a in self._attachments if a["_id"] == req.args[0]), None)
            if doc is None:
                return _error(404, f"Attachment: {req.args[0]} not found")
            self._attachments.remove(doc)
        return Answer(200, {**doc, "id": doc["_id"]})

    # -- the SDK's second opinion ---------------------------------------------------------

    def _sdk_second_opinion(self, kind: str, body: dict[str, Any]) -> Answer | None:
        model = sdk_models().get(kind)
        if model is None:
            return None
        try:
            model.from_dict(copy.deepcopy(body))
        except Exception as e:  # pydantic.ValidationError, or anything the model trips on
            error = f"{type(e).__name__}: {e}"
            with self._lock:
                self._disagreements.append({"route": kind, "model": model.__name__, "body": body, "error": error})
            return Answer(400, {"status": 400, "message": f"stand-in accepted but scicat-sdk-py "
                                                          f"{model.__name__} refused: {error}"})
        return None
