"""A real headless browser on the admin console: Debian's chromium over WebDriver.

``start_browser`` starts /usr/bin/chromium through /usr/bin/chromedriver, named
explicitly, so selenium never runs its manager and nothing is downloaded.
``Console`` drives one browser on one admin listener: open a page, wait for an
element, fill and send a form, take a screenshot, and check what the page
loaded (same origin only), its headers (CSP) and the browser's error log.
"""

from __future__ import annotations

import base64
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any, Final, cast

import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait

ROOT: Final = Path(__file__).resolve().parents[2]
CHROMIUM: Final = Path("/usr/bin/chromium")
CHROMEDRIVER: Final = Path("/usr/bin/chromedriver")
NO_BROWSER: Final = (
    "needs Debian's chromium and chromium-driver (/usr/bin/chromium, "
    "/usr/bin/chromedriver); .ci/test-deps installs them"
)
# Every console response carries exactly this policy (the console contract).
CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
DESKTOP: Final = (1200, 900)
# A phone's viewport, emulated through DevTools: a window cannot be this narrow.
PHONE: Final = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}
# Screenshots taller than this are cut: the docs want a page's top, not all of it.
MAX_SHOT_HEIGHT: Final = 1000
# With this set, the screenshots README and the docs show are refreshed too.
DOCS_IMAGES_ENV: Final = "AUTHPROXY_DOCS_IMAGES"
# Seconds to wait for an element or a condition; a hang fails, speed is not tested.
WAIT: Final = 10.0
# What a page may have loaded, besides its own origin (img-src allows data:).
_LOADED_JS: Final = """
return [location.href,
  ...performance.getEntriesByType('resource').map(e => e.name),
  ...Array.from(document.querySelectorAll(
      'script[src], link[href], img[src], iframe, source[src], object, embed'))
    .map(e => e.src || e.href || e.data || '')];
"""
_CONTENT_HEIGHT_JS: Final = """
const bottoms = Array.from(document.body.querySelectorAll('*'))
  .map(e => e.getBoundingClientRect().bottom + scrollY);
return Math.ceil(Math.max(innerHeight / 2, ...bottoms) + 16);
"""

browser_needed = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()), reason=NO_BROWSER
)


def artifacts_dir() -> Path:
    """Return where screenshots go: $AUTHPROXY_TEST_ARTIFACTS, or under build/."""
    configured = os.environ.get("AUTHPROXY_TEST_ARTIFACTS")
    path = Path(configured) if configured else ROOT / "build/test-artifacts/console"
    path.mkdir(parents=True, exist_ok=True)
    return path


def start_browser(*, javascript: bool = True) -> WebDriver:
    """Start headless chromium (JavaScript on or off) at the desktop size."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",  # the tests run as root, where the sandbox refuses to start
        "--disable-gpu",
        f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
        "--hide-scrollbars",  # scrollbars would make screenshots differ by theme
        "--lang=en-US",
    ):
        options.add_argument(arg)
    # The console log is how a CSP violation or a script error becomes visible.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2}
        )
    # selenium logs each command at DEBUG, typed text (tokens) included; the
    # tests' log capture would see those secrets.
    logging.getLogger("selenium").setLevel(logging.INFO)
    logging.getLogger("urllib3.connectionpool").setLevel(logging.INFO)
    with pytest.MonkeyPatch.context() as env:
        # The driver's path is given, so selenium skips its manager; if it ever
        # did run, it must not go online.
        env.setenv("SE_OFFLINE", "true")
        return webdriver.Chrome(
            service=Service(executable_path=str(CHROMEDRIVER)), options=options
        )


@dataclass
class Console:
    """One browser on the admin console of one admin listener."""

    driver: WebDriver
    base: str  # the admin listener's origin, http://127.0.0.1:PORT

    def open(self, path: str) -> None:
        """Load ``path`` (``/admin/ui/keys``) and wait for it to finish."""
        self.driver.get(self.base + path)

    @property
    def path(self) -> str:
        """The path (and query) of the page the browser shows."""
        url = self.driver.current_url
        assert url.startswith(self.base + "/"), url
        return url[len(self.base) :]

    def wait_for(self, css: str, within: float = WAIT) -> WebElement:
        """Return the element ``css`` once the page has one; fail after ``within``."""
        return WebDriverWait(self.driver, within).until(
            expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css)),
            message=f"no {css} on {self.driver.current_url}",
        )

    def until(
        self, condition: Callable[[], object], message: str, within: float = WAIT
    ) -> None:
        """Wait until ``condition()`` is true (polled); fail with ``message``.

        A stale element counts as not yet: the live page's poller replaces
        its rows while a condition may be reading them.
        """
        WebDriverWait(
            self.driver,
            within,
            poll_frequency=0.1,
            ignored_exceptions=(StaleElementReferenceException,),
        ).until(lambda _: condition(), message=message)

    def find_all(self, css: str) -> list[WebElement]:
        """Return every element matching ``css`` (no waiting)."""
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        """Return the visible text of the element ``css``."""
        return self.wait_for(css).text

    def fill(self, form: str, fields: Mapping[str, str | bool | list[str]]) -> None:
        """Fill the form ``form`` as a person would.

        A ``bool`` ticks or clears a checkbox; a list ticks exactly those
        checkboxes of the name (``scopes``); a string is typed into a text
        field, or chosen in a select.
        """
        element = self.wait_for(form)
        for name, value in fields.items():
            inputs = element.find_elements(By.NAME, name)
            assert inputs, f"{form} has no field {name}"
            if isinstance(value, list):
                for box in inputs:
                    wanted = box.get_attribute("value") in value
                    if box.is_selected() != wanted:
                        box.click()
            elif isinstance(value, bool):
                if inputs[0].is_selected() != value:
                    inputs[0].click()
            elif inputs[0].tag_name == "select":
                Select(inputs[0]).select_by_value(value)
            else:
                inputs[0].clear()
                inputs[0].send_keys(value)

    def submit(self, form: str) -> None:
        """Click ``form``'s submit button and wait for the next page to load."""
        old = self.driver.find_element(By.TAG_NAME, "html")
        self.wait_for(form).find_element(
            By.CSS_SELECTOR,
            "button[type=submit], input[type=submit], button:not([type])",
        ).click()
        # Mid-navigation chromedriver may answer "node does not belong to the
        # document" rather than "stale": both mean the old page is going.
        WebDriverWait(
            self.driver, WAIT, ignored_exceptions=(WebDriverException,)
        ).until(expected_conditions.staleness_of(old), message=f"{form} did not submit")
        self.until(
            lambda: (
                self.driver.execute_script("return document.readyState") == "complete"
            ),
            f"the page after {form} did not load",
        )

    def screenshot(self, name: str, *, docs: bool = False) -> Path:
        """Save the page (its top MAX_SHOT_HEIGHT px) as ``<artifacts>/<name>.png``.

        With ``docs`` and $AUTHPROXY_DOCS_IMAGES set, it also becomes
        ``docs/images/console-<name>.png``.
        """
        # The content's height, not the window's: a short page is not padded.
        height = cast("int", self.driver.execute_script(_CONTENT_HEIGHT_JS))
        width = cast("int", self.driver.execute_script("return innerWidth"))
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {
                    "x": 0,
                    "y": 0,
                    "width": width,
                    "height": min(height, MAX_SHOT_HEIGHT),
                    "scale": 1,
                },
            },
        )
        png = base64.b64decode(shot["data"])
        path = artifacts_dir() / f"{name}.png"
        path.write_bytes(png)
        if docs and os.environ.get(DOCS_IMAGES_ENV):
            (ROOT / "docs/images" / f"console-{name}.png").write_bytes(png)
        return path

    def outside_loads(self) -> list[str]:
        """Return every URL the page loaded or embeds that is not this origin."""
        urls = cast("list[str]", self.driver.execute_script(_LOADED_JS))
        return sorted(
            {
                url
                for url in urls
                if not (url.startswith((self.base + "/", "data:")) or url == "")
            }
        )

    def errors(self) -> list[dict[str, Any]]:
        """Return (and clear) the browser's SEVERE log entries but HTTP statuses.

        A refused resource (CSP), a script error or a ``console.error`` counts;
        a page answered 401 or 404 (a favicon) is the server's business and
        is asserted by status elsewhere.
        """
        entries = cast("list[dict[str, Any]]", self.driver.get_log("browser"))
        return [
            e for e in entries if e["level"] == "SEVERE" and e["source"] != "network"
        ]

    def cookie_header(self) -> str:
        """Return the browser's cookies for this origin as a ``Cookie`` header."""
        return "; ".join(f"{c['name']}={c['value']}" for c in self.driver.get_cookies())

    def fetch(self, path: str, cookie: str | None = None) -> tuple[int, Message, bytes]:
        """GET ``path`` outside the browser, with its cookies (or ``cookie``).

        Redirects are not followed.

        WebDriver does not show response headers, so the CSP header and a
        download's type are read this way.

        Returns:
            The status, the headers and the body.
        """
        request = urllib.request.Request(  # noqa: S310 - our loopback listener
            self.base + path,
            headers={"Cookie": self.cookie_header() if cookie is None else cookie},
        )
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(request, timeout=WAIT) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as err:
            with err:
                return err.code, err.headers, err.read()

    def emulate_phone(self, on: bool = True) -> None:
        """Give the page a phone's viewport (``on``) or the desktop one back."""
        if on:
            self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
        else:
            self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    def page_overflows(self) -> bool:
        """Tell whether the page itself scrolls sideways (tables may, inside)."""
        return bool(
            self.driver.execute_script(
                "return document.documentElement.scrollWidth > innerWidth + 1"
            )
        )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Hand a redirect back as it is: its status and Location are the answer."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None
