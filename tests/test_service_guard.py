"""What a web page elsewhere cannot make a browser do to the service (review A, finding 3): a
text/plain (cross-site "simple") post is refused, a foreign Origin cannot write, and without tokens
a rebound DNS name cannot read the worklist or resume a record."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from screening.log import ScreeningLog
from screening.service import allowed_hosts, create_app

from .conftest import base_record

TOKEN = "guard-test-token-0123456789"
RECORD = {"candidate_id": "CSRF-1", "screening_start": "2023-03-01", "birth_date": "1950-01-01"}


@pytest.fixture
def log(tmp_path: Path) -> Iterator[ScreeningLog]:
    with ScreeningLog(f"sqlite:///{tmp_path / 'log.sqlite3'}") as opened:
        yield opened


@pytest.fixture
def client(log: ScreeningLog) -> Iterator[TestClient]:
    with TestClient(create_app(log=log, tokens={}), base_url="http://127.0.0.1:8000") as c:
        yield c


def test_a_text_plain_post_from_another_site_is_neither_screened_nor_logged(client: TestClient,
                                                                             log: ScreeningLog) -> None:
    # the review's reproduction (/tmp/review-a/t1.py): 200 and logged before
    forged = client.post("/screen", content=json.dumps(RECORD),
                         headers={"Content-Type": "text/plain", "Origin": "http://evil.example", "Host": "evil.example"})
    assert forged.status_code == 400
    plain = client.post("/screen", content=json.dumps(RECORD), headers={"Content-Type": "text/plain"})
    assert plain.status_code == 415 and "application/json" in plain.json()["error"]
    for path in ("/screen/batch", "/form/plan", "/form/resume"):
        assert client.post(path, content=json.dumps(RECORD)).status_code == 415, path
        assert client.post(path, content=json.dumps(RECORD),
                           headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 415, path
    assert log.count() == 0


def test_a_foreign_origin_cannot_write_but_the_service_itself_can(client: TestClient, log: ScreeningLog) -> None:
    for origin in ("http://evil.example", "null", "http://127.0.0.1:9999"):
        refused = client.post("/screen", json=RECORD, headers={"Origin": origin})
        assert refused.status_code == 403, origin
    assert log.count() == 0
    same = client.post("/screen", json=RECORD, headers={"Origin": "http://127.0.0.1:8000"})
    assert same.status_code == 200
    assert client.post("/screen", json=RECORD).status_code == 200  # no Origin: a command-line client
    assert log.count() == 2


def test_without_tokens_only_loopback_host_names_are_answered(client: TestClient, log: ScreeningLog) -> None:
    client.post("/screen", json=base_record(candidate_id="W-1", consent="pending"))
    for host in ("rebind.evil.example", "evil.example:8000", "10.0.0.5"):
        assert client.get("/worklist", headers={"Host": host}).status_code == 400, host
        resumed = client.post("/form/resume", json={"candidate_id": "W-1", "site": "test site"}, headers={"Host": host})
        assert resumed.status_code == 400 and "1944" not in resumed.text, host
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000", "LOCALHOST"):
        answer = client.get("/worklist", headers={"Host": host})
        assert answer.status_code == 200 and answer.json()["pending"][0]["candidate_id"] == "W-1", host


def test_allowed_hosts_come_from_the_environment_and_tokens_lift_the_loopback_rule(log: ScreeningLog) -> None:
    assert allowed_hosts({}, {}) == ("127.0.0.1", "localhost", "::1")
    assert allowed_hosts({}, {"NLC_SCREEN_ALLOWED_HOSTS": "desk-3.local, [fe80::1]"})[-2:] == ("desk-3.local", "fe80::1")
    assert allowed_hosts({TOKEN: "n"}, {}) is None
    assert allowed_hosts({TOKEN: "n"}, {"NLC_SCREEN_ALLOWED_HOSTS": "screen.example.org"}) == ("screen.example.org",)
    with TestClient(create_app(log=log, tokens={TOKEN: "nurse"}), base_url="http://screen.example.org") as c:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert c.get("/worklist", headers=auth).status_code == 200
        assert c.post("/screen", json=RECORD, headers={**auth, "Origin": "http://evil.example"}).status_code == 403
        assert c.post("/screen", content=json.dumps(RECORD),
                      headers={**auth, "Content-Type": "text/plain"}).status_code == 415
    with TestClient(create_app(log=log, tokens={}, hosts=("desk-3.local",)), base_url="http://desk-3.local") as c:
        assert c.get("/worklist").status_code == 200
        assert c.get("/worklist", headers={"Host": "localhost"}).status_code == 400
