"""A real headless Chromium for the browser tests, driven through Selenium.

The browser is Debian's ``chromium`` and the driver Debian's
``chromium-driver`` (``/usr/bin/chromium``, ``/usr/bin/chromedriver``;
``.ci/run`` installs them with apt-get). Nothing is downloaded: the driver
is given to Selenium through :class:`Service`, so Selenium Manager (which
would look a driver up, and fetch one, on the network) is never run, and
``SE_OFFLINE`` is set in case a future Selenium runs it anyway.

Tests that need the browser take the ``browser`` fixture (a
:class:`Browser`). Its methods are async: every blocking WebDriver call runs
in a worker thread (``trio.to_thread.run_sync``), so a server under test in
the same Trio loop keeps serving while the browser waits for it. One
Chromium is started per test module (about a second each) and reset
between tests: cookies, cache and logs cleared, back to ``about:blank`` and
1280x900.

Without the browser the tests are skipped with the reason, except when
``NEURO_TESTS_REQUIRE_BROWSER=1`` (set by ``.ci/run``): then they fail.

Screenshots go to ``tests/.screenshots/`` (git-ignored), named after the
test. :func:`save_docs_screenshot` writes the docs' images into
``docs/_static/``, only when ``NEURO_TESTS_DOCS_SCREENSHOTS=1`` (``nox -s
screenshots``).
"""

from __future__ import annotations

import io
import ipaddress
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any, Final, TypeVar, cast
from urllib.parse import urlsplit

import orjson
import pytest
import trio
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.command import Command
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from neuro_api.app import NeuroProcess, ProcessInfo, build_parser, default_capabilities
from neuro_api.server import AbstractTrioNeuroServer, RandomNeuroServer
from neuro_api.settings import check_sections, load_settings

CHROMIUM: Final = Path("/usr/bin/chromium")
CHROMEDRIVER: Final = Path("/usr/bin/chromedriver")
REQUIRE_ENV: Final = "NEURO_TESTS_REQUIRE_BROWSER"
DOCS_ENV: Final = "NEURO_TESTS_DOCS_SCREENSHOTS"
TESTS: Final = Path(__file__).resolve().parent
SCREENSHOTS: Final = TESTS / ".screenshots"
DOCS_STATIC: Final = TESTS.parent / "docs" / "_static"
WAIT: Final = 10.0
"""Seconds any wait of the browser's gives up after (well under the test's 60)."""
WIDTH, HEIGHT = 1280, 900
PHONE_WIDTH, PHONE_HEIGHT = 390, 844

# The flags agreed in DASH.md: headless, nothing the browser does on its own
# (updates, sync, pings, QUIC probes) that could leave the machine.
FLAGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    f"--window-size={WIDTH},{HEIGHT}",
)

T = TypeVar("T")


def missing() -> str | None:
    """Why the browser tests cannot run here, or ``None`` when they can."""
    absent = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if absent:
        return (
            f"needs {' and '.join(absent)} "
            "(apt-get install chromium chromium-driver; .ci/run installs them)"
        )
    return None


def require_browser() -> None:
    """Skip the calling test without a browser; fail instead in CI."""
    reason = missing()
    if reason is None:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but the browser test {reason}", pytrace=False)
    pytest.skip(reason)


def chrome_options(user_data_dir: Path) -> webdriver.ChromeOptions:
    """The options every test browser starts with (console and network logged)."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={user_data_dir}")
    # "browser": the console; "performance": the DevTools Network events, to
    # see every request a page makes.
    options.set_capability(
        "goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"}
    )
    # An alert() left open makes the next command fail with
    # UnexpectedAlertPresentException (what an XSS test wants to see).
    options.unhandled_prompt_behavior = "dismiss and notify"
    return options


def start_driver(user_data_dir: Path) -> webdriver.Chrome:
    """Start Chromium through the system chromedriver; nothing is downloaded.

    ``Service(executable_path=...)`` makes Selenium skip Selenium Manager
    altogether (``DriverFinder``); ``SE_OFFLINE`` keeps it offline if a
    later Selenium ran it anyway.
    """
    os.environ["SE_OFFLINE"] = "true"
    service = Service(executable_path=str(CHROMEDRIVER), log_output=os.devnull)
    return webdriver.Chrome(service=service, options=chrome_options(user_data_dir))


def is_loopback(url: str) -> bool:
    """Whether a page's request stays on this machine (or has no network)."""
    parts = urlsplit(url)
    if parts.scheme in {"data", "blob", "about", "chrome", "devtools"}:
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _test_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "test"


class Browser:
    """One Chromium, driven from Trio: every method runs its WebDriver calls
    in a worker thread, one at a time (a WebDriver is not thread-safe).

    ``driver`` is the Selenium WebDriver itself, for anything not wrapped
    here: ``await browser.run(lambda d: d.title)``. Waits raise Selenium's
    ``TimeoutException`` after ``within`` seconds (:data:`WAIT` by
    default); nothing sleeps.
    """

    def __init__(self, driver: webdriver.Chrome, name: str = "test") -> None:
        self.driver = driver
        self.name = name
        """The test's name: screenshots are named after it."""
        self.console: list[dict[str, Any]] = []
        """Every console entry so far (``level``, ``message``, ``source``)."""
        self.network: list[str] = []
        """Every URL a page requested (or opened a WebSocket to) so far."""
        self._lock = trio.Lock()
        self._shots = 0

    # -- running WebDriver calls from Trio --------------------------------

    async def run(self, call: Callable[[webdriver.Chrome], T]) -> T:
        """``call(driver)`` in a worker thread; its result or its exception.

        The thread cannot be abandoned: a cancelled test waits for the call,
        which every wait here bounds by its timeout.
        """
        async with self._lock:
            return await trio.to_thread.run_sync(call, self.driver)

    # -- navigation and waiting ---------------------------------------------

    async def get(self, url: str) -> None:
        """Open ``url`` (returns once the page's ``load`` event fired)."""
        await self.run(lambda d: d.get(url))

    async def wait_for(self, css: str, within: float = WAIT) -> WebElement:
        """The first element matching ``css`` once it is visible."""
        located = expected_conditions.visibility_of_element_located(
            (By.CSS_SELECTOR, css)
        )
        return await self.run(lambda d: WebDriverWait(d, within).until(located))

    async def wait_for_text(
        self, css: str, text: str, within: float = WAIT
    ) -> WebElement:
        """The first element matching ``css`` once its text contains ``text``."""
        has_text = expected_conditions.text_to_be_present_in_element(
            (By.CSS_SELECTOR, css), text
        )

        def wait(d: webdriver.Chrome) -> WebElement:
            WebDriverWait(d, within).until(has_text)
            return d.find_element(By.CSS_SELECTOR, css)

        return await self.run(wait)

    async def wait_gone(self, css: str, within: float = WAIT) -> None:
        """Wait until no visible element matches ``css``."""
        gone = expected_conditions.invisibility_of_element_located(
            (By.CSS_SELECTOR, css)
        )
        await self.run(lambda d: WebDriverWait(d, within).until(gone))

    async def wait_until(
        self,
        condition: Callable[[webdriver.Chrome], T | None],
        within: float = WAIT,
        message: str = "",
    ) -> T:
        """``condition(driver)``'s first truthy result, polled (every 0.5 s)
        in the worker thread; Selenium's ``TimeoutException`` after ``within``
        seconds."""
        result = await self.run(
            lambda d: WebDriverWait(d, within).until(condition, message)
        )
        return cast("T", result)

    async def find_all(self, css: str) -> list[WebElement]:
        """Every element matching ``css`` now (no waiting)."""
        return await self.run(lambda d: d.find_elements(By.CSS_SELECTOR, css))

    async def text(self, css: str) -> str:
        """The visible text of the first element matching ``css`` now."""
        return await self.run(lambda d: d.find_element(By.CSS_SELECTOR, css).text)

    async def click(self, css: str, within: float = WAIT) -> None:
        """Click the first element matching ``css`` once it is clickable."""
        clickable = expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, css))
        await self.run(lambda d: WebDriverWait(d, within).until(clickable).click())

    async def type(self, css: str, text: str, *, clear: bool = True) -> None:
        """Type ``text`` into the first element matching ``css``."""

        def send(d: webdriver.Chrome) -> None:
            element = d.find_element(By.CSS_SELECTOR, css)
            if clear:
                element.clear()
            element.send_keys(text)

        await self.run(send)

    async def alert_text(self) -> str | None:
        """The text of an open ``alert()``/``confirm()``, or ``None``."""

        def read(d: webdriver.Chrome) -> str | None:
            try:
                return d.switch_to.alert.text
            except NoAlertPresentException:
                return None

        return await self.run(read)

    # -- viewport -------------------------------------------------------------

    async def set_viewport(self, width: int, height: int, *, mobile: bool) -> None:
        """Make the page's viewport ``width`` x ``height`` CSS pixels.

        Through DevTools' device emulation: a window cannot be made narrower
        than Chromium's minimum width, a viewport can.
        """
        metrics = {
            "width": width,
            "height": height,
            "deviceScaleFactor": 1,
            "mobile": mobile,
        }
        await self.run(
            lambda d: d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        )

    async def phone(self) -> None:
        """A 390 px wide viewport (a phone), until :meth:`desktop`."""
        await self.set_viewport(PHONE_WIDTH, PHONE_HEIGHT, mobile=True)

    async def desktop(self) -> None:
        """Back to the window's own 1280x900 viewport."""
        await self.run(
            lambda d: d.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        )

    # -- screenshots ----------------------------------------------------------

    async def screenshot(self, suffix: str = "") -> Path:
        """Save the viewport as ``tests/.screenshots/<test>[-suffix].png``."""
        self._shots += 1
        name = self.name + (f"-{_test_name(suffix)}" if suffix else "")
        path = SCREENSHOTS / f"{name}.png"
        SCREENSHOTS.mkdir(exist_ok=True)
        saved = await self.run(lambda d: d.save_screenshot(str(path)))
        assert saved, f"could not save {path}"
        return path

    async def docs_screenshot(self, name: str) -> Path | None:
        """:func:`save_docs_screenshot` from Trio."""
        return await self.run(lambda d: save_docs_screenshot(d, name))

    # -- logs -----------------------------------------------------------------

    async def drain_logs(self) -> None:
        """Move the browser's new console and network entries into
        :attr:`console` and :attr:`network` (reading them empties Chrome's)."""

        await self.run(self._drain)

    def _drain(self, d: webdriver.Chrome) -> None:
        # Only ever called through run(): one thread at a time.
        self.console += read_log(d, "browser")
        self.network += requested_urls(read_log(d, "performance"))

    async def wait_for_request(self, pattern: str, within: float = WAIT) -> str:
        """The first URL requested so far matching the regular expression
        ``pattern``, waiting for the page to request one."""

        def requested(d: webdriver.Chrome) -> str | None:
            self._drain(d)
            return next((u for u in self.network if re.search(pattern, u)), None)

        return await self.wait_until(
            requested, within, f"no request matching {pattern!r}"
        )

    async def console_errors(self) -> list[str]:
        """The console's errors so far (``SEVERE`` entries: uncaught
        exceptions, ``console.error``, failed loads)."""
        await self.drain_logs()
        return [e["message"] for e in self.console if e.get("level") == "SEVERE"]

    async def outside_requests(self) -> list[str]:
        """Every URL requested so far that does not stay on loopback."""
        await self.drain_logs()
        return [url for url in self.network if not is_loopback(url)]

    async def assert_clean(self, allow: Sequence[str] = ()) -> None:
        """No open alert, no request off loopback, no console error but
        those matching one of the regular expressions ``allow``."""
        assert await self.alert_text() is None
        errors = [
            error
            for error in await self.console_errors()
            if not any(re.search(pattern, error) for pattern in allow)
        ]
        assert errors == []
        assert await self.outside_requests() == []

    # -- between tests ----------------------------------------------------------

    def reset(self, name: str) -> None:
        """Make the browser as good as new for test ``name`` (blocking)."""
        d = self.driver
        with suppress(NoAlertPresentException):
            d.switch_to.alert.dismiss()
        d.get("about:blank")
        d.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        # Cookies do not tell ports apart: one test's login cookie for
        # 127.0.0.1 would reach the next test's server.
        d.execute_cdp_cmd("Network.clearBrowserCookies", {})
        d.execute_cdp_cmd("Network.clearBrowserCache", {})
        d.set_window_size(WIDTH, HEIGHT)
        read_log(d, "browser")
        read_log(d, "performance")
        self.name = _test_name(name)
        self.console = []
        self.network = []
        self._shots = 0


def read_log(driver: webdriver.Chrome, kind: str) -> list[dict[str, Any]]:
    """Chrome's ``kind`` log since the last read (reading empties it).

    What ``driver.get_log(kind)`` does, typed.
    """
    entries: list[dict[str, Any]] = driver.execute(Command.GET_LOG, {"type": kind})[
        "value"
    ]
    return entries


def requested_urls(performance: list[dict[str, Any]]) -> list[str]:
    """The URLs in Chrome's performance log: requests and WebSockets."""
    urls = []
    for entry in performance:
        message = orjson.loads(entry["message"])["message"]
        method, params = message.get("method"), message.get("params", {})
        if method == "Network.requestWillBeSent":
            urls.append(params["request"]["url"])
        elif method == "Network.webSocketCreated":
            urls.append(params["url"])
    return urls


def save_docs_screenshot(driver: webdriver.Chrome, name: str) -> Path | None:
    """Save the page as ``docs/_static/<name>`` when regenerating the docs.

    Only when ``NEURO_TESTS_DOCS_SCREENSHOTS=1`` (``nox -s screenshots`` sets
    it); otherwise does nothing and returns ``None``, so an ordinary test run
    never changes a committed file. ``name`` is a plain file name ending in
    ``.png``. Returns the path written.
    """
    if os.environ.get(DOCS_ENV) != "1":
        return None
    if not re.fullmatch(r"[a-z0-9-]+\.png", name):
        raise ValueError(f"not a docs image name: {name!r}")
    DOCS_STATIC.mkdir(parents=True, exist_ok=True)
    path = DOCS_STATIC / name
    if not driver.save_screenshot(str(path)):
        raise OSError(f"could not save {path}")
    return path


@pytest.fixture(scope="module")
def browser_driver() -> Iterator[webdriver.Chrome]:
    """One Chromium per test module, with a fresh profile; quit at the end."""
    require_browser()
    profile = Path(tempfile.mkdtemp(prefix="neuro-api-chromium-"))
    try:
        driver = start_driver(profile)
        try:
            yield driver
        finally:
            driver.quit()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser(
    browser_driver: webdriver.Chrome, request: pytest.FixtureRequest
) -> Browser:
    """The module's Chromium, reset for this test, at 1280x900."""
    wrapped = Browser(browser_driver)
    wrapped.reset(request.node.name)
    return wrapped


# -- the process under test ------------------------------------------------------


@asynccontextmanager
async def running_process(
    data_dir: Path,
    *argv: str,
    environ: dict[str, str] | None = None,
    server: AbstractTrioNeuroServer | None = None,
) -> AsyncIterator[tuple[NeuroProcess, ProcessInfo]]:
    """Run the default capabilities (the dashboard too, once it exists) with
    the games' server and the control plane on 127.0.0.1, port 0.

    ``argv`` are more command-line flags (``--api-token T`` to require a
    token); ``environ`` stands for the environment (empty by default: a
    developer's variables do not leak in). The process is cancelled when
    the block ends. ``server`` is the engine (default: the random engine,
    answering at once). Its control plane's URL is ``info.control.local_url``;
    games connect to ``info.games.local_url`` (``server_helpers.connect``).
    """
    capabilities = default_capabilities()
    sections = list(
        check_sections(c.settings for c in capabilities if c.settings).values()
    )
    flags = ["--engine", "random", "--port", "0", "--http-port", "0"]
    flags += ["--data-dir", str(data_dir), "--calls-port", "0"]
    parsed = build_parser(sections).parse_args([*flags, *argv])
    settings = load_settings(parsed, environ=environ or {}, sections=sections)
    process = NeuroProcess(
        settings,
        RandomNeuroServer() if server is None else server,
        capabilities=capabilities,
        out=io.StringIO(),
    )
    async with trio.open_nursery() as nursery:
        with trio.fail_after(WAIT):
            info: ProcessInfo = await nursery.start(
                lambda task_status: process.run(
                    handle_signals=False, task_status=task_status
                )
            )
        yield process, info
        nursery.cancel_scope.cancel()


__all__ = [
    "Browser",
    "TimeoutException",
    "browser",
    "browser_driver",
    "running_process",
    "save_docs_screenshot",
]
