"""The report's static explorer (``explorer.html``): its numbers, and that it is self-contained."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments import explorer as E

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def _sweep(folder: Path) -> Path:
    """A sweep folder like the engine writes: coupling x q, 3 replicates, one failed run."""
    rng = np.random.default_rng(1)
    rows = []
    for kappa in (0.0, 0.5, 1.0):
        for q in (0.2, 0.8):
            for rep in range(3):
                values = {o: q - kappa * q * q + rng.normal(0, 0.01) for o in E.OUTCOMES}
                rows.append({"model.coupling": kappa, "model.fixed_alignment": q,
                             "replicate": rep, "status": "ok", **values})  # fmt: skip
    rows[0]["status"], rows[0]["mean_net_alignment"] = "failed", 99.0
    for row in rows[:3]:  # a NaN outcome becomes null, not invalid JSON
        row["mean_paradox_index"] = np.nan
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(folder / "runs.parquet")
    manifest = {"name": "paradox_curve", "steps": 50, "replicates": 3,
                "varied": ["model.coupling", "model.fixed_alignment"],
                "factors": [{"key": "model.coupling", "levels": [0.0, 0.5, 1.0]},
                            {"key": "model.fixed_alignment", "levels": [0.2, 0.8]}]}  # fmt: skip
    (folder / "sweep.json").write_text(json.dumps(manifest))
    return folder


def _embedded(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="explorer-data">(.*?)</script>', page,
                      flags=re.S)  # fmt: skip
    assert match, "no embedded data"
    return json.loads(match.group(1))


def test_part_data_is_the_mean_and_interval_of_each_design_point(tmp_path):
    folder = _sweep(tmp_path / "sweeps" / "paradox_curve")
    runs = pd.read_parquet(folder / "runs.parquet")
    data = E.part_data("paradox_curve", runs, json.loads((folder / "sweep.json").read_text()))
    assert data["x"] == "model.fixed_alignment"  # the curve's x axis
    assert [f["levels"] for f in data["factors"]] == [[0.0, 0.5, 1.0], [0.2, 0.8]]
    assert len(data["points"]) == 6
    ok = runs[runs["status"] == "ok"]
    for point in data["points"]:
        kappa = data["factors"][0]["levels"][point["at"][0]]
        q = data["factors"][1]["levels"][point["at"][1]]
        cell = ok[(ok["model.coupling"] == kappa) & (ok["model.fixed_alignment"] == q)]
        mean, lo, hi, n = point["values"]["mean_net_alignment"]
        assert mean == pytest.approx(cell["mean_net_alignment"].mean())  # the failed run is out
        assert lo < mean < hi and n == len(cell)
    first = next(p for p in data["points"] if p["at"] == [0, 0])
    assert first["values"]["mean_net_alignment"][3] == 2  # three replicates, one failed


def test_explorer_html_is_self_contained_with_its_data(tmp_path):
    folders = {"paradox_curve": _sweep(tmp_path / "sweeps" / "paradox_curve")}
    path = E.write_explorer(tmp_path, folders)
    assert path == tmp_path / "explorer.html"
    page = path.read_text()
    # nothing loaded from elsewhere: no http(s) address, no external script, style or image
    assert not re.search(r"https?://", page.replace("http://www.w3.org/2000/svg", ""))
    assert not re.search(r"<(script|img|iframe)[^>]*\bsrc=", page)
    assert not re.search(r"<link\b", page)
    data = _embedded(page)
    assert [p["name"] for p in data["parts"]] == ["paradox_curve"]
    assert data["parts"][0] == json.loads(json.dumps(E.explorer_data(folders)[0]))
    assert "NaN" not in page
    first = next(p for p in data["parts"][0]["points"] if p["at"] == [0, 0])
    assert first["values"]["mean_paradox_index"][0] is None


def test_no_explorer_without_finished_runs(tmp_path):
    folder = _sweep(tmp_path / "sweeps" / "paradox_curve")
    runs = pd.read_parquet(folder / "runs.parquet").assign(status="failed")
    runs.to_parquet(folder / "runs.parquet")
    assert E.write_explorer(tmp_path, {"paradox_curve": folder}) is None
    assert not (tmp_path / "explorer.html").exists()


def test_script_text_cannot_end_the_data_element():
    page = E.render([{"name": "x</script><b>", "factors": [], "points": [], "outcomes": []}])
    assert page.count("</script>") == 2  # the data element's and the code's own
    assert _embedded(page)["parts"][0]["name"] == "x</script><b>"


@pytest.mark.system
def test_explorer_sliders_in_headless_chromium(tmp_path):
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.skip(f"needs Debian's chromium and chromium-driver (make sysdeps): no {missing}")
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (viz extra)")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    folders = {"paradox_curve": _sweep(tmp_path / "sweeps" / "paradox_curve")}
    path = E.write_explorer(tmp_path, folders)
    profile = tempfile.mkdtemp(prefix="paradox-chromium-")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.get(path.as_uri())
        means = "return [...document.querySelectorAll('#part-paradox_curve circle')].map(c => +c.getAttribute('data-mean'));"  # noqa: E501
        at_zero = driver.execute_script(means)
        data = E.explorer_data(folders)[0]
        expected = [p["values"]["mean_net_alignment"][0] for p in data["points"] if p["at"][0] == 0]
        assert at_zero == pytest.approx(expected)
        driver.execute_script(
            """const s = document.querySelector('input[data-factor="model.coupling"]');
               s.value = 2; s.dispatchEvent(new Event('input'));"""
        )
        at_two = driver.execute_script(means)
        expected = [p["values"]["mean_net_alignment"][0] for p in data["points"] if p["at"][0] == 2]
        assert at_two == pytest.approx(expected) and at_two != at_zero
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
