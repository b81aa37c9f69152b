"""The demo page in a real browser: headless Chromium from Debian's packages, driven by Selenium
through Debian's chromium-driver (no browser download). It opens the page, submits prompts, waits
for the result image and checks its pixels, checks that a prompt's HTML stays text, and that the
page asks nothing of any host but the server's.

Needs ``apt-get install chromium chromium-driver`` (``.ci/run`` installs them); skipped without
them unless ``ARGEN_REQUIRE_BROWSER=1`` (CI sets it, so a missing browser fails there).
``ARGEN_SCREENSHOT=docs/serve.png`` saves the page with its results; ``ARGEN_SERVE_EXPORTS`` (paths
joined by ``:``) serves those exports instead of the tiny untrained ones.
"""

import io
import json
import os
import shutil
import socket
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio", reason="the demo extra is not installed: pip install -e '.[demo]'")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (dev extra)")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from argen import serve  # noqa: E402

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1500"]

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:.*no_silent_downcasting", "ignore:The copy keyword is deprecated")]


def _browser_missing() -> str | None:
    missing = [p for p in (CHROMIUM, DRIVER) if not shutil.which(p)]
    return f"{', '.join(missing)} missing: apt-get install chromium chromium-driver" if missing else None


@pytest.fixture(scope="module")
def page(tiny_exports, tmp_path_factory):
    why = _browser_missing()
    if why:
        if os.environ.get("ARGEN_REQUIRE_BROWSER") == "1":
            pytest.fail(why)
        pytest.skip(why)
    exports = os.environ.get("ARGEN_SERVE_EXPORTS")
    paths = exports.split(":") if exports else [str(tiny_exports["image"]), str(tiny_exports["svg"])]
    server = serve.Server(serve.load_models(paths), serve.Limits())
    demo = serve.build(server)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.launch(demo, server, port=port, block=False)

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    driver.set_page_load_timeout(120)
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        WebDriverWait(driver, 120).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#prompt textarea"))
        yield {"driver": driver, "server": server, "port": port}
    finally:
        driver.quit()
        demo.close()
        server.close()


def type_prompt(driver, prompt: str) -> None:
    """As a person types: select all, delete, type (``clear()`` leaves the page's state behind)."""
    box = driver.find_element(By.CSS_SELECTOR, "#prompt textarea")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    if prompt:
        box.send_keys(prompt)
    WebDriverWait(driver, 30).until(lambda d: box.get_attribute("value") == prompt)


def submit(driver, prompt: str) -> str:
    """Type a prompt, press generate, wait for the final status; returns the status text."""
    type_prompt(driver, prompt)
    driver.find_element(By.ID, "generate").click()
    done = f"“{prompt}”: "  # the final status names the prompt; previews say "decoding"
    WebDriverWait(driver, 300).until(lambda d: done in d.find_element(By.ID, "status").text
                                     and "processing" not in d.find_element(By.ID, "status").text)
    return driver.find_element(By.ID, "status").text


def result_pixels(driver) -> np.ndarray:
    """The result image as the browser shows it (a screenshot of the element, not the file)."""
    img = WebDriverWait(driver, 60).until(
        lambda d: [e for e in d.find_elements(By.CSS_SELECTOR, "#grid img") if e.get_attribute("src")])[0]
    WebDriverWait(driver, 60).until(lambda d: d.execute_script("return arguments[0].complete && "
                                                               "arguments[0].naturalWidth > 0", img))
    return np.asarray(Image.open(io.BytesIO(img.screenshot_as_png)).convert("RGB"), dtype=np.float32)


def test_prompt_to_image_in_a_real_browser(page):
    driver = page["driver"]
    status = submit(driver, "a red circle")
    assert "“a red circle”" in status
    a = result_pixels(driver)
    assert a.shape[0] >= 64 and a.shape[1] >= 64
    assert a.std() > 5 and (a < 240).mean() > 0.05, "the result image is blank"  # not one flat colour, not white
    shot = os.environ.get("ARGEN_SCREENSHOT")
    if shot:
        Path(shot).parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(shot)


def test_html_in_a_prompt_is_shown_as_text_never_run(page):
    driver = page["driver"]
    prompt = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script> 🙂 עיגול'
    status = submit(driver, prompt)
    assert driver.execute_script("return window.__pwned === undefined")
    assert '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>' in status, status  # as text
    assert "🙂" in status and "עיגול" in status, status
    assert not driver.find_elements(By.CSS_SELECTOR, "#status script, #status img")


def test_empty_prompt_shows_a_message_and_the_page_keeps_working(page):
    driver = page["driver"]
    type_prompt(driver, "")
    driver.find_element(By.ID, "generate").click()
    WebDriverWait(driver, 60).until(lambda d: "the prompt is empty" in d.find_element(By.TAG_NAME, "body").text)
    assert "a blue square" in submit(driver, "a blue square")


def test_the_page_asks_no_other_host(page):
    driver = page["driver"]
    hosts = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if url.startswith(("http:", "https:", "ws:", "wss:")):
                hosts.add(urlparse(url).hostname)
    assert hosts == {"127.0.0.1"}, hosts
