"""The console in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium) against a
real gateway process (SQLite store) over the fake LLM (another process). Screenshots of the main views go to
tests/console/screenshots/ (gitignored).

Without a browser these tests skip locally and FAIL under CI=true (`scripts/browser-env` installs one)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway import REPO, GatewayProcess

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SHOTS = Path(__file__).parent / "screenshots"
HOSTILE = [
    '<img src=x onerror="window.__pwned = 1">',
    "</script><script>window.__pwned = 2</script>",
    "<b>bold</b> & <a href='javascript:window.__pwned=3'>link</a>",
]

if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(
            "CI needs chromium and chromium-driver for the console tests: run scripts/browser-env",
            pytrace=False,
        )
    pytest.skip(
        "chromium / chromedriver not installed (scripts/browser-env installs them)", allow_module_level=True
    )

from selenium import webdriver  # noqa: E402  (only with a browser to drive)
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def fake_llm_url() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_llm", "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("fake-llm listening on "), line
    try:
        yield line.split()[-1]
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def gw(fake_llm_url: str) -> Iterator[GatewayProcess]:
    env = {
        "ATHENA_LLM_URL": fake_llm_url + "/v1",
        "ATHENA_LLM_MODEL": "fake-model",
        "ATHENA_DEVICE_POLICY": "known",
        "ATHENA_DEVICES": json.dumps({d: {"status": "allowed"} for d in ("kitchen", "hall")}),
    }
    with GatewayProcess(env) as process:
        yield process


@pytest.fixture(scope="module")
def downloads() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="athena-downloads-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(downloads: Path) -> Iterator[WebDriver]:
    profile = tempfile.mkdtemp(prefix="athena-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    SHOTS.mkdir(exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(driver: WebDriver, condition: Callable[[WebDriver], Any], timeout: float = 10.0) -> Any:
    """The console re-renders every 2 s: an element found a moment ago may be gone; try again."""
    return WebDriverWait(
        driver, timeout, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException]
    ).until(condition)


def click(driver: WebDriver, selector: str) -> None:
    def go(d: WebDriver) -> bool:
        found = d.find_elements(By.CSS_SELECTOR, selector)
        if not found:
            return False
        found[0].click()
        return True

    wait(driver, go)


def login(driver: WebDriver, gw: GatewayProcess, token: str | None = None) -> None:
    driver.get(gw.url + "/admin")
    field = wait(driver, lambda d: d.find_element(By.ID, "token"))
    field.clear()
    field.send_keys(token if token is not None else gw.token)
    driver.find_element(By.ID, "login-button").click()


def row_text(driver: WebDriver, device: str) -> str:
    text: str = driver.execute_script(
        'const r = document.querySelector(`#devices tbody tr[data-device="${arguments[0]}"]`);'
        "return r ? r.textContent : '';",
        device,
    )
    return text


def texts(driver: WebDriver, selector: str) -> list[str]:
    """textContent of every match, read in one script (no element can go stale halfway)."""
    found: list[str] = driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map((e) => e.textContent);", selector
    )
    return found


def row(device: str) -> str:
    return f'#devices tbody tr[data-device="{device}"]'


def test_wrong_or_no_token_shows_the_login_never_data(browser: WebDriver, gw: GatewayProcess) -> None:
    gw.converse("a secret question", device_id="hall")
    for token in ("wrong-token", " "):
        login(browser, gw, token)
        if token.strip():
            wait(browser, lambda d: d.find_element(By.ID, "login-error").text == "Wrong token.")
        assert not browser.find_element(By.ID, "app").is_displayed()
        assert browser.find_element(By.ID, "login").is_displayed()
        assert "a secret question" not in browser.page_source and "hall" not in texts(browser, "#devices td")
    # The page itself is served without the token; the data never is.
    with urllib.request.urlopen(gw.url + "/admin") as resp:
        assert resp.status == 200
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert gw.request("GET", "/athena/devices", token="wrong-token")[0] == 401
    browser.save_screenshot(str(SHOTS / "login.png"))


def test_console_devices_transcript_settings_end_and_export(
    browser: WebDriver, gw: GatewayProcess, downloads: Path
) -> None:
    login(browser, gw)
    wait(browser, lambda d: d.find_element(By.ID, "app").is_displayed())
    first = gw.converse(
        "What is the capital of France?", device_id="kitchen", device_name="Kitchen Display", area="Kitchen"
    )
    wait(browser, lambda d: "Kitchen Display" in row_text(d, "kitchen"))
    click(browser, row("kitchen"))
    wait(browser, lambda d: "What is the capital of France?" in texts(d, "#transcript .msg .text"))
    assert "Reply to: What is the capital of France?" in texts(browser, "#transcript .msg .text")
    assert any("LLM" in t and "fake-model" in t for t in texts(browser, "#transcript .msg.assistant .who"))
    browser.save_screenshot(str(SHOTS / "devices.png"))

    # Change its timeout; the next turn uses it.
    field = browser.find_element(By.ID, "set-timeout")
    field.clear()
    field.send_keys("45")
    click(browser, "#save")
    wait(browser, lambda d: "Saved" in d.find_element(By.ID, "saved").text)
    assert gw.request("GET", "/athena/devices/kitchen")[1]["settings"] == {"timeout": 45.0}
    second = gw.converse("And its population?", device_id="kitchen")
    assert second["conversation_id"] == first["conversation_id"]
    wait(
        browser, lambda d: "timeout 45s" in d.find_element(By.CSS_SELECTOR, "#transcript .session-head").text
    )
    assert gw.request("GET", "/athena/sessions/kitchen")[1]["timeout"] == 45
    browser.save_screenshot(str(SHOTS / "transcript.png"))

    # End its session, then export it (now a past session).
    click(browser, "#end-session")
    wait(browser, lambda d: "No live session" in d.find_element(By.ID, "transcript").text)
    assert gw.request("GET", "/athena/sessions/kitchen")[0] == 404
    past = f'#sessions li[data-session="{first["conversation_id"]}"]'
    wait(browser, lambda d: "ended by cleared" in "".join(texts(d, past)))
    click(browser, past)
    wait(browser, lambda d: "And its population?" in texts(d, "#transcript .msg .text"))
    click(browser, "#export")
    name = f"athena-kitchen-{first['conversation_id']}.json"
    wait(browser, lambda d: (downloads / name).exists() and (downloads / name).stat().st_size > 0)
    exported = json.loads((downloads / name).read_text())
    assert exported["session"]["id"] == first["conversation_id"] and exported["session"]["live"] is False
    assert [m["content"] for m in exported["messages"]] == [
        "What is the capital of France?",
        "Reply to: What is the capital of France?",
        "And its population?",
        "Reply to: And its population?",
    ]


def test_allow_a_pending_device(browser: WebDriver, gw: GatewayProcess) -> None:
    login(browser, gw)
    refused = gw.converse("let me in", device_id="porch", device_name="Porch Speaker")
    assert refused["response"]["response_type"] == "error"
    wait(browser, lambda d: "pending" in row_text(d, "porch"))
    browser.save_screenshot(str(SHOTS / "pending.png"))
    click(browser, row("porch") + " button.allow")
    wait(browser, lambda d: "allowed" in row_text(d, "porch"))
    served = gw.converse("let me in", device_id="porch")
    assert served["response"]["response_type"] == "query_answer"


def test_a_hostile_transcript_shows_as_text_and_runs_nothing(browser: WebDriver, gw: GatewayProcess) -> None:
    login(browser, gw)
    for text in HOSTILE:
        gw.converse(text, device_id="hall", device_name='<img src=x onerror="window.__pwned = 4">')
    wait(browser, lambda d: row_text(d, "hall"))
    click(browser, row("hall"))
    wait(browser, lambda d: HOSTILE[-1] in texts(d, "#transcript .msg .text"))
    shown = texts(browser, "#transcript .msg .text")
    for text in HOSTILE:
        assert text in shown and f"Reply to: {text}" in shown
    assert (
        browser.find_elements(
            By.CSS_SELECTOR, "#transcript img, #transcript script, #transcript b, #devices img"
        )
        == []
    )
    assert '<img src=x onerror="window.__pwned = 4">' in texts(browser, "#devices td")
    time.sleep(0.5)  # an onerror handler would have run by now
    assert browser.execute_script("return window.__pwned") is None
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018
    browser.save_screenshot(str(SHOTS / "hostile.png"))


def test_usage_view(browser: WebDriver, gw: GatewayProcess) -> None:
    login(browser, gw)
    wait(browser, lambda d: d.find_element(By.ID, "app").is_displayed())
    click(browser, '.tab[data-tab="usage"]')
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#usage svg rect"))
    turns = texts(browser, "#usage .card .n")[0]
    assert int(turns) == gw.request("GET", "/athena/stats")[1]["totals"]["turns"] > 0
    assert "kitchen" in texts(browser, "#per-device td")
    browser.save_screenshot(str(SHOTS / "usage.png"))
