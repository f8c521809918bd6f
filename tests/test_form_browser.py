"""The web form in a real headless browser: Debian's chromium, driven by Selenium through Debian's
chromedriver. One eligible, one excluded (in Chinese) and one undetermined candidate (by keyboard
alone) are filled in, checked, saved, and found in the worklist page and the audit.

Screenshots are kept as test artefacts in $NLC_SCREEN_ARTIFACTS (default: tests/artifacts/, not in git).
Without chromium the test skips, saying so; under CI (CI=true) it fails instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import screening
from screening.ask import get_path, question_order, set_path
from screening.log import ScreeningLog
from tests.conftest import ROOT, base_record

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TOKEN = "form-test-token-0123456789"
ARTIFACTS = Path(os.environ.get("NLC_SCREEN_ARTIFACTS") or ROOT / "tests" / "artifacts")


def _browser_ready() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{', '.join(missing)} not installed: CI runs the browser test (.ci/run installs chromium "
                        "and chromium-driver)")
        pytest.skip(f"{', '.join(missing)} not installed (Debian: apt-get install chromium chromium-driver): "
                    "the browser test is not run")


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[str, ScreeningLog]]:
    """The API and its form on a free local port, with a token, over a fresh SQLite log."""
    import uvicorn

    from screening.service import create_app

    log = ScreeningLog(f"sqlite:///{tmp_path / 'log.sqlite3'}")
    app = create_app(rules="paper-2024", log=log, tokens={TOKEN: "browser-test"})
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start"
    try:
        yield f"http://127.0.0.1:{port}", log
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        log.close()


@pytest.fixture()
def browser() -> Iterator[Any]:
    _browser_ready()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--disable-dev-shm-usage", "--window-size=1280,1500", "--lang=en-GB",
                "--disable-gpu", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # chromium refuses to run as root inside its sandbox
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver: Any, name: str) -> Path:
    """The window as the screener sees it, from the top of the page."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"form-{name}.png"
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000
    return path


def _wait(driver: Any, condition: Any, what: str, timeout: float = 20) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition, message=what)


def _planned(driver: Any) -> int:
    return int(driver.execute_script("return Number(document.body.dataset.planned || 0)"))


def _after_plan(driver: Any, before: int) -> None:
    _wait(driver, lambda d: _planned(d) > before, "the page to screen the record again")
    # several plans may be on their way (a list's entries): wait until they stop
    last = _planned(driver)
    while True:
        time.sleep(0.25)
        now = _planned(driver)
        if now == last:
            return
        last = now


def _first_question(driver: Any) -> str | None:
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, "#ask-list .q.first")
    return found[0].get_attribute("data-q") if found else None


def _answer(driver: Any, path: str, value: Any) -> None:
    """Answer one question the way a screener would: type into its input, or pick from its list."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    block = driver.find_element(By.CSS_SELECTOR, f'.q[data-q="{path}"]')
    kind = block.get_attribute("data-type")
    before = _planned(driver)
    if kind == "list":
        Select(block.find_element(By.CSS_SELECTOR, ".list-state")).select_by_value("listed")
        _after_plan(driver, before)
        for entry in value:
            before = _planned(driver)
            block.find_element(By.CSS_SELECTOR, "button.add").click()
            _after_plan(driver, before)
            row = block.find_elements(By.CSS_SELECTOR, "tbody tr.entry")[-1]
            for name, item in entry.items():
                before = _planned(driver)
                box = row.find_element(By.CSS_SELECTOR, f'[data-name="{name}"]')
                if box.tag_name == "select":
                    Select(box).select_by_value(str(item).lower() if isinstance(item, bool) else str(item))
                else:
                    box.send_keys(str(item), Keys.TAB)
                _after_plan(driver, before)
        return
    field = block.find_element(By.CSS_SELECTOR, "[data-path]")
    if field.tag_name == "select":
        Select(field).select_by_value(str(value).lower() if isinstance(value, bool) else str(value))
    else:
        field.clear()
        field.send_keys(str(value), Keys.ENTER)
    _after_plan(driver, before)


@pytest.mark.timeout(600)
def test_the_form_in_a_browser(server: tuple[str, ScreeningLog], browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    base, log = server
    driver = browser
    paper = screening.load_ruleset("paper-2024")

    # -- the token is asked once -------------------------------------------------------------------
    driver.get(base + "/")
    dialog = _wait(driver, lambda d: d.find_element(By.ID, "token-dialog").get_attribute("open") is not None and
                   d.find_element(By.ID, "token-dialog"), "the token dialog")
    assert driver.switch_to.active_element.get_attribute("id") == "token-input"
    _shot(driver, "0-token")
    driver.switch_to.active_element.send_keys(TOKEN, Keys.ENTER)
    _wait(driver, lambda d: d.find_element(By.ID, "token-dialog").get_attribute("open") is None, "the dialog to close")
    _wait(driver, lambda d: _planned(d) >= 1, "the first plan")
    assert dialog is not None
    assert driver.find_element(By.ID, "f-birth_date").get_attribute("data-path") == "birth_date"

    # -- one eligible candidate, in English, answering the question the page puts first ------------
    truth = base_record(candidate_id="WEB-ELIG", site="Web Clinic", medications=[])
    truth.pop("sex")
    expected: list[str] = []
    record: dict[str, Any] = {}
    while True:  # the order the library gives: the page must ask the same
        plan = question_order(record, paper)
        if plan.decided:
            break
        expected.append(plan.questions[0].path)
        set_path(record, expected[-1], get_path(truth, expected[-1]))
    asked: list[str] = []
    for _ in range(60):
        path = _first_question(driver)
        if path is None:
            break
        asked.append(path)
        assert driver.switch_to.active_element.get_attribute("data-path") in (path, None) or asked == [path]
        _answer(driver, path, get_path(truth, path))
    assert asked == expected and len(asked) == 24
    # the site is not a question (the decision does not need it): the screener fills it in among the others
    _answer(driver, "site", "Web Clinic")
    verdict = driver.find_element(By.ID, "verdict")
    assert verdict.get_attribute("data-decision") == "eligible" and "ELIGIBLE" in verdict.text
    assert "Decided: nothing more to ask." in driver.find_element(By.ID, "ask-status").text
    i1 = driver.find_element(By.CSS_SELECTOR, '#criteria tr[data-cid="I1"]')
    assert i1.get_attribute("data-status") == "met" and "needs ≥ 65" in i1.text
    driver.find_element(By.ID, "save").click()
    _wait(driver, lambda d: "Saved" in d.find_element(By.ID, "save-status").text, "the save to be confirmed")
    _shot(driver, "1-eligible-en")

    # -- one excluded candidate, in Chinese ---------------------------------------------------------
    driver.find_element(By.CSS_SELECTOR, '[data-set-lang="zh"]').click()
    before = _planned(driver)
    driver.find_element(By.ID, "new-candidate").click()
    _after_plan(driver, before)
    assert driver.execute_script("return document.documentElement.dataset.ui") == "zh"
    assert "候选人的出生日期是哪一天？" in driver.find_element(By.CSS_SELECTOR, '.q[data-q="birth_date"]').text
    _answer(driver, "candidate_id", "WEB-EXCL")
    _answer(driver, "screening_start", "2023-03-01")
    assert _first_question(driver) == "birth_date"
    _answer(driver, "birth_date", "1958-06-15")  # aged 64: this answer alone excludes
    verdict = driver.find_element(By.ID, "verdict")
    assert verdict.get_attribute("data-decision") == "excluded" and "排除" in verdict.text
    i1 = driver.find_element(By.CSS_SELECTOR, '#criteria tr[data-cid="I1"]')
    assert i1.get_attribute("data-status") == "not_met" and "年龄" in i1.text
    # nothing is left to ask: every unanswered question is greyed, and so is every criterion still open
    assert _first_question(driver) is None
    moot = driver.find_elements(By.CSS_SELECTOR, ".q.moot")
    assert any(b.get_attribute("data-q") == "conditions.hypothyroidism" for b in moot)
    assert "moot" in driver.find_element(By.CSS_SELECTOR, '#criteria tr[data-cid="E1"]').get_attribute("class")
    assert driver.switch_to.active_element.get_attribute("id") == "save"
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    _wait(driver, lambda d: "已保存" in d.find_element(By.ID, "save-status").text, "the save to be confirmed")
    _shot(driver, "2-excluded-zh")

    # -- one undetermined candidate, in English, with the keyboard alone ----------------------------
    driver.find_element(By.CSS_SELECTOR, '[data-set-lang="en"]').click()
    before = _planned(driver)
    driver.find_element(By.ID, "new-candidate").click()
    _after_plan(driver, before)
    for text in ("WEB-OPEN", "2023-03-01", "1950-01-01"):  # each Enter screens again and moves to the next question
        before = _planned(driver)
        driver.switch_to.active_element.send_keys(text, Keys.ENTER)
        _after_plan(driver, before)
    assert driver.switch_to.active_element.get_attribute("data-path") == "conditions.hypothyroidism"
    verdict = driver.find_element(By.ID, "verdict")
    assert verdict.get_attribute("data-decision") == "undetermined"
    for _ in range(300):  # Tab to the Save button, then Enter
        if driver.switch_to.active_element.get_attribute("id") == "save":
            break
        driver.switch_to.active_element.send_keys(Keys.TAB)
    assert driver.switch_to.active_element.get_attribute("id") == "save"
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    _wait(driver, lambda d: "Saved" in d.find_element(By.ID, "save-status").text, "the save to be confirmed")
    _shot(driver, "3-undetermined-en")
    assert driver.current_url == base + "/"  # no candidate data in the URL

    # -- the worklist finds the undetermined one; opening it resumes its latest record -------------
    driver.get(base + "/ui/worklist")
    _wait(driver, lambda d: d.execute_script("return document.body.dataset.loaded") == "true", "the worklist")
    assert driver.find_element(By.ID, "token-dialog").get_attribute("open") is None  # asked once per tab
    table = driver.find_element(By.ID, "worklist").text
    assert "WEB-OPEN" in table and "WEB-EXCL" not in table and "WEB-ELIG" not in table
    _shot(driver, "4-worklist")
    driver.find_element(By.CSS_SELECTOR, 'button.open[aria-label$="WEB-OPEN"]').click()
    _wait(driver, lambda d: d.find_element(By.ID, "f-candidate_id").get_attribute("value") == "WEB-OPEN", "the record")
    _wait(driver, lambda d: d.find_element(By.ID, "verdict").get_attribute("data-decision") == "undetermined",
          "the decision")
    assert driver.find_element(By.ID, "f-birth_date").get_attribute("value") == "1950-01-01"
    assert driver.current_url == base + "/"
    _shot(driver, "5-resumed")
    driver.set_window_size(820, 1180)  # a tablet held upright: one column, the decision on top
    time.sleep(0.5)
    assert driver.execute_script(
        "return document.getElementById('decision-panel').getBoundingClientRect().top"
        " < document.getElementById('record-form').getBoundingClientRect().top")
    _shot(driver, "6-tablet")

    # -- the audit counts all three, from the log ----------------------------------------------------
    audit = httpx.get(base + "/audit", headers={"Authorization": f"Bearer {TOKEN}"}).json()["counts"]
    assert (audit["assessed"], audit["randomized"], audit["not_meeting_inclusion"], audit["pending"]) == (3, 1, 1, 1)
    assert [e["screener"] for e in log.history("WEB-ELIG", "Web Clinic")] == ["browser-test"]


@pytest.mark.timeout(300)
def test_resume_and_save_keeps_what_the_form_does_not_show(server: tuple[str, ScreeningLog], browser: Any) -> None:
    """Review A, finding 6 (/tmp/review-a/t8.py): a FHIR-imported candidate opened in the form and saved
    again lost its provenance, which the form does not show."""
    import json

    from selenium.webdriver.common.by import By

    base, log = server
    driver = browser
    auth = {"Authorization": f"Bearer {TOKEN}"}
    bundle = (ROOT / "fixtures" / "fhir" / "handmade" / "parkinson.json").read_bytes()
    imported = httpx.post(base + "/screen?screening_start=2021-04-01", content=bundle,
                          headers={**auth, "Content-Type": "application/fhir+json"})
    assert imported.status_code == 200, imported.text
    cid = imported.json()["candidate_id"]
    _row, text = log.latest(cid, None)
    before = json.loads(text)
    assert "provenance" in before
    driver.get(base + "/ui/worklist")
    driver.execute_script("sessionStorage.setItem('nlc-screen-token', arguments[0]);"
                          "sessionStorage.setItem('nlc-screen-open', JSON.stringify({candidate_id: arguments[1], "
                          "site: null}))", TOKEN, cid)
    driver.get(base + "/")
    _wait(driver, lambda d: d.find_element(By.ID, "f-candidate_id").get_attribute("value") == cid, "the record")
    _wait(driver, lambda d: _planned(d) >= 1, "the plan")
    driver.find_element(By.ID, "save").click()
    _wait(driver, lambda d: d.find_element(By.ID, "save-status").text.strip() != "", "the save")
    _wait(driver, lambda d: len(log.history(cid, None)) == 2, "the second entry")
    _row, text = log.latest(cid, None)
    after = json.loads(text)
    assert after == before  # nothing the screener did not change is lost: provenance, entries' own fields
