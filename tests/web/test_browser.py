"""A radiologist's session in a real browser (Debian chromium via Playwright) against `triage web`.

Set TRIAGE_UPDATE_SCREENSHOTS=1 to refresh docs/screenshot-worklist.png and docs/screenshot-study.png.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.helpers import REPO, free_port, start_triage, triage_env, wait_for_port
from tests.web import factories as f
from tests.web.conftest import SECRET
from triage.config import Settings
from triage.db.engine import transaction
from triage.db.models import Series, Study, utcnow

CHROMIUM = "/usr/bin/chromium"
UPDATE_SCREENSHOTS = os.environ.get("TRIAGE_UPDATE_SCREENSHOTS") == "1"


def _with_key_image(s: Session, store: Path, parent: Study) -> None:
    child = s.scalars(select(Series).where(Series.study_id == parent.id)).one()
    assert child.result is not None and child.result.key_instance_uid
    f.key_image(s, store, child, child.result.key_instance_uid, size=512)


def _populate(factory: sessionmaker[Session], store: Path) -> str:
    """A morning's worklist: two unread bleeds, one read, routine heads, one in flight, one broken."""
    with transaction(factory) as s:
        f.thresholds(s)
        f.user(s, "rad", "radiologist")
        top = f.classified(s, f.probabilities(0.97, subdural=0.93, subarachnoid=0.41), n_slices=36, minutes_ago=7,
                           accession="RAD240117", patient_id="PAT-0042", patient_name="EXAMPLE^ALEX",
                           description="CT HEAD WO CONTRAST")
        _with_key_image(s, store, top)
        second = f.classified(s, f.probabilities(0.82, intraparenchymal=0.77, intraventricular=0.58),
                              n_slices=32, minutes_ago=26, accession="RAD240112", patient_id="PAT-0017",
                              patient_name="SAMPLE^ROBIN", description="CT HEAD TRAUMA")
        _with_key_image(s, store, second)
        read = f.classified(s, f.probabilities(0.91, epidural=0.85), n_slices=30, minutes_ago=95,
                            accession="RAD240101", patient_id="PAT-0007", patient_name="TEST^KIM",
                            description="CT HEAD WO CONTRAST")
        read.acknowledged_at, read.acknowledged_by = utcnow(), "dr.lee"
        for i, (p, minutes) in enumerate([(0.31, 15), (0.08, 48), (0.03, 130)]):
            f.classified(s, f.probabilities(p), n_slices=30, minutes_ago=minutes, accession=f"RAD24010{i + 2}",
                         patient_id=f"PAT-01{i}", patient_name=["PLACEHOLDER^SAM", "DEMO^JO", "MOCK^ALI"][i],
                         description="CT HEAD WO CONTRAST")
        busy = f.study(s, minutes_ago=1, accession="RAD240118", patient_id="PAT-0051", patient_name="DUMMY^PAT",
                       description="CT HEAD STROKE")
        f.series(s, busy, state="processing", num_instances=40)
        arriving = f.study(s, minutes_ago=0.2, accession="RAD240119", patient_id="PAT-0052",
                           patient_name="FICTIVE^NOA", description="CT HEAD")
        f.series(s, arriving, state="receiving", num_instances=12)
        broken = f.study(s, minutes_ago=33, accession="RAD240110", patient_id="PAT-0033",
                         patient_name="EXEMPLAR^MO", description="CT HEAD")
        f.series(s, broken, state="failed", reason="no decodable slices (JPEG-LS not supported)", num_instances=30)
        scout = f.study(s, minutes_ago=40, accession="RAD240109", patient_id="PAT-0034",
                        patient_name="SPECIMEN^RU", description="CT CHEST")
        f.series(s, scout, state="not_analysed", reason="body part CHEST is not a head", num_instances=120)
        return top.study_uid


@pytest.fixture
def web(database_url: str, web_settings: Settings, factory: sessionmaker[Session], tmp_path: Path) -> Iterator[str]:
    """`triage web` on a free port over the populated database; yields its base URL."""
    port = free_port()
    env = triage_env(TRIAGE_DATABASE_URL=database_url, TRIAGE_DATA_DIR=str(web_settings.data_dir),
                     TRIAGE_STORAGE_DIR=str(web_settings.store), TRIAGE_WEB__SECRET_KEY=SECRET)
    log = tmp_path / "web.log"
    proc = start_triage("web", "--web-port", str(port), env=env, cwd=tmp_path, log=log)
    try:
        wait_for_port(port, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        assert code == 0, log.read_text()
        assert "Traceback" not in log.read_text(), log.read_text()


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            yield instance
        finally:
            instance.close()


def _shoot(page: Page, tmp_path: Path, name: str, *, full_page: bool = False) -> None:
    target = tmp_path / name
    page.screenshot(path=str(target), full_page=full_page)
    assert target.stat().st_size > 10_000
    if UPDATE_SCREENSHOTS:
        shutil.copyfile(target, REPO / "docs" / name)


def test_a_radiologists_session(web: str, browser: Browser, factory: sessionmaker[Session],
                                web_settings: Settings, tmp_path: Path) -> None:
    top_uid = _populate(factory, web_settings.store)
    context = browser.new_context(viewport={"width": 1480, "height": 900}, timezone_id="UTC", locale="en-GB")
    errors: list[str] = []
    page = context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    # nobody without a login sees patient data
    page.goto(f"{web}/")
    expect(page).to_have_url(f"{web}/login?next=/")
    assert "EXAMPLE^ALEX" not in page.content()
    page.fill("input[name=username]", "rad")
    page.fill("input[name=password]", f.PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{web}/")

    # the flagged, unread study is on top, with its reason visible
    rows = page.locator("#worklist-body tr.study")
    expect(rows.first).to_have_attribute("data-uid", top_uid)
    expect(rows.first).to_have_class("study is-critical")
    expect(rows.first.locator(".finding-subdural")).to_have_text("SDH 93 %")
    expect(rows.nth(1)).to_contain_text("RAD240112")
    expect(page.locator("#worklist-body")).to_contain_text("no decodable slices")
    expect(page.locator("#worklist-body")).to_contain_text("7 min ago")
    expect(page.locator("#live-status")).to_contain_text("Live")
    page.evaluate("window.__sameDocument = true")
    _shoot(page, tmp_path, "screenshot-worklist.png")

    # a study flagged meanwhile appears on top, highlighted, without a reload
    with transaction(factory) as s:
        f.classified(s, f.probabilities(0.99, epidural=0.95), n_slices=20, minutes_ago=0.1, accession="RAD240120",
                     patient_name="LATE^ARRIVAL")
    expect(rows.first).to_contain_text("RAD240120", timeout=15_000)
    expect(rows.first).to_have_class("study is-critical is-new")
    expect(page.locator("#announce")).to_contain_text("New critical study: RAD240120 (epidural)")
    assert page.evaluate("window.__sameDocument") is True

    # keyboard: j moves to the first row, a acknowledges it in place
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("j")
    assert page.evaluate("document.activeElement.dataset.uid") == rows.first.get_attribute("data-uid")
    page.keyboard.press("a")
    late = page.locator("#worklist-body tr.study", has_text="RAD240120")
    expect(late).to_have_class("study is-acked", timeout=10_000)
    expect(rows.first).to_have_attribute("data-uid", top_uid)
    assert page.evaluate("window.__sameDocument") is True

    # open the top study: findings, chart, heat-map image
    rows.first.locator("a.study-link").click()
    expect(page).to_have_url(f"{web}/studies/{top_uid}")
    expect(page.locator(".verdict")).to_contain_text("Suspected intracranial hemorrhage: subdural")
    chart = page.locator("svg.chart")
    expect(chart).to_be_visible()
    expect(chart.locator("polyline")).to_have_count(6)
    image = page.locator(".key-image img")
    expect(image).to_be_visible()
    page.wait_for_function("document.querySelector('.key-image img').naturalWidth === 512")
    _shoot(page, tmp_path, "screenshot-study.png", full_page=True)

    # acknowledge on the study page, then the worklist row has changed
    page.click("#ack-area button")
    expect(page.locator("#ack-area")).to_contain_text("Acknowledged by rad")
    page.click("a.brand")
    top_row = page.locator(f"#worklist-body tr[data-uid='{top_uid}']")
    expect(top_row).to_have_class("study is-acked")
    expect(top_row).to_contain_text("✓ rad")
    expect(rows.first).to_contain_text("RAD240112")

    # a study page in flight shows its result once the worker is done
    page.locator("#worklist-body tr.study", has_text="RAD240118").locator("a.study-link").click()
    expect(page.locator("#findings")).to_contain_text("Not classified yet (processing)")
    with transaction(factory) as s:
        busy = s.scalars(select(Study).where(Study.accession_number == "RAD240118")).one()
        child = s.scalars(select(Series).where(Series.study_id == busy.id)).one()
        child.state, child.classified_at = "classified", utcnow()
        f.result(s, child, f.probabilities(0.12))
    expect(page.locator(".verdict")).to_contain_text("No hemorrhage above the thresholds", timeout=15_000)
    assert errors == [], errors
    context.close()
