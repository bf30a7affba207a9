"""Drives the jobhost dashboard in headless Chromium as a person would, against a server the
Rust test (tests/integration/dashboard.rs) has started and filled. The scenario (address,
keys, the jobs to expect) comes as JSON in argv[1]. Exits non-zero at the first step that does
not show what it should, after saving a screenshot, the page's HTML and the browser console
into the scenario's artifacts directory.

Every wait is explicit and generous: the machine may be slow and shared, and a wait ends as
soon as its condition holds, so a generous bound costs nothing when things go well.
"""

import json
import os
import sys
import time
import traceback

from selenium import webdriver
from selenium.common.exceptions import (
    ElementClickInterceptedException,
    ElementNotInteractableException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

WAIT_SECONDS = 60
TRANSIENT = (
    StaleElementReferenceException,
    ElementClickInterceptedException,
    ElementNotInteractableException,
)


class Dashboard:
    def __init__(self, scenario):
        self.scenario = scenario
        # Selenium Manager must not try to download a browser or driver: both come from Debian.
        os.environ["SE_OFFLINE"] = "true"
        options = webdriver.ChromeOptions()
        options.binary_location = scenario["chromium"]
        for argument in [
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--window-size=1400,1000",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--metrics-recording-only",
            "--no-proxy-server",
        ]:
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(executable_path=scenario["chromedriver"])
        self.driver = webdriver.Chrome(options=options, service=service)
        self.driver.set_page_load_timeout(120)
        self.driver.set_script_timeout(60)
        self.console = []

    # -- waiting -------------------------------------------------------------------------------

    def wait_for(self, description, condition, timeout=WAIT_SECONDS):
        """Waits until `condition(driver)` returns something truthy, and returns it. The
        description may be a function, called on time-out to say what the page showed."""
        wait = WebDriverWait(
            self.driver, timeout, poll_frequency=0.2, ignored_exceptions=TRANSIENT
        )

        def checked(driver):
            # The scenario expects no error banner and no script error anywhere: when one
            # shows, say what it says at once instead of waiting out the time-out.
            banner = self.element("#error-banner")
            if banner is not None and banner.is_displayed():
                raise AssertionError(f"the page shows an error: {banner.text!r}")
            errors = self.script_errors()
            if errors:
                raise AssertionError(f"the page logged errors: {errors}")
            return condition(driver)

        try:
            return wait.until(checked)
        except TimeoutException:
            if callable(description):
                description = description()
            raise AssertionError(f"timed out after {timeout} s waiting for: {description}")

    def element(self, selector):
        found = self.driver.find_elements(By.CSS_SELECTOR, selector)
        return found[0] if found else None

    def visible(self, selector):
        return self.wait_for(
            f"{selector} to be visible",
            lambda d: (e := self.element(selector)) is not None and e.is_displayed() and e,
        )

    def hidden(self, selector):
        self.wait_for(
            f"{selector} to be hidden",
            lambda d: (e := self.element(selector)) is None or not e.is_displayed(),
        )

    def text_of(self, selector):
        e = self.element(selector)
        return e.text if e is not None and e.is_displayed() else None

    def text_contains(self, selector, needle):
        return self.wait_for(
            lambda: f"{selector} to show {needle!r} (shows {self.text_of(selector)!r})",
            lambda d: (t := self.text_of(selector)) is not None and needle in t and t,
        )

    def text_equals(self, selector, wanted):
        self.wait_for(
            lambda: f"{selector} to read {wanted!r} (reads {self.text_of(selector)!r})",
            lambda d: self.text_of(selector) == wanted,
        )

    def click(self, selector):
        """Clicks, trying again while the element is being re-rendered or covered."""

        def attempt(d):
            e = self.element(selector)
            if e is None or not e.is_displayed() or not e.is_enabled():
                return False
            e.click()
            return True

        self.wait_for(f"{selector} to be clickable", attempt)

    def type_into(self, selector, text):
        e = self.visible(selector)
        e.clear()
        e.send_keys(text)

    def row_keys(self, table):
        rows = self.driver.find_elements(By.CSS_SELECTOR, f"#{table} tbody tr")
        return [r.get_attribute("data-job-key") for r in rows]

    def rows_are(self, table, keys):
        wanted = sorted(keys)
        self.wait_for(
            lambda: f"#{table} to list exactly {wanted} (lists {sorted(self.row_keys(table))})",
            lambda d: sorted(self.row_keys(table)) == wanted,
        )

    def session_key(self):
        return self.driver.execute_script("return sessionStorage.getItem('jobhost.apiKey')")

    # -- diagnostics ---------------------------------------------------------------------------

    def drain_console(self):
        self.console.extend(self.driver.get_log("browser"))

    def script_errors(self):
        """Uncaught exceptions and console errors of the page itself. Failed requests are
        left out: the scenario makes some on purpose (a wrong key, a missing permission)."""
        self.drain_console()
        return [
            entry
            for entry in self.console
            if entry.get("level") == "SEVERE" and entry.get("source") != "network"
        ]

    def save_artifacts(self):
        directory = self.scenario["artifacts"]
        os.makedirs(directory, exist_ok=True)
        try:
            self.driver.save_screenshot(os.path.join(directory, "failure.png"))
            with open(os.path.join(directory, "failure.html"), "w") as f:
                f.write(self.driver.page_source)
            self.drain_console()
        except Exception as e:  # the browser itself may be what failed
            print(f"could not save the page: {e}", file=sys.stderr)
        with open(os.path.join(directory, "console.json"), "w") as f:
            json.dump(self.console, f, indent=1)
        print(f"screenshot, page and console saved in {directory}", file=sys.stderr)

    def quit(self):
        try:
            self.driver.quit()
        except Exception:
            pass


def run(ui, s):
    d = ui.driver

    step("the page loads and asks for a key")
    d.get(s["url"])
    ui.visible("#login")
    ui.wait_for("the script to start", lambda d: d.execute_script("return document.body.dataset.ready") == "true")
    ui.hidden("#app")

    step("a wrong key is refused with the API's message")
    ui.type_into("#api-key", s["bad_key"])
    ui.click("#login-submit")
    ui.text_contains("#login-error", "unknown or revoked API key")
    ui.hidden("#app")
    assert ui.session_key() is None, "a refused key was kept"

    step("the admin key opens the dashboard and is kept for the session")
    ui.type_into("#api-key", s["admin_key"])
    ui.click("#login-submit")
    ui.visible("#app")
    ui.hidden("#login")
    assert ui.session_key() == s["admin_key"], "the key is not in sessionStorage"
    options = [o.get_attribute("value") for o in Select(ui.visible("#tenant-select")).options]
    assert options == ["", "acme", "default"], f"tenant options {options}"

    step("live counts by state and the per-minute chart")
    counts = s["counts"]
    for name, value in counts.items():
        ui.text_equals(f"#count-{name}", str(value))
    ui.wait_for(
        "the chart to have 60 minutes",
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#throughput-chart [data-testid=chart-minute]")) == 60,
    )
    ui.wait_for(
        "the chart to count the completion and the incident",
        lambda d: (t := ui.element("#chart-totals")) is not None
        and t.get_attribute("data-completed") == str(counts["completed"])
        and t.get_attribute("data-failed") == str(counts["failed"]),
    )
    assert ui.text_of("#stats-status") in ("", None), ui.text_of("#stats-status")
    ui.text_equals("#incident-badge", str(counts["failed"]))

    step("the jobs table lists the jobs, with filters and pages")
    ui.click("#tab-jobs")
    ui.visible("#view-jobs")
    ui.rows_are("jobs-table", s["all_jobs"])
    ui.type_into("#filter-type", s["bulk_type"])
    Select(ui.visible("#filter-page-size")).select_by_value("10")
    Select(ui.visible("#filter-sort-order")).select_by_value("ASC")
    ui.click("#filter-apply")
    ui.rows_are("jobs-table", s["bulk_jobs"][:10])
    ui.text_contains("#jobs-page-info", "page 1 of 2")
    ui.click("#jobs-next")
    ui.rows_are("jobs-table", s["bulk_jobs"][10:])
    ui.text_contains("#jobs-page-info", "page 2 of 2")
    Select(ui.visible("#filter-state")).select_by_value("failed")
    ui.type_into("#filter-type", "")
    ui.click("#filter-apply")
    ui.rows_are("jobs-table", [s["incident"]])
    ui.click("#filter-reset")
    ui.rows_are("jobs-table", s["all_jobs"])

    step("a job's detail shows its variables, result and Wasm attempts")
    ui.click(f'#jobs-table tr[data-job-key="{s["echo_job"]}"]')
    ui.visible("#job-detail")
    ui.wait_for(
        "the detail to load",
        lambda d: ui.element("#job-detail").get_attribute("data-loaded") == "true",
    )
    ui.text_contains("#detail-variables", s["echo_variable"])
    ui.text_contains("#detail-result", "echoed_by")
    ui.text_contains("#detail-attempts", "echo handled job " + s["echo_job"])
    ui.click("#detail-close")
    ui.hidden("#job-detail")

    step("values are shown as text, never as markup")
    ui.click(f'#jobs-table tr[data-job-key="{s["bulk_jobs"][0]}"]')
    ui.wait_for(
        "the detail of the first bulk job",
        lambda d: ui.element("#job-detail").get_attribute("data-job-key") == s["bulk_jobs"][0]
        and ui.element("#job-detail").get_attribute("data-loaded") == "true",
    )
    ui.text_contains("#detail-variables", s["markup_variable"])
    assert not d.find_elements(By.CSS_SELECTOR, "#job-detail img"), "a variable became an element"
    assert d.execute_script("return window.__injected === undefined"), "a variable ran as script"
    ActionChains(d).send_keys(Keys.ESCAPE).perform()
    ui.hidden("#job-detail")

    step("an incident is retried from the incidents view")
    ui.click("#tab-incidents")
    ui.visible("#view-incidents")
    ui.rows_are("incidents-table", [s["incident"]])
    row = f'#incidents-table tr[data-job-key="{s["incident"]}"]'
    ui.text_contains(f"{row} [data-testid=incident-error]", s["incident_error"])
    ui.type_into(f"{row} [data-testid=retry-count]", str(s["retries"]))
    ui.click(f"{row} [data-testid=retry-button]")
    ui.text_contains("#notice-banner", "activatable")
    ui.rows_are("incidents-table", [])
    ui.visible("#incidents-empty")
    ui.text_equals("#count-failed", "0")

    step("without statistics the page still works and says so")
    d.execute_cdp_cmd("Network.enable", {})
    d.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/api/v1/jobs/stats*"]})
    d.refresh()
    # The key kept in sessionStorage signs in again without the form.
    ui.visible("#app")
    ui.text_contains("#stats-status", "stats unavailable")
    ui.text_equals("#count-activatable", str(counts["activatable"] + 1))
    ui.text_equals("#count-failed", "0")
    ui.visible("#view-incidents")
    d.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})

    step("logging out forgets the key")
    ui.click("#logout")
    ui.visible("#login")
    ui.hidden("#app")
    assert ui.session_key() is None, "the key is still in sessionStorage"
    d.refresh()
    ui.visible("#login")
    ui.hidden("#app")

    step("a tenant's key sees only its tenant, and the API's refusals")
    ui.type_into("#api-key", s["tenant_key"])
    ui.click("#login-submit")
    ui.visible("#app")
    options = [o.get_attribute("value") for o in Select(ui.visible("#tenant-select")).options]
    assert options == ["", s["tenant"]], f"tenant options {options}"
    ui.text_equals("#count-total", "1")
    ui.click("#tab-jobs")
    ui.rows_are("jobs-table", [s["tenant_job"]])
    Select(ui.visible("#tenant-select")).select_by_value(s["tenant"])
    ui.rows_are("jobs-table", [s["tenant_job"]])
    ui.click("#tab-handlers")
    ui.text_contains("#handlers-error", "PERMISSION_DENIED")

    errors = ui.script_errors()
    assert not errors, f"the page logged errors: {errors}"


STARTED = time.monotonic()


def step(name):
    print(f"[{time.monotonic() - STARTED:6.1f} s] {name}", flush=True)


def main():
    scenario = json.loads(sys.argv[1])
    step("starting Chromium")
    ui = Dashboard(scenario)
    try:
        run(ui, scenario)
    except Exception:
        traceback.print_exc()
        ui.save_artifacts()
        ui.quit()
        sys.exit(1)
    ui.quit()
    step("dashboard end-to-end: ok")


if __name__ == "__main__":
    main()
