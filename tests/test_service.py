"""The HTTP API (issue 14): the same library calls as the command line, every decision logged, tokens,
422 without values, 413 — on SQLite and on PostgreSQL; and a real `nlc-screen serve` process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from screening import service
from screening.log import ScreeningLog
from screening.service import MAX_RECORD_BYTES, ServiceError, check_host, create_app, load_tokens

from .conftest import FIXTURES, ROOT, base_record

ONE = ROOT / "examples" / "one.json"
TOKEN = "t0k3n-for-nurse-seven-000"
SECRET_BIRTH = "1944-02-29"
#: Every POST body declares a JSON media type (a text/plain one is refused: tests/test_service_guard.py).
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def log(log_url: str) -> Iterator[ScreeningLog]:
    with ScreeningLog(log_url) as opened:
        yield opened


@pytest.fixture
def client(log: ScreeningLog) -> Iterator[TestClient]:
    with TestClient(create_app(log=log, tokens={}), base_url="http://localhost", headers=JSON) as c:
        yield c


@pytest.fixture
def guarded(log: ScreeningLog) -> Iterator[TestClient]:
    with TestClient(create_app(log=log, tokens={TOKEN: "nurse-7"}), headers=JSON) as c:
        yield c


def test_post_screen_returns_the_decision_and_logs_it(client: TestClient, log: ScreeningLog) -> None:
    response = client.post("/screen", content=ONE.read_bytes(), headers={"X-Screener": "desk-2"})
    assert response.status_code == 200
    row = response.json()
    assert (row["candidate_id"], row["decision"], row["primary_criterion"]) == ("CD-0420", "excluded", "E14")
    assert log.count() == 1
    (entry,) = log.history("CD-0420", "Third People's Hospital of Chengdu")
    assert entry["row"] == row and entry["screener"] == "desk-2"


def test_post_screen_speaks_chinese_on_request(client: TestClient) -> None:
    row = client.post("/screen?lang=zh", content=ONE.read_bytes()).json()
    assert row["decision"] == "excluded" and "维生素K拮抗剂" in row["criteria"]["E14"]["reason"]
    assert client.post("/screen?lang=fr", content=ONE.read_bytes()).status_code == 400


def test_an_invalid_record_is_422_naming_the_fields_never_the_values(client: TestClient, log: ScreeningLog) -> None:
    record = {"candidate_id": "Z1", "screening_start": "2023-02-30", "birth_date": SECRET_BIRTH, "sex": "unknown-x"}
    response = client.post("/screen", json=record)
    assert response.status_code == 422
    body = response.json()
    assert {f["field"] for f in body["fields"]} == {"screening_start", "sex"}
    assert "2023-02-30" not in response.text and SECRET_BIRTH not in response.text and "unknown-x" not in response.text
    assert log.count() == 0  # nothing was decided
    assert client.post("/screen", content=b"{not json").status_code == 422


def test_a_query_parameter_that_cannot_be_read_is_422_without_echoing_it(client: TestClient) -> None:
    response = client.get("/audit", params={"since": "not-a-date-123"})
    assert response.status_code == 422 and "not-a-date-123" not in response.text
    assert response.json()["fields"][0]["field"] == "query.since"


def test_a_body_over_the_limit_is_413(client: TestClient) -> None:
    record = base_record(candidate_id="BIG")
    record["site"] = "x" * (MAX_RECORD_BYTES + 10)
    assert client.post("/screen", json=record).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while reading
        for _ in range(MAX_RECORD_BYTES // 1000 + 2):
            yield b" " * 1000
    assert client.post("/screen", content=chunks()).status_code == 413


def test_a_batch_gives_one_row_per_record_in_order_logged_as_one_batch(client: TestClient, log: ScreeningLog) -> None:
    good = base_record(candidate_id="B-1")
    lines = [json.dumps(good), '{"candidate_id":"B-2","screening_start":"2023-13-01"}', "[1]",
             json.dumps(base_record(candidate_id="B-3", consent="pending"))]
    response = client.post("/screen/batch", content="\n".join(lines) + "\n",
                           headers={"Content-Type": "application/x-ndjson"})
    assert response.status_code == 200
    rows = response.json()
    assert [(r["candidate_id"], r["decision"]) for r in rows] == [
        ("B-1", "eligible"), ("B-2", "error"), ("line 3", "error"), ("B-3", "eligible")]
    assert log.count() == 4
    assert len({h["batch_id"] for cid in ("B-1", "B-3") for h in log.history(cid, "test site")}) == 1
    as_array = client.post("/screen/batch", json=[good, good])
    assert as_array.status_code == 200 and len(as_array.json()) == 2
    assert "duplicate" in " ".join(as_array.json()[1]["warnings"]) or "second record" in " ".join(
        as_array.json()[1]["warnings"])


def test_the_figure1_cohort_over_http_audits_like_the_command_line(client: TestClient) -> None:
    body = (FIXTURES / "figure1" / "candidates.jsonl").read_bytes()
    rows = client.post("/screen/batch", content=body, headers={"Content-Type": "application/x-ndjson"}).json()
    assert len(rows) == 310
    report = client.get("/audit", params={"expect": "figure1"}).json()
    assert report["counts"]["assessed"] == 310 and report["expected"]["differences"] == []


def test_candidate_history_and_the_worklist(client: TestClient) -> None:
    client.post("/screen", json={"candidate_id": "H-1", "site": "A", "screening_start": "2023-05-01"})
    client.post("/screen", json=base_record(candidate_id="H-2", site="A", consent="pending"))
    client.post("/screen", json=base_record(candidate_id="H-1", site="A", consent="signed"))
    history = client.get("/candidates/H-1", params={"site": "A"}).json()
    assert [d["row"]["decision"] for d in history["decisions"]] == ["undetermined", "eligible"]
    assert client.get("/candidates/NOPE", params={"site": "A"}).status_code == 404
    work = client.get("/worklist").json()["pending"]
    assert [(w["candidate_id"], w["ask_next"]) for w in work] == [("H-2", ["consent"])]


def test_rules_schema_openapi_and_docs_are_served_without_a_cdn(guarded: TestClient) -> None:
    assert guarded.get("/rules").json()["ruleset"]["name"] == "paper-2024"
    assert "candidate_id" in guarded.get("/schema").json()["properties"]
    spec = guarded.get("/openapi.json").json()
    assert {"/screen", "/screen/batch", "/candidates/{candidate_id}", "/worklist", "/audit", "/rules",
            "/schema"} <= set(spec["paths"])
    docs = guarded.get("/docs")
    assert docs.status_code == 200 and "cdn" not in docs.text.lower() and "/docs-static/swagger-ui-bundle.js" in docs.text
    assert guarded.get("/docs-static/swagger-ui-bundle.js").status_code == 200


@pytest.mark.parametrize(("method", "path"), [("POST", "/screen"), ("POST", "/screen/batch"),
                                              ("GET", "/candidates/CD-0420"), ("GET", "/worklist"),
                                              ("GET", "/audit")])
def test_with_tokens_every_candidate_data_endpoint_needs_one(guarded: TestClient, method: str, path: str) -> None:
    body = ONE.read_bytes() if method == "POST" else None
    assert guarded.request(method, path, content=body).status_code == 401
    wrong = guarded.request(method, path, content=body, headers={"Authorization": "Bearer not-the-token-000000"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert guarded.request(method, path, content=body, headers={"X-Screener": "someone"}).status_code == 401


def test_the_log_records_the_tokens_screener(guarded: TestClient, log: ScreeningLog) -> None:
    ok = guarded.post("/screen", content=ONE.read_bytes(),
                      headers={"Authorization": f"Bearer {TOKEN}", "X-Screener": "someone-else"})
    assert ok.status_code == 200
    (entry,) = log.history("CD-0420", "Third People's Hospital of Chengdu")
    assert entry["screener"] == "nurse-7"
    assert guarded.get("/candidates/CD-0420", params={"site": "Third People's Hospital of Chengdu"},
                       headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_tokens_come_from_the_environment_or_a_file(tmp_path: Path) -> None:
    assert load_tokens({}) == {}
    file = tmp_path / "tokens"
    file.write_text("# desk tokens\nffffffffffffffff1:desk-1\n\n", encoding="utf-8")
    assert load_tokens({"NLC_SCREEN_TOKENS": "aaaaaaaaaaaaaaaa1:nurse-1, bbbbbbbbbbbbbbbb2:nurse-2",
                        "NLC_SCREEN_TOKENS_FILE": str(file)}) == {
        "aaaaaaaaaaaaaaaa1": "nurse-1", "bbbbbbbbbbbbbbbb2": "nurse-2", "ffffffffffffffff1": "desk-1"}
    for bad in ("no-colon-here-at-all", "short:x", "aaaaaaaaaaaaaaaa1:"):
        with pytest.raises(ServiceError):
            load_tokens({"NLC_SCREEN_TOKENS": bad})


def test_a_public_host_needs_tokens() -> None:
    check_host("127.0.0.1", {})
    with pytest.raises(ServiceError, match="NLC_SCREEN_TOKENS"):
        check_host("0.0.0.0", {})
    check_host("0.0.0.0", {TOKEN: "x"})


@pytest.mark.timeout(300)
def test_a_large_batch_screened_by_the_warm_pool_gives_the_same_rows(tmp_path: Path) -> None:
    from click.testing import CliRunner

    import cli
    generated = tmp_path / "gen.jsonl"
    CliRunner().invoke(cli.main, ["generate", "--n", "1200", "--seed", "4", "-o", str(generated)])
    lines = generated.read_text(encoding="utf-8").splitlines()
    body = "\n".join(lines + lines[:3]) + "\n"  # three candidates twice: the duplicate check runs across chunks
    answers = []
    for workers in (1, 2):
        with ScreeningLog(f"sqlite:///{tmp_path / f'w{workers}.sqlite3'}") as log, \
                TestClient(create_app(log=log, tokens={}, workers=workers), base_url="http://localhost") as c:
            response = c.post("/screen/batch?lang=zh", content=body, headers={"Content-Type": "application/x-ndjson"})
            assert response.status_code == 200
            answers.append(response.json())
            assert log.count() == 1203
    assert answers[0] == answers[1]
    assert sum(1 for row in answers[1] if any("第二" in w or "second record" in w for w in row.get("warnings", []))) == 3


# -- a real server --------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(120)
def test_nlc_screen_serve_screens_logs_and_prints_no_record_contents(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "NLC_SCREEN_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    env.pop("NLC_SCREEN_TOKENS", None)
    env.pop("NLC_SCREEN_TOKENS_FILE", None)
    server = subprocess.Popen([sys.executable, "-c", "import cli; cli.main()", "serve", "--port", str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                httpx.get(url + "/rules", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        record = json.loads(ONE.read_text(encoding="utf-8"))
        record["birth_date"] = SECRET_BIRTH
        decided = httpx.post(url + "/screen", content=json.dumps(record), headers=JSON, timeout=10)
        assert decided.status_code == 200 and decided.json()["candidate_id"] == "CD-0420"
        bad = httpx.post(url + "/screen", json={"candidate_id": "Z9", "screening_start": "2023-02-30",
                                                "birth_date": SECRET_BIRTH}, timeout=10)
        assert bad.status_code == 422 and SECRET_BIRTH not in bad.text
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    printed = output.decode()
    assert "POST /screen" in printed and "CD-0420" in printed
    assert SECRET_BIRTH not in printed and "warfarin" not in printed and "2023-02-30" not in printed
    audit = subprocess.run([sys.executable, "-c", "import cli; cli.main()", "audit", "--log", "--format", "json"],
                           env=env, capture_output=True, text=True, cwd=tmp_path)
    assert json.loads(audit.stdout)["counts"]["assessed"] == 1
    assert (tmp_path / "home" / "screening-log.sqlite3").exists()


def test_serve_refuses_a_public_host_without_tokens(tmp_path: Path) -> None:
    from click.testing import CliRunner

    import cli
    result = CliRunner().invoke(cli.main, ["serve", "--host", "0.0.0.0", "--log", f"sqlite:///{tmp_path}/l.db"],
                                env={"NLC_SCREEN_TOKENS": "", "NLC_SCREEN_TOKENS_FILE": ""})
    assert result.exit_code == 1 and "NLC_SCREEN_TOKENS" in result.output
    assert service.LOOPBACK == ("127.0.0.1", "localhost", "::1")

