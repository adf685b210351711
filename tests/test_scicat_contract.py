"""The stand-in against SciCat itself: every exchange recorded from a live
scicat-backend-next v4.27.0 (tests/data/scicat-exchanges.jsonl) is replayed, in
order, against the stand-in, which must give the same status, the same emptiness
of the body, the same presence of a content type and the same shape (field names
and JSON types) as recorded. Where they differ the stand-in is wrong, not the recording.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from scicat_standin import SciCatStandIn

RECORDING = Path(__file__).resolve().parent / "data" / "scicat-exchanges.jsonl"
SHARED_RECORDING = Path(__file__).resolve().parents[2] / "shared" / "reference-data" / "scicat-exchanges.jsonl"
PASSWORDS = {"ingestor": "ingestor-pass", "admin": "admin-pass"}

# Recorded cases the stand-in deliberately does not serve, by category: (test on the
# exchange, why). Everything the ingestor and --check-config call is served.
NOT_SERVED: list[tuple[str, Any, str]] = [
    ("OpenAPI document", lambda e: e["request"]["path"] == "/explorer-json",
     "a 150-path document nobody here reads"),
]

_GENERATED = re.compile(r"<generated (?:id|pid) #\d+:[^>]*>")
_LONG_REQUEST_STRING = re.compile(r"<string of (\d+) 'x' characters; whole body \d+ bytes>")
# A long string sent (a thumbnail's data: URI) shown by its length and start: sent as long again.
_ELIDED_REQUEST_STRING = re.compile(r"<long string:string of (\d+) chars, elided; starts '([^']*)'>")
_ELIDED_ITEMS = re.compile(r"<elided: (\d+) more items of the same shape>")


def exchanges() -> list[dict[str, Any]]:
    return [json.loads(line) for line in RECORDING.read_text().splitlines() if line.strip()]


def not_served(exchange: dict[str, Any]) -> str:
    return next((f"{category}: {why}" for category, applies, why in NOT_SERVED if applies(exchange)), "")


# -- shapes ------------------------------------------------------------------------


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "list", dict: "object"}[type(value)]


def shape_differences(recorded: Any, answered: Any, where: str = "$") -> list[str]:
    """Where the answer's shape differs from the recorded one: field names and JSON types,
    recursively; list items pairwise (the recording elides long lists)."""
    if json_type(recorded) != json_type(answered):
        return [f"{where}: recorded {json_type(recorded)}, stand-in {json_type(answered)}"]
    if isinstance(recorded, dict):
        found = [f"{where}.{k}: recorded, missing in the stand-in" for k in sorted(set(recorded) - set(answered))]
        found += [f"{where}.{k}: not recorded, sent by the stand-in" for k in sorted(set(answered) - set(recorded))]
        for key in sorted(set(recorded) & set(answered)):
            found += shape_differences(recorded[key], answered[key], f"{where}.{key}")
        return found
    if isinstance(recorded, list):
        items = [r for r in recorded if not (isinstance(r, str) and _ELIDED_ITEMS.fullmatch(r))]
        if bool(items) != bool(answered):
            return [f"{where}: recorded {len(items)} items, stand-in {len(answered)}"]
        return [d for i, (r, a) in enumerate(zip(items, answered)) for d in shape_differences(r, a, f"{where}[{i}]")]
    return []


# -- replaying -----------------------------------------------------------------------


@dataclass
class Replay:
    """The state a replay carries from case to case: tokens, and what each generated placeholder stood for."""

    standin: SciCatStandIn
    tokens: dict[str, str]
    bound: dict[str, str]

    def substitute(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self.substitute(v) for k, v in value.items()}
        if isinstance(value, list):
            out: list[Any] = []
            for item in value:
                elided = _ELIDED_ITEMS.fullmatch(item) if isinstance(item, str) else None
                out += [out[-1]] * int(elided.group(1)) if elided else [self.substitute(item)]
            return out
        if isinstance(value, str):
            if long := _LONG_REQUEST_STRING.fullmatch(value):
                return "x" * int(long.group(1))
            if elided := _ELIDED_REQUEST_STRING.fullmatch(value):
                return elided.group(2).ljust(int(elided.group(1)), "A")
            return _GENERATED.sub(lambda m: self.bound[m.group(0)], value.replace("<token>", self.tokens["ingestor"]))
        return value

    def path_of(self, recorded: str) -> str:
        return _GENERATED.sub(lambda m: urllib.parse.quote(self.bound[m.group(0)], safe=""),
                              recorded.replace("<token>", self.tokens["ingestor"]))

    def bind(self, recorded: Any, answered: Any) -> None:
        """Learn what the stand-in generated where the recording has a placeholder."""
        if isinstance(recorded, str) and _GENERATED.fullmatch(recorded) and isinstance(answered, str):
            self.bound.setdefault(recorded, answered)
        elif isinstance(recorded, dict) and isinstance(answered, dict):
            for key in recorded.keys() & answered.keys():
                self.bind(recorded[key], answered[key])
        elif isinstance(recorded, list) and isinstance(answered, list):
            for r, a in zip(recorded, answered):
                self.bind(r, a)

    def headers_for(self, request: dict[str, Any]) -> dict[str, str]:
        account = request["auth"]
        headers = {"Authorization": f"Bearer {self.tokens[account]}"} if account in self.tokens else {}
        if account == "garbage-token":
            headers["Authorization"] = "Bearer not-a-real-token"
        for name, value in (request.get("headers") or {}).items():
            if value == "Bearer <forged JWT, wrong signature>":
                head, claims, _ = self.tokens["ingestor"].split(".")
                value = f"Bearer {head}.{claims}.{base64.urlsafe_b64encode(b'forged' * 6).decode().rstrip('=')}"
            headers[name] = value.replace("<token>", self.tokens["ingestor"])
        return headers

    def send(self, exchange: dict[str, Any]) -> requests.Response:
        request = exchange["request"]
        base = self.standin.url.removesuffix("/api/v3")
        kwargs: dict[str, Any] = {"headers": self.headers_for(request), "timeout": 60}
        if request.get("raw_body") is not None:
            kwargs["data"] = self.substitute(request["raw_body"]).encode()
            kwargs["headers"].setdefault("Content-Type", "application/json")
        elif request.get("json") is not None:
            # Compact, as the recorder sent it: the size limits are byte-exact.
            kwargs["data"] = json.dumps(self.substitute(request["json"]), separators=(",", ":")).encode()
            kwargs["headers"].setdefault("Content-Type", "application/json")
        return requests.request(request["method"], base + self.path_of(request["path"]), **kwargs)


def twelve_attachments(replay: Replay) -> None:
    """What the recorder made without recording it before listing them: many-00 .. many-11."""
    pid, run = "20.500.12269/rec-327bf622b99a-att-many", "rec-327bf622b99a"
    for i in range(12):
        made = requests.post(f"{replay.standin.url}/Datasets/{urllib.parse.quote(pid, safe='')}/attachments",
                             json={"caption": f"many-{i:02d} {run}", "ownerGroup": f"{run}-owners",
                                   "accessGroups": [f"{run}-readers"]},
                             headers={"Authorization": f"Bearer {replay.tokens['ingestor']}"}, timeout=10)
        assert made.status_code == 201, made.text


# Exchange name -> what to make first, as the recording's note says was made unrecorded.
MADE_UNRECORDED = {"attachments.get.by_dataset_route_12": twelve_attachments}


def differences(exchange: dict[str, Any], answer: requests.Response) -> list[str]:
    recorded = exchange["response"]
    found = []
    if answer.status_code != recorded["status"]:
        found.append(f"status: recorded {recorded['status']}, stand-in {answer.status_code}")
    if (not answer.content) != recorded["body_empty"]:
        found.append(f"body: recorded {'empty' if recorded['body_empty'] else 'not empty'}, "
                     f"stand-in {'empty' if not answer.content else 'not empty'}")
    if (answer.headers.get("Content-Type") is None) != (recorded["content_type"] is None):
        found.append(f"content type: recorded {recorded['content_type']}, "
                     f"stand-in {answer.headers.get('Content-Type')}")
    if answer.content and not recorded["body_empty"]:
        try:
            body = answer.json()
        except ValueError:
            body = {"text": answer.text}
        found += shape_differences(recorded["body"], body)
    return found


def replay_all() -> tuple[list[str], int]:
    """(the differences, each line naming its case; how many cases were replayed)."""
    users = dict(PASSWORDS)
    with SciCatStandIn(users=users, user_groups={"ingestor": ["globalaccess", "ingestor"], "admin": ["admin"]},
                       admin_users=set(users), privileged_users=set(users), pid_users=set(users),
                       token_lifetime_s=86400) as standin:
        tokens = {}
        for user, password in users.items():
            login = requests.post(standin.url + "/auth/login", json={"username": user, "password": password},
                                  timeout=10)
            tokens[user] = login.json()["access_token"]
        replay = Replay(standin, tokens, {})
        found, replayed = [], 0
        for number, exchange in enumerate(exchanges(), 1):
            if not_served(exchange):
                continue
            if exchange["name"] in MADE_UNRECORDED:
                MADE_UNRECORDED[exchange["name"]](replay)
            try:
                answer = replay.send(exchange)
            except KeyError as e:  # a placeholder only an unserved case makes
                found.append(f"#{number} {exchange['name']}: needs {e.args[0]}, which no served case made")
                continue
            replayed += 1
            if answer.content and answer.headers.get("Content-Type", "").startswith("application/json"):
                replay.bind(exchange["response"]["body"], answer.json())
            found += [f"#{number} {exchange['name']} ({exchange['request']['method']} "
                      f"{exchange['request']['path'][:80]}): {d}" for d in differences(exchange, answer)]
        assert not standin.internal_errors, standin.internal_errors
    return found, replayed


# -- the tests -------------------------------------------------------------------------


def test_the_projects_recording_is_the_shared_one():
    recorded = exchanges()
    assert len(recorded) == 657 and all({"request", "response"} <= set(e) for e in recorded)
    if SHARED_RECORDING.exists():  # outside this checkout only where the reference data is at hand
        assert RECORDING.read_bytes() == SHARED_RECORDING.read_bytes()


def test_what_is_not_served_is_short_and_no_route_the_ingestor_calls():
    unserved = [e for e in exchanges() if not_served(e)]
    assert len(NOT_SERVED) <= 1
    ingestor_routes = re.compile(r"/api/v3/(auth/login|health|datasets|origdatablocks|proposals|instruments|samples)",
                                 re.I)
    on_ingestor_routes = [e["name"] for e in unserved if e["request"]["method"] in ("GET", "POST")
                          and ingestor_routes.match(e["request"]["path"])]
    assert on_ingestor_routes == []


def test_every_recorded_v4_exchange_is_served_attachments_too():
    v4 = [e for e in exchanges() if e["api"] == "v4" or e["name"].startswith("v4.")]
    unserved = [e["name"] for e in v4 if not_served(e)]
    assert len(v4) > 120 and unserved == [], unserved


def test_the_standin_answers_every_recorded_exchange_as_the_real_backend_did():
    found, replayed = replay_all()
    assert replayed > 450
    assert not found, f"{len(found)} differences:\n" + "\n".join(found)
