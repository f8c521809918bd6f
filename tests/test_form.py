"""The web form's pages and endpoints (screening.form), without a browser: generated from the pack,
shorter for the second trial, a new field without a template edit, tokens, nothing logged before Save,
and a candidate resumed from the log. tests/test_form_browser.py drives the same pages in chromium."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from screening.log import ScreeningLog
from screening.service import create_app
from tests.conftest import ROOT

TOKEN = "form-test-token-0123456789"


def _client(tmp_path: Path, rules: str = "paper-2024", tokens: dict[str, str] | None = None,
            url: str | None = None) -> TestClient:
    log = ScreeningLog(url or f"sqlite:///{tmp_path / 'log.sqlite3'}")
    return TestClient(create_app(rules=rules, log=log, tokens=tokens or {}), base_url="http://localhost")


def _inputs(html: str) -> set[str]:
    return set(re.findall(r'data-path="([^"]+)"', html))


def test_the_nlc_form_asks_every_field_of_its_pack(tmp_path: Path) -> None:
    page = _client(tmp_path).get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    paths = _inputs(page.text)
    assert 'id="f-birth_date" data-path="birth_date"' in page.text
    assert {"birth_date", "medications", "conditions.hypothyroidism", "diary.episodes", "consent"} <= paths
    assert "What is the candidate&#39;s date of birth?" in page.text and "候选人的出生日期是哪一天？" in page.text
    for cid in ("I1", "E1", "E15", "I3", "I2", "I4"):  # every criterion of the set has its row
        assert f'data-cid="{cid}"' in page.text
    # shipped in the package, not from a CDN
    assert not re.search(r'(src|href)="(https?:)?//', page.text)
    for asset in ("/ui/static/form.js", "/ui/static/common.js", "/ui/static/form.css"):
        assert asset in page.text
        assert _client(tmp_path).get(asset).status_code == 200
    assert "/ui/static/worklist.js" in _client(tmp_path).get("/ui/worklist").text


def test_the_second_trial_gets_its_own_shorter_form(tmp_path: Path) -> None:
    nlc = _inputs(_client(tmp_path).get("/").text)
    page = _client(tmp_path, "roguin-2017").get("/")
    mgo = _inputs(page.text)
    assert "birth_date" in mgo and "diary.episodes" in mgo and "consent" in mgo
    assert not any(p.startswith(("conditions", "medications", "nlc_assessment")) for p in mgo)
    assert len(mgo) < len(nlc) and "志愿者的出生日期是哪一天？" in page.text
    assert 'data-cid="E1"' not in page.text and 'data-cid="I2"' in page.text


def test_a_new_field_in_the_pack_appears_without_a_template_edit(tmp_path: Path) -> None:
    pack = tmp_path / "mgo-nlc"
    shutil.copytree(ROOT / "rules" / "mgo-nlc", pack)
    fields = pack / "fields.yaml"
    fields.write_text(fields.read_text(encoding="utf-8") + """  smoker:
    type: bool
    question: {en: "Does the volunteer smoke?", zh: "志愿者是否吸烟？"}
    label: {en: Smoker, zh: 吸烟者}
""", encoding="utf-8")
    page = _client(tmp_path, str(pack / "roguin-2017.yaml")).get("/")
    assert page.status_code == 200
    assert 'data-path="smoker" data-type="bool"' in page.text and "Does the volunteer smoke?" in page.text


def test_plan_reorders_and_does_not_log_save_does(tmp_path: Path) -> None:
    client = _client(tmp_path)
    plan = client.post("/form/plan?lang=zh", json={"candidate_id": "F-1", "screening_start": "2023-03-01"})
    assert plan.status_code == 200
    body = plan.json()
    assert body["decided"] is False and body["questions"][0] == {
        "path": "birth_date", "distance": 0, "criteria": ["I1"], "required": False, "refused": False}
    assert re.search(r"[\u4e00-\u9fff]", body["decision"]["criteria"]["E1"]["reason"])  # reasons in Chinese
    missing = client.post("/form/plan", json={}).json()
    assert [q["path"] for q in missing["questions"]] == ["candidate_id", "screening_start"]
    assert client.get("/worklist").json()["pending"] == []  # nothing logged by a plan
    bad = client.post("/form/plan", json={"candidate_id": "F-1", "screening_start": "2023-03-01",
                                          "birth_date": "2024-01-01"}).json()
    assert bad["decision"]["decision"] == "error" and bad["decision"]["error_fields"] == ["birth_date"]
    assert client.post("/form/plan", content=b"[1]", headers={"Content-Type": "application/json"}).status_code == 422
    saved = client.post("/screen", json={"candidate_id": "F-1", "site": "S", "screening_start": "2023-03-01",
                                         "birth_date": "1950-01-01"})
    assert saved.status_code == 200
    assert [p["candidate_id"] for p in client.get("/worklist").json()["pending"]] == ["F-1"]


def test_resume_gives_the_latest_record_in_a_body_never_a_url(tmp_path: Path, log_url: str) -> None:
    client = _client(tmp_path, url=log_url)
    first = {"candidate_id": "F-2", "site": "S", "screening_start": "2023-03-01"}
    client.post("/screen", json=first)
    client.post("/screen", json={**first, "birth_date": "1950-01-01"})
    found = client.post("/form/resume", json={"candidate_id": "F-2", "site": "S"})
    assert found.status_code == 200
    assert found.json()["record"] == {**first, "birth_date": "1950-01-01"}
    assert found.json()["decision"]["decision"] == "undetermined"
    assert client.post("/form/resume", json={"candidate_id": "F-2", "site": "other"}).status_code == 404
    assert client.post("/form/resume", json={"site": "S"}).status_code == 422


@pytest.mark.parametrize("path", ["/", "/ui/worklist"])
def test_with_tokens_the_pages_ask_for_one_and_the_endpoints_need_it(tmp_path: Path, path: str) -> None:
    client = _client(tmp_path, tokens={TOKEN: "desk-1"})
    page = client.get(path)
    assert page.status_code == 200 and 'id="token-dialog"' in page.text and '"auth": true' in page.text
    assert client.post("/form/plan", json={}).status_code == 401
    assert client.post("/form/resume", json={"candidate_id": "x"}).status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post("/form/plan", json={}, headers=auth).status_code == 200
    (tmp_path / "open").mkdir()
    assert 'id="token-dialog"' not in _client(tmp_path / "open").get(path).text


def test_the_scripts_put_no_candidate_data_in_a_url() -> None:
    static = ROOT / "screening" / "static"
    for script in static.glob("*.js"):
        text = script.read_text(encoding="utf-8")
        # every URL the scripts build is a fixed path, with at most ?lang=
        for call in re.findall(r'call\("(?:GET|POST)", ([^,)]+)', text):
            assert re.fullmatch(r'"/[a-z/]+(\?lang=)?"( \+ NLC\.lang)?', call.strip()), (script.name, call)
        assert "location.search" not in text and "pushState" not in text


def test_plan_refuses_what_is_not_one_record_without_failing(tmp_path: Path) -> None:
    client = _client(tmp_path)
    headers = {"Content-Type": "application/json"}
    assert client.post("/form/plan", content=b"{not json", headers=headers).status_code == 422
    deep = b'{"candidate_id": "D", "screening_start": "2023-03-01", "diary": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    answer = client.post("/form/plan", content=deep, headers=headers)
    assert answer.status_code == 422 and "candidate" not in answer.text
    assert client.post("/form/plan", content=b"x" * (2 << 20), headers=headers).status_code == 413
