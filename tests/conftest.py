"""Shared fixtures. The engine is built once per process and per ruleset (screening.engine);
tests never create durable rulesets of their own except in tests/test_engine.py."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

import screening

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"

# Property tests (hypothesis): "dev" for a quick local run, "ci" (CI=true, as .ci/run sets) for the
# run that counts, with many more cases and a fixed seed so that CI gives the same answer twice.
# HYPOTHESIS_PROFILE chooses one by name. Tests whose examples are costly (a worker pool, a
# subprocess) scale their own max_examples from the profile's (tests/test_properties.py `scaled`).
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile("ci", max_examples=800, deadline=None, derandomize=True, database=None,
                          print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


@pytest.fixture(scope="session")
def paper() -> screening.Ruleset:
    return screening.load_ruleset("paper-2024")


@pytest.fixture(scope="session")
def registry() -> screening.Ruleset:
    return screening.load_ruleset("registry-2023")


def base_record(**changes: Any) -> dict[str, Any]:
    """A clean eligible candidate; keyword arguments replace top-level fields (None removes one)."""
    record: dict[str, Any] = {
        "candidate_id": "T-001",
        "site": "test site",
        "screening_start": "2023-03-01",
        "birth_date": "1950-06-15",
        "sex": "female",
        "diary": {"nights_recorded": 14, "episodes": [
            {"night_of": "2023-03-02", "duration_min": 1.5, "severity": 4, "leg": "left", "muscle": "calf"},
            {"night_of": "2023-03-08", "duration_min": 1.0, "severity": 3, "leg": "right", "muscle": "calf"},
        ]},
        "nlc_assessment": {"confirmed": True, "differentials": {
            "restless_legs": "absent", "claudication": "absent", "myositis": "absent",
            "peripheral_neuropathy": "absent"}},
        "conditions": {k: "absent" for k in condition_keys()},
        "medication_history_taken": True,
        "medications": [{"name": "amlodipine", "atc": "C08CA01", "start_date": "2020-01-01", "ongoing": True}],
        "consent": "signed",
    }
    for key, value in changes.items():
        if value is None:
            record.pop(key, None)
        else:
            record[key] = value
    return record


def copy_record_files(pack: Path, folder: Path) -> None:
    """Copy a pack's record files (fields.yaml, facts.yaml) beside a copy of one of its sets."""
    for name in ("fields.yaml", "facts.yaml"):
        (folder / name).write_bytes((pack / name).read_bytes())


def condition_keys(ruleset: screening.Ruleset | None = None) -> list[str]:
    """The status fields of the record's ``conditions`` object, as the pack's fields.yaml declares them."""
    spec = (ruleset or screening.load_ruleset()).record.get("conditions")
    assert spec is not None
    return [key for key, field in spec.fields.items() if field.type == "enum"]


def as_text(record: dict[str, Any]) -> str:
    return json.dumps(record)


#: The PostgreSQL server the log and API tests also run against: a URL such as
#: postgresql://nlc@127.0.0.1/nlc_test (`.ci/run` starts one). Without it they run on SQLite only,
#: and the PostgreSQL cases skip, saying why; under CI (CI=true) a missing server fails the run.
PG_ENV = "NLC_SCREEN_TEST_PG"


def needs_program(*programs: str, package: str, what: str) -> pytest.MarkDecorator:
    """Skip ``what`` on a machine without any of ``programs`` (system packages, not pip's) — but never
    under CI (CI=true): .ci/run installs ``package``, and there a missing program fails the cases."""
    missing = all(shutil.which(program) is None for program in programs)
    return pytest.mark.skipif(missing and not os.environ.get("CI"), reason=(
        f"{what} needs {' or '.join(programs)}, a system program not installed on this machine "
        f"(apt-get install {package}); .ci/run installs it, and under CI a missing program fails these cases"))


def _clean_postgres(url: str) -> None:
    from sqlalchemy import create_engine

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS entries, records, batches, erasures, alembic_version CASCADE")
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def log_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty screening log: a SQLite file, and (second) a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'log.sqlite3'}"
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{PG_ENV} is not set: CI runs the log suite against a real PostgreSQL server")
        pytest.skip(f"no PostgreSQL server: set {PG_ENV}=postgresql://USER@HOST/DB to run these cases on it")
    _clean_postgres(url)
    return url


def csv_cells(record: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A record as the cells of one CSV row (docs/csv.md): nested fields as dotted columns, lists as
    JSON, booleans as true/false, missing values (None) as no cell."""
    out: dict[str, str] = {}
    for key, value in record.items():
        path = prefix + key
        if isinstance(value, dict):
            out.update(csv_cells(value, path + "."))
        elif isinstance(value, list):
            out[path] = json.dumps(value, ensure_ascii=False)
        elif isinstance(value, bool):
            out[path] = "true" if value else "false"
        elif value is not None:
            out[path] = str(value)
    return out
