"""POST /screen with a FHIR bundle (issue 16): one patient's bundle imported and screened, logged
like any record; a bundle that cannot be imported is a 422 that quotes no value."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from screening.log import ScreeningLog
from screening.service import create_app

from .conftest import FIXTURES

FHIR = FIXTURES / "fhir"
BUNDLE = {"Content-Type": "application/fhir+json"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, ScreeningLog]]:
    with ScreeningLog(f"sqlite:///{tmp_path / 'log.sqlite3'}") as log, \
            TestClient(create_app(log=log, tokens={}), base_url="http://localhost") as c:
        yield c, log


def test_a_bundle_of_one_patient_is_imported_screened_and_logged(client: tuple[TestClient, ScreeningLog]) -> None:
    c, log = client
    body = (FHIR / "synthea" / "Max_Dicki_d9f8849f-e4a7-4ced-b057-c618db16a117.json").read_bytes()
    response = c.post("/screen?screening_start=2021-04-01&site=Boston", content=body, headers=BUNDLE)
    assert response.status_code == 200, response.text
    row = response.json()
    assert (row["candidate_id"], row["site"], row["primary_criterion"]) == (
        "8008b382-91cc-468f-95e5-7d6982b7ebb9", "Boston", "E14")
    [entry] = log.history("8008b382-91cc-468f-95e5-7d6982b7ebb9", "Boston")
    assert entry["row"] == row
    exported: list[str] = []
    log.export(exported.append)
    [line] = exported
    text = json.loads(line)["record"]
    assert '"provenance"' in text and "MedicationRequest/" in text  # the imported record is what the log keeps
    assert "Dicki" not in text and "999-44-4693" not in text  # no name, no identifier of the bundle


def test_a_bundle_needs_a_screening_date_and_exactly_one_patient(client: tuple[TestClient, ScreeningLog]) -> None:
    c, log = client
    body = (FHIR / "handmade" / "consent.json").read_bytes()
    missing = c.post("/screen", content=body, headers=BUNDLE)
    assert missing.status_code == 422 and missing.json()["fields"] == [{"field": "screening_start"}]
    bad_date = c.post("/screen?screening_start=2021-02-30", content=body, headers=BUNDLE)
    assert bad_date.status_code == 422 and "not a date" in bad_date.json()["error"]
    two = c.post("/screen?screening_start=2021-04-01", content=body, headers=BUNDLE)
    assert two.status_code == 422 and "holds 2 patients" in two.json()["error"]
    truncated = c.post("/screen?screening_start=2021-04-01", headers=BUNDLE,
                       content=(FHIR / "broken" / "truncated-synthea.json").read_bytes())
    assert truncated.status_code == 422
    assert truncated.json()["error"] == "the bundle cannot be imported: the file ends before its JSON does (truncated?)"
    assert log.count() == 0
