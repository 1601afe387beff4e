"""The web UI in a real browser: Debian's Chromium, driven through Debian's chromium-driver (installed by
.ci/services; nothing is downloaded), against the daemon running on the example."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from tests.conftest import unavailable
from tests.e2e.conftest import API_TOKEN, get, reconciler, wait_for

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
DRIVER = "/usr/bin/chromedriver"
DESIRED_SECRET = "desired-pw-7e21"
LIVE_SECRET = "live-pw-0d5c"


@pytest.fixture
def secret_example(example: Path) -> Path:
    """payments-api's database password is a secret; prod desires one value and live holds another."""
    manifest = example / "desired" / "payments-api.yaml"
    text = manifest.read_text().replace(
        "    database: {host: db.prod.internal, pool_size: 20}\n",
        f"    database: {{host: db.prod.internal, pool_size: 20, password: {DESIRED_SECRET}}}\n",
    )
    manifest.write_text(
        text.replace(
            '  ignore: ["/metadata/**"]\n', '  ignore: ["/metadata/**"]\n  secrets: ["/database/password"]\n', 1
        )
    )
    live = example / "live" / "payments-api" / "prod" / "config.yaml"
    doc = yaml.safe_load(live.read_text())
    doc["database"]["password"] = LIVE_SECRET
    live.write_text(yaml.safe_dump(doc))
    return example


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (shutil.which(CHROMIUM) and shutil.which(DRIVER)):
        unavailable("Debian's chromium and chromium-driver are not installed (.ci/services installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1300,900",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def _state(driver: Any, target: str) -> str:
    """The tile's state; "" when htmx replaced the tile between finding it and reading it (every 2 s)."""
    try:
        return str(driver.find_element(By.CSS_SELECTOR, f'a.tile[data-target="{target}"]').get_attribute("data-state"))
    except StaleElementReferenceException:
        return ""


def _no_console_errors(driver: Any, seen: list[str]) -> None:
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    page = driver.page_source
    assert DESIRED_SECRET not in page and LIVE_SECRET not in page, driver.current_url
    seen.append(driver.current_url)


def _post(url: str, data: bytes, cookie: str | None = None) -> int:
    request = urllib.request.Request(url, data=data, method="POST")
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    if cookie:
        request.add_header("Cookie", cookie)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_ui_in_a_browser_shows_drift_approves_and_rolls_back(
    secret_example: Path, daemon: dict[str, Any], browser: Any
) -> None:
    """Every page loads without console errors and without a secret value; a new drift shows in the fleet
    without a reload, then in the matrix and the target page; approving an escalation in the browser lets the
    next apply pass fix it; a rollback from the history page restores the live file; a request without the
    session or its CSRF token is refused."""
    base, example, seen = daemon["base"], daemon["example"], []
    browser.get(base + "/")
    wait_for(lambda: _state(browser, "payments-api-prod") == "escalated", what="prod escalated in the fleet")
    wait_for(lambda: _state(browser, "payments-api-staging") == "in-sync", what="staging's first pass in the fleet")
    _no_console_errors(browser, seen)

    # A drift that appears shows in the open page without a reload (htmx refreshes the tiles every 2 s).
    staging = example / "live" / "payments-api" / "staging" / "config.yaml"
    doc = yaml.safe_load(staging.read_text())
    doc["log_level"] = "DEBUG"
    staging.write_text(yaml.safe_dump(doc))
    wait_for(lambda: _state(browser, "payments-api-staging") == "reversible", timeout_s=30, what="drift in the tile")
    _no_console_errors(browser, seen)

    browser.get(base + "/apps/payments-api?baseline=prod")
    cell = browser.find_element(By.CSS_SELECTOR, 'tr[data-key="/log_level"] td:nth-child(2)')  # staging's column
    assert "drifted" in str(cell.get_attribute("class"))
    _no_console_errors(browser, seen)
    browser.get(base + "/targets/payments-api-staging")
    assert browser.find_elements(By.CSS_SELECTOR, 'tr[data-path="/log_level"]')
    browser.get(base + "/targets/payments-api-prod")
    browser.find_element(By.LINK_TEXT, "why?").click()
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "ol.trace"), what="the explain trace, loaded in place")
    _no_console_errors(browser, seen)

    # Sign in, approve the prod escalation; the next apply pass fixes it.
    browser.get(base + "/signin")
    browser.find_element(By.NAME, "actor").send_keys("alice")
    browser.find_element(By.NAME, "token").send_keys(API_TOKEN)
    browser.find_element(By.CSS_SELECTOR, "form[action='/signin'] button").click()
    # The click returns before the sign-in's answer sets the cookie; a page asked for meanwhile cancels it.
    wait_for(
        lambda: "alice" in "".join(e.text for e in browser.find_elements(By.CSS_SELECTOR, "span.who")),
        what="signed in as alice",
    )

    def approval_row() -> Any:
        """The prod escalation's row, which may appear a moment after the tile showed the escalation."""
        browser.get(base + "/approvals")
        rows = browser.find_elements(By.CSS_SELECTOR, "tr[data-approval]")
        return next((r for r in rows if "/database/pool_size" in r.text), None)

    row = wait_for(approval_row, what="the prod escalation's approval in the list")
    row.find_element(By.CSS_SELECTOR, "form[action$='/approve'] button").click()
    wait_for(lambda: "approved by alice" in browser.page_source, what="the approval's flash")
    _no_console_errors(browser, seen)
    reconciler("apply", "--target", "payments-api-prod")
    prod = example / "live" / "payments-api" / "prod" / "config.yaml"
    assert yaml.safe_load(prod.read_text())["database"]["pool_size"] == 20

    # Roll back an apply run from its history page: the preview first, then for real.
    applied = reconciler("apply", "--target", "payments-api-staging", "--format", "json")
    assert yaml.safe_load(staging.read_text())["log_level"] == "INFO", applied.stdout + applied.stderr
    run_id = json.loads(applied.stdout)["run_id"]
    browser.get(f"{base}/history/{run_id}")
    browser.find_element(By.XPATH, "//button[contains(., 'Roll back this run')]").click()
    wait_for(lambda: "nothing was written" in browser.page_source, what="the rollback preview")
    assert yaml.safe_load(staging.read_text())["log_level"] == "INFO"
    browser.find_element(By.XPATH, "//button[contains(., 'Roll back for real')]").click()
    wait_for(lambda: yaml.safe_load(staging.read_text())["log_level"] == "DEBUG", what="the live file restored")
    _no_console_errors(browser, seen)

    for page in ("/history", "/exceptions", "/approvals", "/remediation", f"/history/{run_id}"):
        browser.get(base + page)
        _no_console_errors(browser, seen)
    for api in ("/api/v1/status", "/api/v1/drift"):
        assert LIVE_SECRET not in get(base + api)[1] and DESIRED_SECRET not in get(base + api)[1]

    # Without the session, or with it but without the CSRF token, a state-changing request is refused.
    cookie = "reconciler_session=" + browser.get_cookie("reconciler_session")["value"]
    assert _post(f"{base}/history/{run_id}/rollback", b"csrf=x") == 403
    assert _post(f"{base}/history/{run_id}/rollback", b"", cookie) == 403
    assert _post(f"{base}/approvals/x/approve", b"csrf=", cookie) == 403
    assert _post(f"{base}/breaker/reset", b"csrf=&reason=r", cookie) == 403
    assert yaml.safe_load(staging.read_text())["log_level"] == "DEBUG"
