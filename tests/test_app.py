"""`paradox app`: the model behind the page, and the page itself in headless Chromium.

The browser test starts ``paradox app`` as a user would, opens the page in Debian's chromium
through selenium and works it (sliders by JavaScript focus and arrow keys, buttons and the
scenario menu by clicks), then stops the server by its process group. The server gets an
unreachable CDN address, so the page renders only if every asset comes from the environment.
Set ``PARADOX_APP_SCREENSHOT=<path>`` to save a screenshot of the running app there.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from experiments import app
from sim.config import ParameterError

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


# ---------------------------------------------------------------------------------------------
# The model behind the page (no browser)
# ---------------------------------------------------------------------------------------------


def test_every_scenario_composes_and_loads_its_values():
    scenarios = app.scenarios()
    on_disk = sorted(p.stem for p in (REPO / "conf" / "scenario").glob("*.yaml"))
    assert sorted(scenarios) == on_disk
    assert all(not isinstance(cfg, ParameterError) for cfg in scenarios.values())
    assert app.scenario_values("no_paradox")["coupling"] == 0.0
    market = app.scenario_values("concentrated_market")
    assert (market["coupling"], market["reach_exponent"]) == (1.0, 1.5)
    contest = app.scenario_values("contest_1v1")
    assert contest["q_fixed"] and contest["q"] == 0.6 and contest["n_adversaries"] == 1
    # a scenario's keys the controls do not show are kept: contest_1v1's defence floor is 0
    assert app.configure(contest).model.defence_floor == 0.0
    with pytest.raises(KeyError, match="unknown scenario 'nope'"):
        app.scenario_values("nope")


def test_slider_ranges_include_the_scenario_values():
    params = app.user_params(app.scenario_values("contest_1v1"))
    budget = params["adversary_budget_mean"]
    assert budget["max"] >= 50.0 and budget["value"] == 50.0
    assert params["coupling"]["label"] == "coupling κ = 0.8"
    assert params["scenario"]["values"][0] == "baseline"


def test_explorer_runs_the_model_the_controls_describe():
    values = {**app.scenario_values("baseline"), "n_labs": 5, "n_adversaries": 60}
    a, b = app.Explorer(values, seed=3), app.Explorer(values, seed=3)
    for _ in range(4):
        a.step()
        b.step()
    assert a.error is None and a.sim.steps == a.steps == 4
    assert a.sim.config.model.n_labs == 5 and a.sim.lab.reach.size == 5
    assert a.latest()["net_alignment"] == b.latest()["net_alignment"]  # same seed, same run
    table = a.datacollector.get_model_vars_dataframe()
    assert len(table) == 5 and "net_alignment" in table  # step 0 and four steps
    other = app.Explorer({**values, "coupling": 0.2}, seed=3)
    for _ in range(4):
        other.step()
    assert other.latest()["net_alignment"] != a.latest()["net_alignment"]
    assert a.theory is None and "alignment held fixed" in a.theory_note


def test_invalid_settings_give_a_message_not_a_crash():
    values = {**app.scenario_values("baseline"), "n_adversaries": 4}  # mean degree 6 ≥ 4
    model = app.Explorer(values)
    assert model.sim is None and not model.running
    assert "model.network.mean_degree" in model.error and "n_adversaries (4)" in model.error
    model.step()  # a step does nothing
    table = model.datacollector.get_model_vars_dataframe()
    assert len(table) == 0 and "net_alignment" in table  # the plots draw empty axes
    app._labs_figure(model)
    app._network_figure(model, "knowledge")


def test_market_theory_overlay_where_it_applies():
    values = {**app.scenario_values("concentrated_market"), "n_adversaries": 200,
              "q_fixed": True, "q": 0.85}  # fmt: skip
    model = app.Explorer(values)
    assert model.theory is not None and model.theory_note is None
    assert model.theory.q == 0.85 and model.theory.phi.shape == (20,)
    assert -1.0 <= model.theory.net_alignment <= 1.0
    # liability is outside the theory: the page says why instead of drawing it
    uncovered = app.Explorer({**values, "liability": 1.0})
    assert uncovered.theory is None and "policy.liability" in uncovered.theory_note


def test_views_draw_labs_arms_race_and_network():
    values = {**app.scenario_values("baseline"), "n_labs": 6, "n_adversaries": 80,
              "detection_probability": 0.5}  # fmt: skip
    model = app.Explorer(values)
    for _ in range(3):
        model.step()
    labs = app._labs_figure(model)
    bars = [len(ax.patches) for ax in labs.axes]
    assert bars == [6, 6, 6, 6]
    net = app._network_figure(model, "deterrence")
    points = net.axes[0].collections[-1]
    assert len(points.get_offsets()) == 80
    deterred = (model.sim.adv.deterred_until > model.sim.steps).sum()
    assert (points.get_array() > 0).sum() == deterred > 0
    arms = app._arms_figure(model).axes[0]
    table = model.datacollector.get_model_vars_dataframe()
    drawn = arms.collections[0].get_offsets()
    assert drawn.tolist() == table[["spend_attack", "spend_defence"]].iloc[1:].to_numpy().tolist()
    big = app.Explorer({**values, "n_adversaries": app.NETWORK_MAX_NODES + 1})
    title = app._network_figure(big, "knowledge").axes[0].get_title()
    assert "drawn up to" in title


# ---------------------------------------------------------------------------------------------
# The page in headless Chromium
# ---------------------------------------------------------------------------------------------


def _browser_or_skip():
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.skip(f"needs Debian's chromium and chromium-driver (make sysdeps): no {missing}")
    pytest.importorskip("selenium", reason="needs the viz extra (selenium)")
    pytest.importorskip("solara", reason="needs the viz extra (solara)")


@pytest.fixture
def server():
    """`paradox app` on a free port; yields its URL; stopped by its process group."""
    _browser_or_skip()
    port = app.free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "HOME": tempfile.mkdtemp(),
           # any asset missing from the environment would be fetched from here, and fail
           "SOLARA_ASSETS_CDN": "http://127.0.0.1:9/"}  # fmt: skip
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.cli", "app", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"paradox app exited ({proc.returncode}): {log.read().decode()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("paradox app did not answer within 90 s")
            time.sleep(0.5)
        log.seek(0)
        assert f"paradox app: {url}" in log.read().decode()  # it prints its URL first
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()


@pytest.fixture
def browser():
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="paradox-chromium-")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
                 "--window-size=1600,1100"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class Page:
    """The page as a person works it, with the console errors it logged."""

    def __init__(self, driver, url: str) -> None:
        self.d = driver
        self.errors: list[str] = []
        driver.get(url)
        self.wait_for(lambda: len(self.plots()) == 5 and "Time: 0" in self.text(), 120)

    def text(self) -> str:
        return self.d.execute_script("return document.body.innerText;")

    def plots(self) -> list[str]:
        """The src of every plot image (PNG data URLs), in the grid's order."""
        return self.d.execute_script(
            "return [...document.querySelectorAll('img')].map(img => img.src);"
        )

    def wait_for(self, condition, timeout: float = 60):
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(self.d, timeout, poll_frequency=0.2).until(lambda _: condition())

    def console_errors(self) -> list[str]:
        for entry in self.d.get_log("browser"):
            if entry["level"] == "SEVERE":
                self.errors.append(entry["message"])
        return self.errors

    def button(self, label: str) -> None:
        from selenium.webdriver.common.by import By

        # the DOM has Mesa's labels (Step, Reset); CSS shows them in capitals
        xpath = f"//button[normalize-space()='{label}']"
        self.d.find_element(By.XPATH, xpath).click()

    def step(self, times: int) -> None:
        for _ in range(times):
            before = self.time()
            self.button("Step")
            self.wait_for(lambda before=before: self.time() == before + 1)

    def time(self) -> int:
        for line in self.text().splitlines():
            if line.startswith("Time: "):
                return int(float(line.split()[1]))
        raise AssertionError("no 'Time:' line on the page")

    def readout(self, name: str) -> float:
        """A value from the 'Now' card, e.g. 'net alignment'."""
        text = self.text()
        start = text.index(f"{name} ") + len(name) + 1
        return float(text[start:].split(",")[0].split()[0])

    def slider(self, label: str) -> float:
        """Focus the slider whose label starts with ``label`` (by JavaScript: its handle has no
        size to click) and return its value."""
        value = self.d.execute_script(
            """const label = [...document.querySelectorAll('.v-input__slider label')]
                 .find(l => l.textContent.trim().startsWith(arguments[0]));
               const thumb = label.closest('.v-input__slider').querySelector('[role=slider]');
               thumb.focus();
               return thumb.getAttribute('aria-valuenow');""",
            label,
        )
        return float(value)

    def press(self, key: str, times: int = 1) -> None:
        from selenium.webdriver.common.action_chains import ActionChains

        chain = ActionChains(self.d)
        for _ in range(times):
            chain.send_keys(key)
        chain.perform()

    def select(self, label: str, option: str) -> None:
        from selenium.webdriver.common.by import By

        field = self.d.find_element(
            By.XPATH,
            f"//div[contains(@class,'v-select')][.//label[normalize-space()='{label}']]"
            "//div[@role='button']",
        )
        field.click()
        menu = "//div[contains(@class,'menuable__content__active')]"
        item = f"{menu}//div[normalize-space()='{option}']"
        self.wait_for(lambda: self.d.find_elements(By.XPATH, item))
        self.d.find_element(By.XPATH, item).click()


@pytest.mark.system
@pytest.mark.slow  # about 100 s: `make test-system` (and .ci/run) runs it
def test_the_page_in_headless_chromium(server, browser):
    from selenium.webdriver.common.keys import Keys

    page = Page(browser, server)
    text = page.text()
    for label in ("scenario (loads its values)", "coupling κ = 0.8", "labs N = 20",
                  "adversaries M = 1000", "reach exponent ζ = 1", "adversary budget ē = 0.2",
                  "open-weights share = 0.3", "open weights: which labs", app.Q_FIXED_LABEL,
                  "defence mandate m = 0", "liability λ_L = 0", "RESET", "STEP"):  # fmt: skip
        assert label in text
    assert page.console_errors() == []

    # stepping advances the counter and the plots
    first = page.plots()
    page.step(3)
    stepped = page.plots()
    # the time series, attacks, labs and arms race (the network is not drawn for M = 1000)
    assert all(a != b for a, b in zip(first[:4], stepped[:4], strict=True))
    assert "step 3:" in page.text()
    reference = page.readout("net alignment")

    # a slider moved by the keyboard changes the model on Reset
    assert page.slider("coupling κ") == 0.8
    page.press(Keys.ARROW_LEFT, 4)
    page.wait_for(lambda: "coupling κ = 0.6" in page.text())
    assert "press Reset to apply" in page.text()
    page.button("Reset")
    page.wait_for(lambda: page.time() == 0 and "κ = 0.6," in page.text())
    assert "press Reset to apply" not in page.text()
    page.step(3)
    assert page.readout("net alignment") != pytest.approx(reference, abs=1e-9)
    assert page.plots()[0] != stepped[0]

    # a scenario selection sets the controls
    page.select("scenario (loads its values)", "concentrated_market")
    page.wait_for(lambda: "coupling κ = 1" in page.text())
    assert "reach exponent ζ = 1.5" in page.text()
    assert page.slider("coupling κ") == 1.0 and page.slider("reach exponent ζ") == 1.5

    # fewer adversaries (Page Down: a tenth of the range) and exogenous q: Reset draws the
    # network and shows the market theory's prediction next to the simulation
    page.slider("adversaries M")
    page.press(Keys.PAGE_DOWN)
    page.wait_for(lambda: "adversaries M = 500\n" in page.text())
    browser.execute_script(
        """[...document.querySelectorAll('label')]
             .find(l => l.textContent.trim() === arguments[0]).click();""",
        app.Q_FIXED_LABEL,
    )
    page.wait_for(lambda: "press Reset to apply" in page.text())
    page.button("Reset")
    page.wait_for(lambda: "market theory (stationary): N =" in page.text(), 90)
    assert "scenario concentrated_market" in page.text() and "M = 500" in page.text()
    page.step(2)

    if os.environ.get("PARADOX_APP_SCREENSHOT"):  # the README's picture, after 40 steps
        page.step(38)
        browser.set_window_size(1600, 1500)
        browser.execute_script(
            """document.activeElement.blur();
               document.querySelectorAll('.v-navigation-drawer__content')
                 .forEach(el => el.scrollTop = 0);"""
        )
        time.sleep(3)  # the grid re-lays out its plots for the new size
        browser.save_screenshot(os.environ["PARADOX_APP_SCREENSHOT"])

    # an invalid combination shows its message, and the page keeps working
    page.slider("adversaries M")
    page.press(Keys.HOME)
    page.wait_for(lambda: "adversaries M = 1\n" in page.text())
    page.button("Reset")
    page.wait_for(lambda: "Invalid settings:" in page.text())
    assert "model.network.mean_degree" in page.text()
    page.slider("adversaries M")
    page.press(Keys.END)
    page.button("Reset")
    page.wait_for(lambda: "Invalid settings:" not in page.text() and "step 0:" in page.text())
    page.step(1)
    assert page.console_errors() == []
