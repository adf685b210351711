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
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_PREFIX = "/api/v3"

# -- validation rules ------------------------------------------------------------

# Only the extended ISO-8601 forms a JavaScript Date can parse: basic forms such as
# 20240101T100000Z are ISO-8601 too, but the backend cannot store them.
_ISO_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?"
                     r"(?:Z|[+-](\d{2})(?::?(\d{2}))?)?)?")
_EMAIL_RE = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")


def _is_iso(v: Any) -> bool:
    match = _ISO_RE.fullmatch(v) if isinstance(v, str) else None
    if not match:
        return False
    year, month, day, hour, minute, second, off_h, off_m = (int(g or 0) for g in match.groups())
    try:
        datetime(year, month, day, hour, minute, second)  # e.g. month 13, Feb 30, 25:00
    except ValueError:
        return False
    return off_h <= 23 and off_m <= 59


def _is_emails(v: Any) -> bool:
    """One email, or several separated by ';' (spaces around them allowed)."""
    return isinstance(v, str) and all(_EMAIL_RE.fullmatch(part.strip()) for part in v.split(";"))


def _is_folder(v: Any) -> bool:
    return isinstance(v, str) and v.startswith("/") and not v.endswith("/")


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
EMAILS = Rule("isEmail", _is_emails, "must be an email, or several separated by ';'")
FOLDER = Rule("isAbsoluteFolder", _is_folder, "must be a non-empty absolute path without a trailing slash")
STRINGS = Rule("isArray", _is_string_list, "must be an array of strings")
OBJECT = Rule("isObject", lambda v: isinstance(v, dict), "must be an object")
TECHNIQUES = Rule("isArray", _is_list_of(frozenset({"pid", "name"})), "must be an array of {pid, name} strings")
RELATIONSHIPS = Rule("isArray", _is_list_of(frozenset({"pid", "relationship"})),
                     "must be an array of {pid, relationship} strings")
LIFECYCLE = Rule("isObject", lambda v: isinstance(v, dict) and set(v) <= LIFECYCLE_KEYS,
                 "must be an object with datasetlifecycle fields only")
RAW = Rule("equals", lambda v: v == "raw", "must be 'raw' (derived datasets are not implemented by the stand-in)")
FILE_LIST = Rule("arrayMinSize", lambda v: isinstance(v, list) and len(v) > 0, "must contain at least 1 elements")

# field -> (rule, required). The properties of the backend's CreateRawDatasetObsoleteDto,
# what POST /api/v3/Datasets takes for type "raw". Where the doc and that DTO differ the
# doc wins: datasetName is optional (the DTO requires it), size and numberOfFiles are
# integers (the DTO says number), the email and folder rules are the doc's.
RAW_DATASET_FIELDS: dict[str, tuple[Rule, bool]] = {
    "type": (RAW, True), "owner": (STRING, True), "ownerGroup": (STRING, True), "contactEmail": (EMAILS, True),
    "sourceFolder": (FOLDER, True), "creationTime": (DATE, True), "principalInvestigator": (STRING, True),
    "creationLocation": (STRING, True),
    "datasetName": (STRING, False), "pid": (STRING, False), "accessGroups": (STRINGS, False),
    "instrumentGroup": (STRING, False), "ownerEmail": (EMAIL, False), "orcidOfOwner": (STRING, False),
    "sourceFolderHost": (STRING, False), "size": (INTEGER, False), "packedSize": (INTEGER, False),
    "numberOfFiles": (INTEGER, False), "numberOfFilesArchived": (INTEGER, False), "validationStatus": (STRING, False),
    "keywords": (STRINGS, False), "description": (STRING, False), "classification": (STRING, False),
    "license": (STRING, False), "isPublished": (BOOLEAN, False), "techniques": (TECHNIQUES, False),
    "sharedWith": (STRINGS, False), "relationships": (RELATIONSHIPS, False), "datasetlifecycle": (LIFECYCLE, False),
    "scientificMetadata": (OBJECT, False), "scientificMetadataSchema": (STRING, False),
    "scientificMetadataValid": (BOOLEAN, False), "comment": (STRING, False), "dataQualityMetrics": (NUMBER, False),
    "proposalId": (STRING, False), "runNumber": (STRING, False), "startTime": (DATE, False), "endTime": (DATE, False),
    "dataFormat": (STRING, False), "sampleId": (STRING, False), "instrumentId": (STRING, False),
    "version": (STRING, False),
    # Derived-dataset fields the backend's raw DTO carries too (it accepts them on a raw dataset).
    "investigator": (STRING, False), "inputDatasets": (STRINGS, False), "usedSoftware": (STRINGS, False),
    "jobParameters": (OBJECT, False), "jobLogData": (STRING, False),
}

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
    if isinstance(body.get("dataFileList"), list) and table.get("dataFileList", (None,))[0] is FILE_LIST:
        for i, entry in enumerate(body["dataFileList"]):
            problems += validate(entry, DATA_FILE_FIELDS, f"{prefix}dataFileList.{i}.")
    return problems


def has_mongo_unsafe_key(value: Any) -> bool:
    """A key containing '.' or '$' at any depth: MongoDB refuses it and the backend answers 500."""
    if isinstance(value, dict):
        return any("." in k or "$" in k or has_mongo_unsafe_key(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_mongo_unsafe_key(v) for v in value)
    return False


def with_si_units(metadata: dict[str, Any]) -> dict[str, Any]:
    """Top-level {value: number, unit: str} entries get valueSI/unitSI, as the backend adds them.
    The conversion is the identity: enough to show a client that the fields appear."""
    out = {}
    for key, entry in metadata.items():
        if (isinstance(entry, dict) and type(entry.get("value")) in (int, float)
                and isinstance(entry.get("unit"), str)):
            entry = {**entry, "valueSI": entry["value"], "unitSI": entry["unit"]}
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
    """Equality on (dotted) paths, like a MongoDB where without operators; null matches absent."""
    for path, expected in where.items():
        found = _at_path(doc, path)
        if expected is None and found is _MISSING:
            continue
        if found is _MISSING or found != expected:
            return False
    return True


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


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
                _sdk_cache = {"dataset": CreateRawDatasetObsoleteDto, "origdatablock": CreateOrigDatablockDto,
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
    return Answer(status, {"message": message, **extra, "statusCode": status})


_KNOWN_STATUS = {int(s) for s in HTTPStatus}
FORBIDDEN = _error(403, "Forbidden resource")
UNAUTHORIZED = _error(401, "Unauthorized")


class _BadBody(Exception):
    pass


def _json_body(req: Request) -> Any:
    # Express' body parser reads only application/json; anything else leaves an empty body.
    ctype = (req.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if ctype != "application/json" or not req.raw_body.strip():
        return {}

    def refuse_constant(name: str) -> Any:  # NaN/Infinity are not JSON for JavaScript
        raise ValueError(f"unexpected token {name}")
    try:
        return json.loads(req.raw_body, parse_constant=refuse_constant)
    except ValueError as e:
        raise _BadBody(str(e)) from None


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
        relative = path[len(API_PREFIX):] if path.lower().startswith(API_PREFIX) else path
        return path.lower().startswith(prefix) or relative.lower().startswith(prefix)


# -- the stand-in ---------------------------------------------------------------------

class SciCatStandIn:
    """A SciCat backend on 127.0.0.1:<ephemeral port>; `url` is its API base (…/api/v3)."""

    def __init__(self, *, users: dict[str, str] | None = None,
                 user_groups: dict[str, list[str]] | None = None,
                 privileged_users: set[str] | None = None, pid_users: set[str] | None = None,
                 admin_users: set[str] | None = None,
                 token_lifetime_s: float = 3600, static_tokens: set[str] | dict[str, str] | None = None,
                 pid_prefix: str = "20.500.12269", delay_s: float = 0.0):
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

        self._lock = threading.RLock()
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> (user, monotonic expiry)
        self._datasets: dict[str, dict[str, Any]] = {}
        self._blocks: list[dict[str, Any]] = []
        self._proposals: dict[str, dict[str, Any]] = {}
        self._samples: dict[str, dict[str, Any]] = {}
        self._instruments: dict[str, dict[str, Any]] = {}
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
        """A proposal as the backend stores it (ProposalClass); refuses one a real backend would not hold."""
        self._seed(self._proposals, "proposalId", doc, ("proposalId", "ownerGroup", "email", "title"),
                   {"accessGroups": [], "isPublished": False, "type": "Default Proposal", "MeasurementPeriodList": []})

    def add_sample(self, doc: dict[str, Any]) -> None:
        """A sample as the backend stores it (OutputSampleDto)."""
        self._seed(self._samples, "sampleId", doc, ("sampleId", "ownerGroup"),
                   {"accessGroups": [], "isPublished": False, "sampleCharacteristics": {}})

    def add_instrument(self, doc: dict[str, Any]) -> None:
        """An instrument as the backend stores it (Instrument)."""
        self._seed(self._instruments, "pid", doc, ("pid", "uniqueName", "name"), {"customMetadata": {}})

    def _seed(self, table: dict[str, dict[str, Any]], key: str, doc: dict[str, Any], required: tuple[str, ...],
              defaults: dict[str, Any]) -> None:
        missing = [name for name in required if not isinstance(doc.get(name), str) or not doc[name]]
        if missing:
            raise ValueError(f"the backend requires {', '.join(missing)}: cannot seed {doc}")
        now = _now()
        stored = {**defaults, **copy.deepcopy(doc), "createdBy": "admin", "updatedBy": "admin",
                  "createdAt": now, "updatedAt": now}
        with self._lock:
            table[doc[key]] = stored

    def _snapshot(self, value: Any) -> Any:
        with self._lock:
            return copy.deepcopy(value)

    datasets = property(lambda self: self._snapshot(self._datasets), doc="pid -> stored dataset (a copy)")
    origdatablocks = property(lambda self: self._snapshot(self._blocks), doc="stored origdatablocks (a copy)")
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
        """The next `count` requests (under path_prefix, full or relative to /api/v3) get `status`, doing nothing."""
        if count > 0:
            with self._lock:
                self._faults.append(_Fault(status, count, body, path_prefix))

    def set_down(self, down: bool = True) -> None:
        """While down, every request (health included) gets 503."""
        with self._lock:
            self._down = down

    def reject_dataset_if(self, predicate: Callable[[dict[str, Any]], bool] | None) -> None:
        """POST /Datasets answers 400 for a valid body where predicate(body) is true; None clears."""
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

    def _routes(self) -> list[tuple[str, tuple[str | None, ...], Callable[[Request], Answer], bool]]:
        """(method, path segments with None for a parameter, handler, needs a token).
        Reads need a token too: simpler than the backend's public-only anonymous reads, and a
        client that forgets its token on a read is caught."""
        return [
            ("POST", ("auth", "login"), self._login, False),
            ("POST", ("users", "login"), lambda req: Answer(201, empty=True), False),  # the deprecated stub
            ("GET", ("health",), lambda req: Answer(200, {"status": "ok", "info": {"database": {"status": "up"}}}),
             False),
            ("POST", ("datasets",), self._create_dataset, True),
            ("GET", ("datasets",), lambda req: self._find(req, self._readable(req.user, self._datasets)), True),
            ("GET", ("datasets", None), self._get_dataset, True),
            ("POST", ("datasets", None, "origdatablocks"), self._create_block, True),
            ("GET", ("datasets", None, "origdatablocks"), self._blocks_of_dataset, True),
            ("POST", ("origdatablocks",), self._create_block, True),
            ("GET", ("origdatablocks",), lambda req: self._find(req, self._blocks), True),
            ("GET", ("proposals", None), lambda req: self._lookup(self._proposals, req), True),
            ("GET", ("samples", None), lambda req: self._lookup(self._samples, req), True),
            ("GET", ("instruments", None), self._get_instrument, True),
            ("GET", ("instruments",), lambda req: self._find(req, self._instruments.values()), True),
        ]

    def _route(self, req: Request) -> Answer:
        path = req.path.rstrip("/") or "/"
        if path.lower() == "/health":
            rel = ["health"]
        elif path.lower().startswith(API_PREFIX + "/"):
            # Split before decoding: a pid's "/" comes as %2F and stays inside one segment.
            rel = [urllib.parse.unquote(s) for s in path[len(API_PREFIX) + 1:].split("/")]
        else:
            rel = None
        for method, pattern, handler, needs_token in self._routes() if rel else ():
            if method != req.method or len(pattern) != len(rel):
                continue
            if all(p is None or p == seg.lower() for p, seg in zip(pattern, rel)):  # routes ignore case
                req.args = tuple(seg for p, seg in zip(pattern, rel) if p is None)
                if needs_token:
                    req.user, refusal = self._authenticate(req)
                    if refusal:
                        return refusal
                try:
                    return handler(req)
                except _BadBody as e:
                    return _error(400, f"invalid JSON body: {e}", error="Bad Request")
        return _error(404, f"Cannot {req.method} {req.path}", error="Not Found")

    # -- auth -----------------------------------------------------------------------

    def _login(self, req: Request) -> Answer:
        body = _json_body(req)
        user, password = (body.get("username"), body.get("password")) if isinstance(body, dict) else (None, None)
        known = self._users.get(user) if isinstance(user, str) else None
        if known is None or not isinstance(password, str) or not hmac.compare_digest(known.encode(),
                                                                                        password.encode()):
            return UNAUTHORIZED
        now = time.time()
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        claims = _b64(json.dumps({"_id": f"user-{user}", "username": user, "iat": int(now),
                                  "exp": int(now + self.token_lifetime_s)}).encode())
        token = f"{header}.{claims}.{_b64(secrets.token_bytes(32))}"
        with self._lock:
            self._tokens[token] = (user, time.monotonic() + self.token_lifetime_s)
            self._logins += 1
        return Answer(201, {
            "access_token": token, "id": token, "expires_in": self.token_lifetime_s,
            "ttl": self.token_lifetime_s, "created": _now(), "userId": f"user-{user}",
            "user": {"id": f"user-{user}", "username": user, "email": f"{user}@example.org",
                     "authStrategy": "local", "emailVerified": True},
        })

    def _authenticate(self, req: Request) -> tuple[str | None, Answer | None]:
        # Only the header counts: ?access_token= alone is an anonymous request, which may not write (403).
        scheme, _, token = (req.headers.get("Authorization") or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None, FORBIDDEN
        with self._lock:
            if token in self._static_tokens:
                return self._static_tokens[token], None
            user, expires = self._tokens.get(token, (None, float("-inf")))
        if user is None or time.monotonic() >= expires:
            return None, UNAUTHORIZED
        return user, None

    def _groups_of(self, user: str) -> list[str]:
        return self._user_groups.get(user, [user])

    def _may_read(self, user: str, doc: dict[str, Any]) -> bool:
        if user in self._admins or doc.get("isPublished") is True:
            return True
        groups = self._groups_of(user)
        return doc.get("ownerGroup") in groups or any(g in groups for g in doc.get("accessGroups") or [])

    def _readable(self, user: str, table: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        with self._lock:
            return [doc for doc in table.values() if self._may_read(user, doc)]

    def _may_create_dataset(self, user: str, body: dict[str, Any]) -> bool:
        if user in self._privileged:  # CREATE_DATASET_PRIVILEGED_GROUPS
            return True
        if body["ownerGroup"] not in self._groups_of(user):
            return False
        return body.get("pid") is None or user in self._pid_users  # CREATE_DATASET_WITH_PID_GROUPS

    # -- datasets ---------------------------------------------------------------------

    def _create_dataset(self, req: Request) -> Answer:
        body = _json_body(req)
        problems = validate(body, RAW_DATASET_FIELDS)
        if problems:
            return Answer(400, {"status": 400, "message": json.dumps(problems)})
        if not self._may_create_dataset(req.user, body):
            return _error(403, "Unauthorized to create this dataset", error="Forbidden")
        with self._lock:
            reject = self._reject
        if reject is not None and reject(copy.deepcopy(body)):  # called unlocked: it is the test's code
            return Answer(400, {"status": 400, "message": "refused by the test (SciCatStandIn.reject_dataset_if)"})
        doc = self._new_dataset(body, req.user)
        # The SDK's model requires datasetName (the doc: server-filled), and its relationships
        # follow a newer schema than the backend's {pid, relationship}: checked without them.
        sdk_view = {k: v for k, v in body.items() if k != "relationships"} | {"datasetName": doc["datasetName"]}
        refusal = self._sdk_second_opinion("dataset", sdk_view)
        if refusal:
            return refusal
        if has_mongo_unsafe_key(body.get("scientificMetadata")):
            return Answer(500, empty=True)  # the real backend's sharp edge: 500, empty body
        with self._lock:
            if doc["pid"] in self._datasets:
                return _error(409, f"A dataset with pid {doc['pid']} already exists!")
            self._datasets[doc["pid"]] = doc
            return Answer(201, copy.deepcopy(doc))

    def _new_dataset(self, body: dict[str, Any], user: str) -> dict[str, Any]:
        now = _now()
        pid = body.get("pid") or f"{self.pid_prefix}/{uuid.uuid4()}"
        # datasetName missing: the last two parts of sourceFolder, as the backend fills it.
        name = body.get("datasetName") or "/".join(body["sourceFolder"].strip("/").split("/")[-2:])
        defaults = {"size": 0, "numberOfFiles": 0, "packedSize": 0, "numberOfFilesArchived": 0,
                    "isPublished": False, "accessGroups": [], "keywords": [], "techniques": [],
                    "sharedWith": [], "relationships": [], "scientificMetadata": {}}
        doc = {"pid": pid, **defaults, **copy.deepcopy(body)}
        doc.update(pid=pid, datasetName=name, scientificMetadata=with_si_units(doc["scientificMetadata"] or {}),
                   version="3.0.0", createdBy=user, updatedBy=user, createdAt=now, updatedAt=now)
        return doc

    def _get_dataset(self, req: Request) -> Answer:
        with self._lock:
            doc = copy.deepcopy(self._datasets.get(req.args[0]))
        if doc is None:
            return _error(404, "Dataset not found", error="Not Found")
        return Answer(200, doc) if self._may_read(req.user, doc) else FORBIDDEN

    # -- origdatablocks ---------------------------------------------------------------

    def _create_block(self, req: Request) -> Answer:
        nested = bool(req.args)  # POST /Datasets/{pid}/origdatablocks
        body = _json_body(req)
        problems = validate(body, DATASET_BLOCK_FIELDS if nested else BLOCK_FIELDS)
        if problems:  # Nest's ValidationPipe shape: a list of messages
            texts = [text for p in problems for text in p["constraints"].values()]
            return _error(400, texts, error="Bad Request")
        pid = req.args[0] if nested else body["datasetId"]
        with self._lock:
            dataset = copy.deepcopy(self._datasets.get(pid))
        if dataset is None:
            return _error(404, f"dataset: {pid} not found", error="Not Found")
        if req.user not in self._privileged and dataset["ownerGroup"] not in self._groups_of(req.user):
            return FORBIDDEN
        refusal = self._sdk_second_opinion("dataset_origdatablock" if nested else "origdatablock", body)
        if refusal:
            return refusal
        now, block_id = _now(), str(uuid.uuid4())
        block = {"_id": block_id, "id": block_id, "isPublished": False, **copy.deepcopy(body), "datasetId": pid,
                 # ownerGroup/accessGroups: always the dataset's, whatever was sent
                 "ownerGroup": dataset["ownerGroup"], "accessGroups": list(dataset.get("accessGroups") or []),
                 "createdBy": req.user, "updatedBy": req.user, "createdAt": now, "updatedAt": now}
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
                return _error(404, "Dataset not found", error="Not Found")
            if not self._may_read(req.user, self._datasets[req.args[0]]):
                return FORBIDDEN
            return Answer(200, [copy.deepcopy(b) for b in self._blocks if b["datasetId"] == req.args[0]])

    # -- reads ------------------------------------------------------------------------

    def _lookup(self, table: dict[str, dict[str, Any]], req: Request) -> Answer:
        doc = self._snapshot(table.get(req.args[0]))
        if doc is None:
            return _error(404, "Not Found", error="Not Found")
        return Answer(200, doc) if self._may_read(req.user, doc) else FORBIDDEN

    def _get_instrument(self, req: Request) -> Answer:
        doc = self._snapshot(self._instruments.get(req.args[0]))
        return Answer(200, doc) if doc is not None else Answer(200, empty=True)  # absent: 200, empty body

    def _find(self, req: Request, docs: Any) -> Answer:
        """?filter={"where": {...}, "limits": {"limit", "skip"}}; a top-level "limit" or "skip" is
        ignored, as by the real backend (scicat-backend-next 4.27, recorded)."""
        try:
            flt = json.loads(req.query.get("filter", ["{}"])[0])
        except ValueError as e:
            return _error(400, f"filter is not JSON: {e}", error="Bad Request")
        if not isinstance(flt, dict) or not isinstance(flt.get("where", {}), dict):
            return _error(400, "filter must be an object with an object 'where'", error="Bad Request")
        where = flt.get("where", {})
        for path, expected in where.items():
            if isinstance(expected, dict) and any(k.startswith("$") or k in _LOOPBACK_OPERATORS for k in expected):
                # Loud rather than a silent mismatch: the real backend would apply the operator.
                return _error(400, f"stand-in: operators in where.{path} are not implemented", error="Bad Request")
        limits = flt.get("limits") if isinstance(flt.get("limits"), dict) else {}
        limit, skip = limits.get("limit"), limits.get("skip")
        with self._lock:
            found = [copy.deepcopy(d) for d in docs if matches(d, where)]
        found = found[skip:] if type(skip) is int and skip > 0 else found
        return Answer(200, found[:limit] if type(limit) is int and limit > 0 else found)

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
