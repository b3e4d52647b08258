"""The dashboard in a real browser: Debian's chromium, headless, driven by Selenium through chromedriver,
against `warren dashboard` proxying a real cluster of 3 managers and a process worker.

Skipped without chromium or chromedriver, except under CI=1, where that is a failure. With
WARREN_SCREENSHOTS=DIR each page is also saved as DIR/dashboard-<page>.png (`make screenshots`).
Everything waits on conditions in the page (WebDriverWait) or in the cluster (eventually), never sleeps.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.managers import DaemonProc, api, get_json
from tests.integration.workers import Fleet, fleets
from warren.testing.wait import eventually

CHROMIUM = os.environ.get("WARREN_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("WARREN_CHROMEDRIVER", "/usr/bin/chromedriver")
PAGES = ("cluster", "nodes", "services", "events", "timeline")
URL_LINE = re.compile(r"(http://127\.0\.0\.1:\d+)/\?token=[\w-]+")


def _require_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -e .[dev])")
    if missing:
        reason = f"the browser tests need {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests: {reason}")
        pytest.skip(reason)


class Dashboard:
    """A `warren dashboard` process on a free port; `url` carries its token."""

    def __init__(self, base_dir: Path, managers: list[str]) -> None:
        self.proc = DaemonProc("dashboard", base_dir)
        self.token_file = base_dir / "dashboard.token"
        self.managers = managers
        self.url = ""
        self.origin = ""

    def start(self, port: int = 0) -> None:
        out = self.proc.out_path
        before = out.read_text() if out.exists() else ""
        self.proc.spawn(
            [
                "dashboard",
                "--manager",
                ",".join(self.managers),
                "--port",
                str(port),
                "--token-file",
                str(self.token_file),
            ]
        )

        def printed() -> re.Match[str] | None:
            self.proc.check_alive("starting")
            return URL_LINE.search(out.read_text()[len(before) :]) if out.exists() else None

        found = eventually(printed, 20.0, "the dashboard to print its address", detail=self.proc.log_tail)
        self.url, self.origin = found.group(0), found.group(1)

    def stop(self) -> None:
        self.proc.kill()


@pytest.fixture(scope="module")
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    _require_browser()
    with fleets(tmp_path_factory.mktemp("dashboard"), request) as make:
        fleet = make()
        fleet.start_managers(3)
        fleet.add_worker("process")
        fleet.create("web", image="local", driver="process", command=["sleep", "100000"], replicas=1)
        fleet.wait_running("web", 1)
        yield fleet


@pytest.fixture(scope="module")
def dashboard(fleet: Fleet) -> Iterator[Dashboard]:
    board = Dashboard(fleet.base_dir, [m.api_addr for m in fleet.managers.live()])
    board.start()
    yield board
    board.stop()


@pytest.fixture(scope="module")
def browser(dashboard: Dashboard) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.get(dashboard.url)
        yield driver
    finally:
        driver.quit()


def wait(driver: Any, what: str, check: Any, timeout: float = 15.0) -> Any:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # The page re-renders a list when an event says it changed: an element found a moment ago may be
    # gone (stale); the check is then tried again on the new one.
    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, timeout, poll_frequency=0.05, ignored_exceptions=ignored).until(
        check, message=what
    )


def open_page(driver: Any, page: str) -> None:
    driver.execute_script("location.hash = arguments[0]", f"#/{page}")
    wait(driver, f"page {page} shown", lambda d: d.find_element("id", f"page-{page}").is_displayed())


def text_of(driver: Any, selector: str) -> str:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    try:
        return str(driver.find_element("css selector", selector).text)
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def screenshot(driver: Any, page: str) -> None:
    where = os.environ.get("WARREN_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        driver.execute_script("window.scrollTo(0, 0)")
        driver.save_screenshot(str(Path(where) / f"dashboard-{page}.png"))


def events_api(fleet: Fleet) -> bool:
    with api(fleet.addr) as client:
        return client.get("/v1/events", params={"since": "10m"}).status_code == 200


# -- the pages load -------------------------------------------------------------------------------------


def test_the_token_became_a_cookie_and_left_the_address(browser: Any, dashboard: Dashboard) -> None:
    wait(browser, "redirected to /", lambda d: d.current_url == dashboard.origin + "/")
    cookie = browser.get_cookie(f"warren_dashboard_{dashboard.origin.rsplit(':', 1)[1]}")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"


def test_the_cluster_page_shows_the_managers_and_the_leader(browser: Any, fleet: Fleet) -> None:
    leader = fleet.leader.name
    open_page(browser, "cluster")
    wait(
        browser,
        "3 managers listed",
        lambda d: len(d.find_elements("css selector", "#managers tbody tr")) == 3,
    )
    wait(browser, f"leader {leader} shown", lambda d: text_of(d, '[data-field="Leader"]') == leader)
    names = {m.name for m in fleet.managers.live()}
    # Read inside a wait: an event re-renders the table, and a row read a moment ago may be gone (CI
    # failed once on a stale row here).
    rows = "#managers tbody tr"
    wait(
        browser,
        f"the managers {sorted(names)} listed by name",
        lambda d: {r.get_attribute("data-name") for r in d.find_elements("css selector", rows)} == names,
    )
    wait(browser, "the term shown", lambda d: text_of(d, '[data-field="Term"]').isdigit())
    wait(
        browser,
        "the link says live",
        lambda d: d.find_element("id", "link").get_attribute("data-state") != "connecting",
    )
    screenshot(browser, "cluster")


def test_the_nodes_page_shows_the_worker_with_its_task(browser: Any, fleet: Fleet) -> None:
    worker = fleet.workers[0].name
    open_page(browser, "nodes")
    wait(
        browser,
        f"worker {worker} ready with web's task",
        lambda d: (
            "ready" in text_of(d, f'#nodes tr[data-name="{worker}"]')
            and "web.1" in text_of(d, f'#nodes tr[data-name="{worker}"]')
        ),
    )
    assert len(browser.find_elements("css selector", "#nodes tbody tr")) == 4  # 3 managers, 1 worker
    screenshot(browser, "nodes")


def test_scaling_from_the_page_changes_the_service(browser: Any, fleet: Fleet) -> None:
    open_page(browser, "services")
    wait(
        browser,
        "web running 1/1",
        lambda d: text_of(d, '[data-name="web"] [data-field="replicas"]') == "1/1 running",
    )

    def typed(d: Any) -> bool:
        field = d.find_element("id", "replicas-web")
        field.clear()
        field.send_keys("3")
        return bool(d.find_element("id", "replicas-web").get_attribute("value") == "3")

    wait(browser, "3 typed into web's replica field", typed)

    def clicked(d: Any) -> bool:
        d.find_element("id", "scale-web").click()
        return True

    wait(browser, "the scale button clicked", clicked)
    wait(browser, "the page says it is done", lambda d: "done" in text_of(d, "#action-result"))

    def scaled() -> bool:
        return bool(get_json(fleet.addr, "/v1/services/web")["spec"]["replicas"] == 3)

    eventually(scaled, 10.0, "web's spec to say 3 replicas")
    fleet.wait_running("web", 3)
    wait(
        browser,
        "the page shows 3 running tasks",
        lambda d: (
            len(d.find_elements("css selector", '[data-name="web"] tbody tr')) == 3
            and text_of(d, '[data-name="web"] [data-field="replicas"]') == "3/3 running"
        ),
        timeout=20.0,
    )
    screenshot(browser, "services")


def test_the_pages_are_reached_and_used_with_the_keyboard(browser: Any) -> None:
    from selenium.webdriver.common.keys import Keys

    open_page(browser, "cluster")
    browser.find_element("css selector", "body").click()
    # Tab from the top: the skip link first, then the navigation in order.
    focused: list[str] = []
    for _ in range(4):
        browser.switch_to.active_element.send_keys(Keys.TAB)
        focused.append(browser.switch_to.active_element.text)
    assert focused == ["Skip to content", "Cluster", "Nodes", "Services"], focused
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    wait(
        browser,
        "the services page by keyboard",
        lambda d: d.find_element("id", "page-services").is_displayed(),
    )
    assert (
        browser.find_element("css selector", 'nav a[data-page="services"]').get_attribute("aria-current")
        == "page"
    )
    # Every field has a label a screen reader reads out.
    labelled = browser.execute_script(
        "const f = [...document.querySelectorAll('input, button')];"
        "const named = (e) => (e.tagName === 'BUTTON' ? e.textContent.trim() : e.labels.length);"
        "return [f.length, f.filter(named).length]"
    )
    assert labelled[0] > 0 and labelled[0] == labelled[1], labelled
    label = browser.execute_script("return document.getElementById('replicas-web').labels[0].textContent")
    assert label.startswith("Replicas")


def test_the_pages_fit_a_phone(browser: Any) -> None:
    browser.set_window_size(390, 844)
    try:
        for page in PAGES:
            open_page(browser, page)
            overflow = browser.execute_script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"page {page} is {overflow} px wider than a phone's screen"
        open_page(browser, "services")
        wait(browser, "web's tasks", lambda d: d.find_elements("css selector", '[data-name="web"] tbody tr'))
        screenshot(browser, "phone")
    finally:
        browser.set_window_size(1280, 900)


# -- the event stream and the failover timeline (they need the events API) ------------------------------


def need_events(fleet: Fleet) -> None:
    if not events_api(fleet):
        pytest.skip("the managers have no events API (GET /v1/events)")


def live(driver: Any) -> bool:
    return bool(driver.find_element("id", "link").get_attribute("data-state") == "live")


def test_the_events_page_follows_the_cluster(browser: Any, fleet: Fleet) -> None:
    need_events(fleet)
    open_page(browser, "events")
    wait(browser, "the stream is live", live)
    # The scale above is in the history the page read when it opened the stream.
    wait(
        browser,
        "web's scale in the list",
        lambda d: any(
            "web" in e.text for e in d.find_elements("css selector", '#events li[data-type="service"]')
        ),
    )
    before = len(browser.find_elements("css selector", "#events li"))
    fleet.update("web", replicas=2)
    wait(
        browser,
        "the scale to 2 arrives live",
        lambda d: any(
            "scaled to 2" in e.text
            for e in d.find_elements("css selector", '#events li[data-type="service"]')
        ),
    )
    assert len(browser.find_elements("css selector", "#events li")) > before
    assert browser.find_element("id", "events").get_attribute("aria-live") == "polite"
    screenshot(browser, "events")


def test_the_first_election_is_on_the_timeline(browser: Any, fleet: Fleet) -> None:
    need_events(fleet)
    open_page(browser, "timeline")
    wait(
        browser,
        "term 1 in the table",
        lambda d: d.find_elements("css selector", '#elections tr[data-term="1"]'),
    )
    founder = fleet.managers.managers[0].name
    row = text_of(browser, '#elections tr[data-term="1"]')
    assert founder in row and re.search(r"\d+ ms", row), row
    assert browser.find_elements("css selector", '#timeline-chart svg g.election[data-term="1"]')
    screenshot(browser, "timeline")


def test_a_killed_leader_appears_on_the_timeline_within_2_s(browser: Any, fleet: Fleet) -> None:
    need_events(fleet)
    open_page(browser, "timeline")
    wait(browser, "the stream is live", live)
    old = fleet.leader
    term_before = int(get_json(fleet.addr, "/v1/cluster")["raft"]["term"])
    old.kill()
    try:
        survivors = [m for m in fleet.managers.live() if m is not old]
        new = fleet.managers.leader(among=survivors)
        seen_at = time.monotonic()  # the harness saw the new leader: the page has 2 s from here
        term = int(get_json(new.api_addr, "/v1/cluster")["raft"]["term"])
        assert term > term_before
        wait(
            browser,
            f"term {term} on the timeline within 2 s",
            lambda d: d.find_elements("css selector", f'#elections tr[data-term="{term}"]'),
            timeout=2.0,
        )
        assert time.monotonic() - seen_at <= 2.0
        row = text_of(browser, f'#elections tr[data-term="{term}"]')
        assert new.name in row and " ms" in row
        assert browser.find_elements("css selector", f'#timeline-chart g.election[data-term="{term}"]')
    finally:
        old.restart()


def test_the_stream_goes_on_after_the_leader_is_killed(browser: Any, fleet: Fleet) -> None:
    need_events(fleet)
    open_page(browser, "events")
    wait(browser, "the stream is live", live)
    old = fleet.leader
    old.kill()
    try:
        survivors = [m for m in fleet.managers.live() if m is not old]
        new = fleet.managers.leader(among=survivors)
        with api(new.api_addr, 15.0) as client:
            assert client.patch("/v1/services/web", json={"replicas": 1}).status_code == 200
        wait(
            browser,
            "the scale after the failover arrives",
            lambda d: any(
                "scaled to 1" in e.text
                for e in d.find_elements("css selector", '#events li[data-type="service"]')
            ),
            timeout=15.0,
        )
        wait(browser, "the stream is live", live)
        screenshot(browser, "events")  # with the elections in it
        # Two failovers by now (this one and the previous test's), besides the first election.
        term = int(get_json(new.api_addr, "/v1/cluster")["raft"]["term"])
        open_page(browser, "timeline")
        wait(
            browser,
            f"term {term} on the timeline",
            lambda d: d.find_elements("css selector", f'#elections tr[data-term="{term}"]'),
        )
        screenshot(browser, "timeline")
    finally:
        old.restart()


def test_the_page_reconnects_when_the_dashboard_restarts(
    browser: Any, fleet: Fleet, dashboard: Dashboard
) -> None:
    need_events(fleet)
    port = int(dashboard.origin.rsplit(":", 1)[1])
    dashboard.stop()
    wait(
        browser,
        "the page sees the dashboard gone",
        lambda d: d.find_element("id", "link").get_attribute("data-state") == "down",
    )
    dashboard.start(port)  # same port, same token file: the page's cookie still opens it
    wait(
        browser,
        "the page is live again",
        live,
        timeout=20.0,
    )
    open_page(browser, "nodes")  # the lists answer again too
    wait(browser, "nodes listed", lambda d: len(d.find_elements("css selector", "#nodes tbody tr")) == 4)
