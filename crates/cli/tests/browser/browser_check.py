#!/usr/bin/env python3
"""Drive the workbench in headless Chromium the way its users reach it: through the browser.

Usage: browser_check.py PLAN.json

The plan (written by the Rust test) names the server, the browser, axe-core, where screenshots
go, the users with the pages each role may and may not open, and a few declarative flows. For
each user a fresh browser signs in through the form, opens every allowed page (HTTP 200, the
page skeleton, no console errors, no serious or critical axe-core violation, a screenshot that
is not blank), then every allowed page again at a phone's width (screenshot only), every
refused page (403 whose h1 says "Not permitted"), and signs out through the form.

Flow steps, one key each (plus "value" where it needs one):
  {"goto": "/path"}                               open a path on the server
  {"fill": {"name": "q"} | {"css": "..."}, "value": "text"}
  {"select": {"name": ...} | {"css": ...}, "value": "option value or visible text"}
  {"click": "css"}                                click; waits for the next page unless "navigate": false
  {"submit": "css of a form"}                     press the form's submit button; waits for the next page
  {"expect_text": "text"}                         visible text of the body contains it
  {"expect_url_contains": "text"}
  {"expect_status": 200}                          HTTP status of the current document
  {"screenshot": "name"}                          {screenshots}/name.png, must not be blank

Prints one JSON line with the totals on stdout; each failure also goes to stderr. Exits 1 when
anything failed, 2 when the plan itself cannot be read.
"""

import json
import os
import re
import struct
import sys
import time
import zlib
from urllib.parse import urlsplit

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

def is_replaced_page_error(error):
    """Whether a WebDriver error says an element belonged to a page that has since been
    replaced (Chromium reports this as an inspector error rather than a stale element)."""
    return isinstance(error, StaleElementReferenceException) or "does not belong to the document" in str(error)


def is_stale(element):
    """Whether `element` is gone with the page it belonged to."""
    try:
        element.is_enabled()
        return False
    except WebDriverException as error:
        if is_replaced_page_error(error) or "no such element" in str(error):
            return True
        raise


DESKTOP = (1280, 900)
PHONE = (390, 844)
# Generous: CI shares two cores between the server under test and the browser.
NAV_TIMEOUT = 30
IMPACTS = ("critical", "serious", "moderate", "minor")


class StepFailed(Exception):
    pass


# --- PNG: decoded here so a blank-page check needs nothing beyond the standard library ----------

_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # grey, RGB, palette index, grey+alpha, RGBA


def _png_rows(data):
    """Yield (width, height, bytes per pixel) and then each unfiltered scanline of an 8-bit PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, header = 8, [], None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError("PNG without IHDR")
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in _CHANNELS or interlace:
        raise ValueError(f"unsupported PNG (depth {depth}, colour type {colour}, interlace {interlace})")
    bpp = _CHANNELS[colour]
    stride = width * bpp
    raw = zlib.decompress(b"".join(idat))
    if len(raw) < height * (stride + 1):
        raise ValueError("truncated PNG data")
    yield width, height, bpp
    # Byte-wise addition without carries between bytes, on whole rows at once (the Up filter).
    low7 = int.from_bytes(b"\x7f" * stride, "little")
    high = int.from_bytes(b"\x80" * stride, "little")
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        ftype = raw[start]
        line = bytearray(raw[start + 1:start + 1 + stride])
        if ftype == 1:  # Sub
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif ftype == 2:  # Up
            a, b = int.from_bytes(line, "little"), int.from_bytes(prev, "little")
            line = bytearray((((a & low7) + (b & low7)) ^ ((a ^ b) & high)).to_bytes(stride, "little"))
        elif ftype == 3:  # Average
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif ftype == 4:  # Paeth
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        elif ftype != 0:
            raise ValueError(f"bad PNG filter type {ftype}")
        yield bytes(line)
        prev = line


def png_blankness(data):
    """Return None if the image shows something, else why it looks blank.

    "Shows something" = a few hundred pixels (0.05% of the image, at least 20) differ from the
    top-left pixel. Decoding stops as soon as that many are found, which for a rendered page
    is within its first rows, so the pure-Python decoder stays cheap.
    """
    rows = _png_rows(data)
    width, height, bpp = next(rows)
    need = max(20, width * height // 2000)
    ref = None
    flat_row = None
    differing = 0
    colours = set()
    for line in rows:
        if ref is None:
            ref = line[:bpp]
            flat_row = ref * width
            colours.add(ref)
        if line == flat_row:
            continue
        for x in range(0, len(line), bpp):
            px = line[x:x + bpp]
            if px != ref:
                differing += 1
                if len(colours) < 64:
                    colours.add(px)
        if differing >= need:
            return None
    return (f"{width}x{height} image has {len(colours)} distinct colour(s), "
            f"{differing} pixel(s) differ from the background (need {need})")


# --- the run --------------------------------------------------------------------------------------

def slug(path):
    s = re.sub(r"[^A-Za-z0-9]+", "-", path).strip("-").lower()
    return s or "home"


class Check:
    def __init__(self, plan):
        self.plan = plan
        self.base = plan["base"].rstrip("/")
        self.shots = plan["screenshots"]
        os.makedirs(self.shots, exist_ok=True)
        with open(plan["axe"], encoding="utf-8") as f:
            self.axe_source = f.read()
        self.pages = 0
        self.refused_ok = 0
        self.flows_ok = 0
        self.screenshots = 0
        self.console_errors = []
        self.axe = {k: 0 for k in IMPACTS}
        self.by_rule = {}
        self.failures = []

    def fail(self, kind, user, page, detail):
        self.failures.append({"kind": kind, "user": user, "page": page, "detail": detail})
        print(f"FAIL [{kind}] {user} {page}: {detail}", file=sys.stderr, flush=True)

    # browser plumbing

    def browser(self):
        opts = webdriver.ChromeOptions()
        opts.binary_location = self.plan["chromium"]
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    f"--window-size={DESKTOP[0]},{DESKTOP[1]}", "--force-device-scale-factor=1",
                    "--lang=en-GB", "--no-first-run", "--disable-extensions"):
            opts.add_argument(arg)
        # Console messages are read back through the "browser" log (SEVERE = console errors,
        # failed resource loads and CSP refusals).
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(executable_path=self.plan["chromedriver"]), options=opts)
        driver.set_page_load_timeout(NAV_TIMEOUT)
        driver.set_script_timeout(NAV_TIMEOUT)
        # --window-size is the outer window: headless Chromium still takes its frame off the
        # viewport (1280x757 for 1280x900), so the viewport is set directly as well.
        self.viewport(driver, DESKTOP, mobile=False)
        return driver

    @staticmethod
    def viewport(driver, size, mobile):
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": mobile})

    def url(self, path):
        return path if "://" in path else self.base + path

    @staticmethod
    def path_of(driver):
        parts = urlsplit(driver.current_url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    @staticmethod
    def status(driver):
        # Navigation Timing's responseStatus: the final response's status after any redirects.
        return driver.execute_script(
            "var e = performance.getEntriesByType('navigation')[0];"
            "return e && typeof e.responseStatus === 'number' ? e.responseStatus : null;")

    @staticmethod
    def console(driver):
        """SEVERE browser log entries since the last call (reading the log drains it)."""
        return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]

    @staticmethod
    def wait_for_new_page(driver, old_html):
        WebDriverWait(driver, NAV_TIMEOUT).until(lambda d: is_stale(old_html))
        WebDriverWait(driver, NAV_TIMEOUT).until(
            lambda d: d.execute_script("return document.readyState") == "complete")

    def click_and_wait(self, driver, element, navigate=True):
        old_html = driver.find_element(By.TAG_NAME, "html")
        element.click()
        if navigate:
            try:
                self.wait_for_new_page(driver, old_html)
            except TimeoutException:
                raise StepFailed(f"no new page within {NAV_TIMEOUT}s after the click")

    def submit(self, driver, form):
        # Press the form's own button, as a person would, so its name=value is sent too.
        buttons = form.find_elements(
            By.CSS_SELECTOR, "button:not([type]), button[type=submit], input[type=submit], input[type=image]")
        if buttons:
            self.click_and_wait(driver, buttons[0])
        else:
            old_html = driver.find_element(By.TAG_NAME, "html")
            driver.execute_script("arguments[0].requestSubmit()", form)
            self.wait_for_new_page(driver, old_html)

    def screenshot(self, driver, name, user, page):
        path = os.path.join(self.shots, f"{name}.png")
        if not driver.save_screenshot(path):
            self.fail("screenshot", user, page, f"could not save {path}")
            return False
        self.screenshots += 1
        with open(path, "rb") as f:
            data = f.read()
        try:
            blank = png_blankness(data)
        except ValueError as e:
            blank = f"unreadable PNG: {e}"
        if blank:
            self.fail("screenshot", user, page, f"{path} looks blank: {blank}")
            return False
        return True

    def note_console(self, driver, user, page):
        for entry in self.console(driver):
            self.console_errors.append({"user": user, "page": page, "message": entry.get("message", "")})
            self.fail("console", user, page, entry.get("message", ""))

    def run_axe(self, driver, user, page):
        # WebDriver's script evaluation is not subject to the page's CSP, so injecting the
        # source works under script-src 'self' where an inline <script> would be refused.
        if not driver.execute_script("return typeof window.axe === 'object'"):
            driver.execute_script(self.axe_source)
        result = driver.execute_async_script("""
            var done = arguments[arguments.length - 1];
            axe.run(document, {resultTypes: ['violations']}).then(function (r) {
              done({violations: r.violations.map(function (v) {
                return {id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length,
                        target: v.nodes.length ? v.nodes[0].target : null};
              })});
            }, function (e) { done({error: String(e)}); });""")
        if result.get("error"):
            self.fail("axe", user, page, f"axe-core did not run: {result['error']}")
            return
        for v in result["violations"]:
            impact = v.get("impact") if v.get("impact") in IMPACTS else "minor"
            self.axe[impact] += 1
            rule = self.by_rule.setdefault(v["id"], {"impact": impact, "pages": 0, "nodes": 0})
            rule["pages"] += 1
            rule["nodes"] += v.get("nodes", 0)
            if impact in ("critical", "serious"):
                target = v.get("target") or ["(none)"]
                first = " >>> ".join(t if isinstance(t, str) else " ".join(t) for t in target)
                self.fail("axe", user, page, f"{v['id']} ({impact}) at {first}: {v.get('help', '')}")

    # the checks

    def sign_in(self, driver, user):
        # A page being replaced can answer "node does not belong to the document" for an
        # element of the old one: that is a race of the test, not of the server, so the
        # sign-in is tried again from the start.
        for attempt in range(3):
            try:
                return self.sign_in_once(driver, user)
            except WebDriverException as error:
                if not is_replaced_page_error(error) or attempt == 2:
                    raise

    def sign_in_once(self, driver, user):
        driver.get(self.url("/signin"))
        form = driver.find_element(By.CSS_SELECTOR, "form[action='/signin']")
        if not form.find_elements(By.CSS_SELECTOR, "input[type=hidden][name=csrf]"):
            raise StepFailed("sign-in form has no hidden csrf input")
        form.find_element(By.NAME, "username").send_keys(user["name"])
        form.find_element(By.NAME, "password").send_keys(user["password"])
        self.submit(driver, form)
        landed = urlsplit(driver.current_url).path
        if landed != "/":
            raise StepFailed(f"sign-in landed on {driver.current_url} (status {self.status(driver)}), expected /")
        self.console(driver)  # the sign-in page's own messages are not a workbench page's

    def check_wrong_password(self, driver, user):
        driver.get(self.url("/signin"))
        form = driver.find_element(By.CSS_SELECTOR, "form[action='/signin']")
        form.find_element(By.NAME, "username").send_keys(user["name"])
        form.find_element(By.NAME, "password").send_keys(user["password"] + "-wrong")
        self.submit(driver, form)
        status = self.status(driver)
        if status != 401 or not driver.find_elements(By.CSS_SELECTOR, "form[action='/signin'] input[name=password]"):
            self.fail("signin", user["name"], "/signin", f"a wrong password answered {status} "
                      "(expected 401 with the sign-in form again)")
        self.console(driver)  # the 401 itself is logged as a failed load; it is expected here

    def check_skeleton(self, driver, user, page):
        missing = [what for what, css in (
            ("<nav aria-label=\"Main\">", "nav[aria-label='Main']"),
            ("<main> with an <h1>", "main h1"),
            ("sign-out form with csrf", "form[method='post'][action='/signout'] input[type=hidden][name=csrf]"),
        ) if not driver.find_elements(By.CSS_SELECTOR, css)]
        if missing:
            self.fail("contract", user, page, "missing " + ", ".join(missing))

    def check_allowed(self, driver, user, role, path):
        driver.get(self.url(path))
        self.pages += 1
        status = self.status(driver)
        if status != 200:
            self.fail("status", user, path, f"HTTP {status}, expected 200 (at {driver.current_url})")
        self.check_skeleton(driver, user, path)
        self.run_axe(driver, user, path)
        self.screenshot(driver, f"{role}-{slug(path)}", user, path)
        self.note_console(driver, user, path)

    def check_refused(self, driver, user, path):
        driver.get(self.url(path))
        status = self.status(driver)
        h1 = [e.text for e in driver.find_elements(By.TAG_NAME, "h1")]
        if status == 403 and any("Not permitted" in t for t in h1):
            self.refused_ok += 1
        else:
            self.fail("refused", user, path, f"HTTP {status}, h1 {h1!r}; expected 403 with \"Not permitted\"")
        # Chromium logs the 403 document itself as a failed load; anything else is an error.
        for entry in self.console(driver):
            msg = entry.get("message", "")
            if "status of 403" not in msg:
                self.console_errors.append({"user": user, "page": path, "message": msg})
                self.fail("console", user, path, msg)

    def sign_out(self, driver, user):
        forms = driver.find_elements(By.CSS_SELECTOR, "form[action='/signout']")
        if not forms:
            raise StepFailed(f"no sign-out form on {self.path_of(driver)}")
        self.submit(driver, forms[0])
        driver.get(self.url("/"))
        if urlsplit(driver.current_url).path != "/signin":
            raise StepFailed(f"after signing out, / went to {driver.current_url}, expected /signin")
        self.console(driver)

    def check_user(self, user, first):
        name, role = user["name"], user["role"]
        driver = self.browser()
        try:
            if first:
                self.check_wrong_password(driver, user)
            self.sign_in(driver, user)
            for path in user.get("allowed", []):
                self.check_allowed(driver, name, role, path)
            # Phone width: the same pages at 390x844, emulated as a mobile viewport so the
            # page's meta viewport is honoured as a phone would.
            self.viewport(driver, PHONE, mobile=True)
            for path in user.get("allowed", []):
                driver.get(self.url(path))
                self.screenshot(driver, f"{role}-{slug(path)}-phone", name, path)
            self.viewport(driver, DESKTOP, mobile=False)
            self.console(driver)  # reported already from the desktop pass
            for path in user.get("refused", []):
                self.check_refused(driver, name, path)
            self.sign_out(driver, user)
        except (StepFailed, WebDriverException) as e:
            self.fail("session", name, self.safe_path(driver), one_line(e))
        finally:
            driver.quit()

    def safe_path(self, driver):
        try:
            return self.path_of(driver)
        except WebDriverException:
            return "?"

    def find(self, driver, target):
        if isinstance(target, str):
            target = {"css": target}
        if "name" in target:
            found = driver.find_elements(By.NAME, target["name"])
        else:
            found = driver.find_elements(By.CSS_SELECTOR, target["css"])
        if not found:
            raise StepFailed(f"nothing matches {target}")
        return found[0]

    def step(self, driver, step, label):
        if "goto" in step:
            driver.get(self.url(step["goto"]))
        elif "fill" in step:
            el = self.find(driver, step["fill"])
            el.clear()
            el.send_keys(str(step["value"]))
        elif "select" in step:
            sel = Select(self.find(driver, step["select"]))
            try:
                sel.select_by_value(str(step["value"]))
            except WebDriverException:
                sel.select_by_visible_text(str(step["value"]))
        elif "click" in step:
            self.click_and_wait(driver, self.find(driver, step["click"]), step.get("navigate", True))
        elif "submit" in step:
            self.submit(driver, self.find(driver, step["submit"]))
        elif "expect_text" in step:
            body = driver.find_element(By.TAG_NAME, "body").text
            if step["expect_text"] not in body:
                raise StepFailed(f"text {step['expect_text']!r} not on the page")
        elif "expect_url_contains" in step:
            if step["expect_url_contains"] not in driver.current_url:
                raise StepFailed(f"URL {driver.current_url} lacks {step['expect_url_contains']!r}")
        elif "expect_status" in step:
            status = self.status(driver)
            if status != step["expect_status"]:
                raise StepFailed(f"HTTP {status}, expected {step['expect_status']}")
        elif "screenshot" in step:
            if not self.screenshot(driver, step["screenshot"], label, self.path_of(driver)):
                raise StepFailed("blank screenshot")
        else:
            raise StepFailed(f"unknown step {step}")

    def check_flow(self, index, flow):
        users = {u["name"]: u for u in self.plan.get("users", [])}
        label = f"flow {index + 1} ({flow.get('user')})"
        user = users.get(flow.get("user"))
        if user is None:
            self.fail("flow", label, "-", "the flow's user is not among the plan's users")
            return
        driver = self.browser()
        try:
            self.sign_in(driver, user)
            for n, step in enumerate(flow["steps"], 1):
                try:
                    self.step(driver, step, label)
                except (StepFailed, WebDriverException) as e:
                    self.screenshot_quietly(driver, f"flow{index + 1}-failed")
                    raise StepFailed(f"step {n} {json.dumps(step)}: {one_line(e)}")
                self.note_console(driver, label, self.path_of(driver))
            self.flows_ok += 1
        except (StepFailed, WebDriverException) as e:
            self.fail("flow", label, self.safe_path(driver), one_line(e))
        finally:
            driver.quit()

    def screenshot_quietly(self, driver, name):
        try:
            driver.save_screenshot(os.path.join(self.shots, f"{name}.png"))
        except WebDriverException:
            pass

    def run(self):
        started = time.monotonic()
        # A browser that will not start, or a bug here, is reported like any other failure so
        # the summary line is always printed.
        for i, user in enumerate(self.plan.get("users", [])):
            try:
                self.check_user(user, first=(i == 0))
            except Exception as e:  # noqa: BLE001
                self.fail("error", user.get("name"), "-", f"{type(e).__name__}: {one_line(e)}")
        for i, flow in enumerate(self.plan.get("flows", [])):
            try:
                self.check_flow(i, flow)
            except Exception as e:  # noqa: BLE001
                self.fail("error", f"flow {i + 1}", "-", f"{type(e).__name__}: {one_line(e)}")
        return {
            "pages": self.pages,
            "console_errors": self.console_errors,
            "axe": dict(self.axe, by_rule=self.by_rule),
            "refused_ok": self.refused_ok,
            "flows_ok": self.flows_ok,
            "screenshots": self.screenshots,
            "failures": self.failures,
            "seconds": round(time.monotonic() - started, 1),
        }


def one_line(e):
    text = getattr(e, "msg", None) or str(e)
    return " ".join(str(text).split())[:500]


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        with open(argv[1], encoding="utf-8") as f:
            plan = json.load(f)
        check = Check(plan)
    except (OSError, ValueError, KeyError) as e:
        print(f"cannot read the plan {argv[1]}: {e}", file=sys.stderr)
        return 2
    summary = check.run()
    print(json.dumps(summary), flush=True)
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
