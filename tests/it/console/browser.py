"""The console in headless Chromium (Selenium): sign in, the Create a New IP Pool wizard twice,
refusals. Every check's outcome as JSON on stdout; the Rust test asserts on it.

usage: browser.py wizard|overview BASE_URL ADMIN_USER ADMIN_PASSWORD VIEWER_USER VIEWER_PASSWORD [SHOTS]
With SHOTS (a folder), the overview phase ends with a screenshot of each page there.
"""
import json
import sys
import tempfile
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import SessionNotCreatedException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

phase, base, admin_user, admin_password, viewer_user, viewer_password = sys.argv[1:7]
shots = sys.argv[7] if len(sys.argv) > 7 else None
results = {}

options = webdriver.ChromeOptions()
# --disable-dev-shm-usage: a container's small /dev/shm makes Chromium exit at start.
for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", "--user-data-dir=" + tempfile.mkdtemp()]:
    options.add_argument(flag)
options.add_argument("--window-size=1280,900")
options.binary_location = "/usr/bin/chromium"
def start_browser(attempts=6):
    """Chromium, started again if it exits while starting (it can, on a machine busy with the
    other tests); the last failure is raised."""
    for attempt in range(attempts):
        # A fresh profile each time: a Chromium that exited may leave its profile locked.
        fresh = webdriver.ChromeOptions()
        for argument in options.arguments:
            if not argument.startswith("--user-data-dir="):
                fresh.add_argument(argument)
        fresh.add_argument("--user-data-dir=" + tempfile.mkdtemp())
        fresh.binary_location = options.binary_location
        try:
            return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=fresh)
        except SessionNotCreatedException:
            if attempt == attempts - 1:
                raise
            time.sleep(3)


driver = start_browser()
driver.implicitly_wait(5)


def text():
    return driver.find_element(By.TAG_NAME, "body").text


def click(label):
    """Clicks the button or link and waits for the next page to replace this one."""
    page = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.XPATH, f"//button[normalize-space()='{label}'] | //a[normalize-space()='{label}']").click()
    WebDriverWait(driver, 10).until(replaced(page))


def replaced(element):
    """True once `element` no longer belongs to the page shown (Chromium reports a node of an
    old document as stale or as not belonging to the document, depending on timing)."""
    def check(_):
        try:
            element.tag_name
            return False
        except Exception:
            return True
    return check


def sign_in(user, password):
    driver.get(base + "/console/login")
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    click("Sign in")


def post_form(path, fields):
    """A form post outside the browser, with the browser's session cookie."""
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in driver.get_cookies())
    data = urllib.parse.urlencode(fields).encode()
    request = urllib.request.Request(base + path, data=data, method="POST", headers={"Cookie": cookie})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def csrf():
    return driver.find_element(By.NAME, "csrf").get_attribute("value")


def wizard(name, ip, existing=None, new=None, check_back=False):
    driver.get(base + "/console/pools")
    click("Create a New IP Pool")
    field = driver.find_element(By.ID, "name")
    field.clear()
    field.send_keys(name)
    click("Next")
    moved = text()
    driver.find_element(By.CSS_SELECTOR, f"input[name=ip][value='{ip}']").click()
    click("Next")
    if check_back:
        click("Previous")
        results["ip_kept_after_previous"] = driver.find_element(
            By.CSS_SELECTOR, f"input[name=ip][value='{ip}']").is_selected()
        click("Next")
    if existing:
        driver.find_element(By.CSS_SELECTOR, "input[name=assign][value=existing]").click()
        Select(driver.find_element(By.ID, "existing_set")).select_by_visible_text(existing)
    else:
        driver.find_element(By.CSS_SELECTOR, "input[name=assign][value=new]").click()
        driver.find_element(By.ID, "new_set").send_keys(new)
    click("Next")
    review = text()
    click("Create")
    return {"moved": moved, "review": review, "after": text(), "url": driver.current_url}


def overview():
    sign_in(admin_user, admin_password)
    driver.get(base + "/console/overview")
    results["overview"] = text()
    results["bars"] = len(driver.find_elements(By.CSS_SELECTOR, "figure.chart svg rect.delivered"))
    results["live_script"] = len(driver.find_elements(By.CSS_SELECTOR, "script[src='/console/app.js']"))
    driver.get(base + "/console/ips")
    results["ips_after"] = text()

    # A reply carrying markup is shown as text.
    driver.get(base + "/console/queue?domain=example.test")
    results["queue"] = text()
    results["scripts_in_main"] = len(driver.find_elements(By.CSS_SELECTOR, "main script"))

    # Configuration sets: create one, then pause it.
    driver.get(base + "/console/sets")
    driver.find_element(By.ID, "new-set-name").send_keys("console-set")
    click("Create")
    row = "//tr[td[1][normalize-space()='console-set']]"
    Select(driver.find_element(By.XPATH, row + "//select[@name='sending']")).select_by_visible_text("paused")
    page = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.XPATH, row + "//button[@value='update']").click()
    WebDriverWait(driver, 10).until(replaced(page))
    results["sets_after"] = text()

    # Suspend a dedicated IP from its row.
    driver.get(base + "/console/ips")
    page = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.XPATH, "//tr[td[1][normalize-space()='127.0.0.4']]//button[@value='suspend']").click()
    WebDriverWait(driver, 10).until(replaced(page))
    results["ips_suspended"] = text()
    if shots:
        screenshots(shots)


def screenshots(folder):
    """One PNG per page, for the README (and to show the pages render)."""
    taken = []
    for name, path in [("overview", "/console/overview"), ("dedicated-ips", "/console/ips"),
                       ("ip-pools", "/console/pools"), ("configuration-sets", "/console/sets"),
                       ("queue", "/console/queue")]:
        driver.get(base + path)
        driver.save_screenshot(f"{folder}/console-{name}.png")
        taken.append(name)
    driver.get(base + "/console/pools")
    click("Create a New IP Pool")
    driver.find_element(By.ID, "name").send_keys("bulk-mail")
    driver.save_screenshot(f"{folder}/console-wizard-1-pool-name.png")
    click("Next")
    driver.find_element(By.CSS_SELECTOR, "input[name=ip]").click()
    driver.save_screenshot(f"{folder}/console-wizard-2-add-ips.png")
    click("Next")
    driver.save_screenshot(f"{folder}/console-wizard-3-assign.png")
    click("Next")
    driver.save_screenshot(f"{folder}/console-wizard-4-review.png")
    results["screenshots"] = taken + ["wizard-1", "wizard-2", "wizard-3", "wizard-4"]


def wizard_phase():
    driver.get(base + "/console/ips")
    results["unsigned_url"] = driver.current_url
    sign_in(admin_user, "not the password")
    results["wrong_password"] = text()
    sign_in(admin_user, admin_password)
    results["ips_page"] = text()
    results["cookies"] = driver.get_cookies()

    # A taken name is reported on the Pool name step.
    driver.get(base + "/console/pools")
    click("Create a New IP Pool")
    driver.find_element(By.ID, "name").send_keys("old")
    click("Next")
    results["taken"] = {"text": text(), "on_name_step": len(driver.find_elements(By.ID, "name")) == 1}

    results["first"] = wizard("wizard-pool", "127.0.0.3", existing="promo", check_back=True)
    results["second"] = wizard("wizard-two", "127.0.0.4", new="fresh-set")
    results["pools_page"] = text()

    results["post_without_csrf"] = post_form("/console/pools/new", {"step": "4", "action": "create",
                                             "name": "csrf-pool", "assign": "new", "new_set": "x"})
    results["post_with_wrong_csrf"] = post_form("/console/pools/delete", {"csrf": "forged", "pool": "old"})

    click("Sign out")
    results["after_sign_out"] = driver.current_url
    sign_in(viewer_user, viewer_password)
    driver.get(base + "/console/pools")
    results["viewer_pools"] = text()
    results["viewer_create_links"] = len(driver.find_elements(By.LINK_TEXT, "Create a New IP Pool"))
    results["viewer_post"] = post_form("/console/pools/delete", {"csrf": csrf(), "pool": "old"})
    driver.get(base + "/console/pools/new")
    results["viewer_wizard"] = text()


try:
    overview() if phase == "overview" else wizard_phase()
finally:
    driver.quit()
print(json.dumps(results, default=str))
