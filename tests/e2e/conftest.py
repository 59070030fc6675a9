"""Fixtures of the admin console's browser tests: one stack and one browser a module.

Starting chromium takes a second or two, so a module shares one browser (and
one proxy stack); each test gets it signed out, with an empty error log.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver

from tests.support.audit import write_records
from tests.support.browser import Console, start_browser
from tests.support.history import usage_history
from tests.support.logs import LogCapture, Secrets
from tests.support.threadstack import ThreadStack

# The keys every console stack starts with (besides the admin key "ops").
SEEDED_KEYS: dict[str, dict[str, Any]] = {
    "build-bot": {"limits": {"requests_per_minute": 120}, "note": "CI pipelines"},
    "notebook": {"models": ("llama3.2:latest",)},
    "grafana": {"scopes": ("models:read",), "note": "dashboards"},
}


def _seed(stack: ThreadStack) -> None:
    """Make the seeded keys, then two weeks of their traffic in the audit log."""
    ids = {
        name: stack.make_key(name, **spec).record.id
        for name, spec in SEEDED_KEYS.items()
    }
    stack.audit_path.parent.mkdir(parents=True, exist_ok=True)
    write_records(stack.audit_path, usage_history(ids, datetime.now(UTC)))


@pytest.fixture(scope="module")
def browser_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadStack]:
    """The proxy, its admin listener with the console, and the fake Ollama."""
    stack = ThreadStack(tmp_path_factory.mktemp("console"))
    stack.start(_seed)
    yield stack
    stack.close()
    for path in stack.audit_files:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        for secret in stack.secrets.values:
            assert secret not in text, f"a secret reached {path.name}"


@pytest.fixture(scope="module")
def driver() -> Iterator[WebDriver]:
    """Headless chromium with JavaScript, shared by a module's tests."""
    browser = start_browser()
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def nojs_driver() -> Iterator[WebDriver]:
    """Headless chromium with JavaScript turned off."""
    browser = start_browser(javascript=False)
    yield browser
    browser.quit()


def _fresh(driver: WebDriver, stack: ThreadStack) -> Console:
    console = Console(driver, stack.admin_url)
    console.emulate_phone(on=False)
    # Cookies are per site: load one of the console's pages before deleting.
    console.open("/admin/ui/login")
    driver.delete_all_cookies()
    console.errors()  # start from an empty log
    return console


@pytest.fixture
def console(
    driver: WebDriver,
    browser_stack: ThreadStack,
    log_capture: LogCapture,
    secrets_seen: Secrets,
) -> Iterator[Console]:
    """The module's browser on the console, signed out; its log checked after.

    ``log_capture`` is named so that it checks the logs after this fixture has
    handed it the secrets the test read from pages.
    """
    console = _fresh(driver, browser_stack)
    yield console
    secrets_seen.add(*browser_stack.secrets.values)
    assert console.errors() == [], "the browser logged errors (CSP, script)"


@pytest.fixture
def nojs_console(
    nojs_driver: WebDriver,
    browser_stack: ThreadStack,
    log_capture: LogCapture,
    secrets_seen: Secrets,
) -> Iterator[Console]:
    """The JavaScript-less browser on the console, signed out."""
    console = _fresh(nojs_driver, browser_stack)
    yield console
    secrets_seen.add(*browser_stack.secrets.values)
    assert console.errors() == []
