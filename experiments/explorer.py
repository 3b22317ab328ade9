"""The report's static explorer: ``explorer.html``, one self-contained page over the sweeps.

``paradox report`` writes it next to ``report.md``. It needs no server and no internet: the
numbers are inlined as JSON (per design point of each sweep: mean, 95% interval and count of
the headline outcomes over the replicates, from :func:`sim.analysis.grouped_ci`) and a little
vanilla JavaScript draws them as SVG. For each sweep one factor is the x axis and every other
factor has a slider over its levels, so the page shows any slice of the precomputed design.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from sim import analysis as A

#: Outcomes the explorer offers (time averages after each run's burn-in).
OUTCOMES: dict[str, str] = {
    "mean_net_alignment": "net alignment",
    "mean_harm_total": "total harm",
    "mean_compromised_share": "compromised share",
    "mean_paradox_index": "paradox index",
    "mean_spend_attack": "attack spending",
    "mean_spend_defence": "defence spending",
}

#: The x axis each part starts with (else its first numeric factor).
DEFAULT_X = {"paradox_curve": "model.fixed_alignment", "regime_map": "model.coupling"}


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def part_data(name: str, runs: pd.DataFrame, manifest: dict) -> dict | None:
    """One sweep's explorer data, or ``None`` when it has no finished run or no factor."""
    runs = A.ok_runs(runs)
    varied = [k for k in manifest.get("varied", []) if k in runs]
    outcomes = [o for o in OUTCOMES if o in runs]
    if runs.empty or not varied or not outcomes:
        return None
    factors = []
    for key in varied:
        spec = next((f for f in manifest.get("factors", []) if f["key"] == key), {})
        levels = spec.get("levels") or sorted(runs[key].dropna().unique().tolist())
        levels = [lv for lv in levels if (runs[key] == lv).any()]
        numeric = all(isinstance(lv, int | float) and not isinstance(lv, bool) for lv in levels)
        factors.append({"key": key, "levels": levels, "numeric": numeric})
    index = {f["key"]: {lv: i for i, lv in enumerate(f["levels"])} for f in factors}
    points: dict[tuple, dict[str, list]] = {}
    for outcome in outcomes:
        table = A.grouped_ci(runs, varied, outcome)
        for values in table.to_dict("records"):
            try:
                at = tuple(index[k][values[k]] for k in varied)
            except KeyError:
                continue
            cell = [values["mean"], values["lo"], values["hi"], values["n"]]
            points.setdefault(at, {})[outcome] = [_clean(float(v)) for v in cell]
    numeric_keys = [f["key"] for f in factors if f["numeric"]]
    x = DEFAULT_X.get(name) if DEFAULT_X.get(name) in varied else None
    x = x or (numeric_keys[0] if numeric_keys else varied[0])
    return {
        "name": name,
        "steps": manifest.get("steps"),
        "replicates": manifest.get("replicates"),
        "factors": factors,
        "x": x,
        "outcomes": outcomes,
        "points": [{"at": list(at), "values": v} for at, v in sorted(points.items())],
    }


def explorer_data(folders: dict[str, Path]) -> list[dict]:
    """Explorer data for every sweep folder (``runs.parquet`` and ``sweep.json``)."""
    parts = []
    for name, folder in folders.items():
        manifest_path = folder / "sweep.json"
        manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
        data = part_data(name, pd.read_parquet(folder / "runs.parquet"), manifest)
        if data is not None:
            parts.append(data)
    return parts


def render(parts: list[dict], title: str = "Alignment paradox: sweep explorer") -> str:
    """The self-contained page (no external resource; the data inlined as JSON)."""
    payload = json.dumps({"parts": parts, "labels": OUTCOMES}, allow_nan=False)
    payload = payload.replace("</", "<\\/")  # cannot close the script element
    return PAGE.replace("__TITLE__", html.escape(title)).replace("__DATA__", payload)


def write_explorer(out: Path, folders: dict[str, Path]) -> Path | None:
    """Write ``out/explorer.html`` from the sweeps in ``folders``; ``None`` when none has data."""
    from experiments import outputs

    parts = explorer_data(folders)
    if not parts:
        return None
    path = out / "explorer.html"
    outputs.write_text(path, render(parts))
    return path


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>__TITLE__</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 980px; }
section { border-top: 1px solid #ccc; padding: 0.6em 0 1em; }
.controls { display: grid; grid-template-columns: 16em 1fr 6em; gap: 0.3em 0.8em;
  align-items: center; margin: 0.5em 0; }
.value { font-variant-numeric: tabular-nums; }
svg { background: #fafafa; border: 1px solid #ddd; }
table { border-collapse: collapse; margin-top: 0.5em; }
td, th { padding: 0.15em 0.6em; text-align: right; border-bottom: 1px solid #eee; }
.note { color: #555; }
</style>
</head>
<body>
<h1>__TITLE__</h1>
<p class="note">The report's sweeps, precomputed: each point is the mean over replicates of a
run outcome averaged after its burn-in, with its 95% interval (bars). Pick the outcome and the
x axis; the sliders choose the level of every other factor. Everything is in this file.</p>
<div id="parts"></div>
<script type="application/json" id="explorer-data">__DATA__</script>
<script>
"use strict";
const DATA = JSON.parse(document.getElementById("explorer-data").textContent);
const fmt = v => v === null || v === undefined ? "n/a" :
  (typeof v === "number" ? (Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3)) : String(v));
const el = (tag, attrs = {}, text) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
};
const SVGNS = "http://www.w3.org/2000/svg";
const sv = (tag, attrs = {}, text) => {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
};

function buildPart(part) {
  const sec = el("section", {id: "part-" + part.name});
  sec.appendChild(el("h2", {}, part.name.replace(/_/g, " ")));
  sec.appendChild(el("p", {class: "note"}, `${part.points.length} design points, ` +
    `${part.replicates ?? "?"} replicates, ${part.steps ?? "?"} steps per run.`));
  const state = {x: part.x, outcome: part.outcomes[0],
                 at: Object.fromEntries(part.factors.map(f => [f.key, 0]))};
  const box = el("div", {class: "controls"});
  const outSel = el("select", {"data-role": "outcome"});
  for (const o of part.outcomes) outSel.appendChild(el("option", {value: o}, DATA.labels[o]));
  box.append(el("label", {}, "outcome"), outSel, el("span"));
  const xSel = el("select", {"data-role": "x"});
  for (const f of part.factors) xSel.appendChild(el("option", {value: f.key}, f.key));
  xSel.value = state.x;
  box.append(el("label", {}, "x axis"), xSel, el("span"));
  const sliders = {};
  for (const f of part.factors) {
    const s = el("input", {type: "range", min: 0, max: f.levels.length - 1, step: 1, value: 0,
                           "data-factor": f.key});
    const shown = el("span", {class: "value"}, fmt(f.levels[0]));
    s.addEventListener("input", () => { state.at[f.key] = +s.value; draw(); });
    sliders[f.key] = {input: s, shown: shown, row: [el("label", {}, f.key), s, shown]};
    box.append(...sliders[f.key].row);
  }
  sec.appendChild(box);
  const svg = sv("svg", {width: 640, height: 320, viewBox: "0 0 640 320"});
  sec.appendChild(svg);
  const table = el("table");
  sec.appendChild(table);
  outSel.addEventListener("change", () => { state.outcome = outSel.value; draw(); });
  xSel.addEventListener("change", () => { state.x = xSel.value; draw(); });

  function slice() {
    const xi = part.factors.findIndex(f => f.key === state.x);
    const fx = part.factors[xi];
    return fx.levels.map((level, i) => {
      const p = part.points.find(p => p.at.every((a, j) =>
        j === xi ? a === i : a === state.at[part.factors[j].key]));
      const v = p && p.values[state.outcome];
      return {level, i, mean: v ? v[0] : null, lo: v ? v[1] : null, hi: v ? v[2] : null,
              n: v ? v[3] : 0};
    });
  }

  function draw() {
    for (const f of part.factors) {
      const on = f.key !== state.x;
      sliders[f.key].row.forEach(e => e.style.visibility = on ? "visible" : "hidden");
      sliders[f.key].shown.textContent = fmt(f.levels[state.at[f.key]]);
    }
    const fx = part.factors.find(f => f.key === state.x);
    const rows = slice();
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const W = 640, H = 320, L = 70, R = 20, T = 20, B = 60;
    const vals = rows.flatMap(r => [r.lo, r.hi, r.mean]).filter(v => v !== null);
    let lo = Math.min(...vals, 0), hi = Math.max(...vals, 0);
    if (!vals.length || hi === lo) { lo -= 1; hi += 1; }
    const pad = 0.05 * (hi - lo); lo -= pad; hi += pad;
    const numeric = fx.numeric && fx.levels.length > 1;
    const xmin = numeric ? Math.min(...fx.levels) : 0;
    const xmax = numeric ? Math.max(...fx.levels) : Math.max(fx.levels.length - 1, 1);
    const X = r => L + (W - L - R) * ((numeric ? r.level : r.i) - xmin) / ((xmax - xmin) || 1);
    const Y = v => T + (H - T - B) * (hi - v) / (hi - lo);
    svg.appendChild(sv("line", {x1: L, x2: W - R, y1: Y(0), y2: Y(0), stroke: "#bbb"}));
    svg.appendChild(sv("line", {x1: L, x2: L, y1: T, y2: H - B, stroke: "#888"}));
    for (let k = 0; k <= 4; k++) {
      const v = lo + (hi - lo) * k / 4;
      svg.appendChild(sv("text", {x: L - 6, y: Y(v) + 4, "text-anchor": "end",
                                  "font-size": 11}, fmt(v)));
    }
    for (const r of rows) {
      svg.appendChild(sv("text", {x: X(r), y: H - B + 16, "text-anchor": "middle",
        "font-size": 11, transform: numeric ? "" : `rotate(20 ${X(r)} ${H - B + 16})`},
        fmt(r.level)));
    }
    svg.appendChild(sv("text", {x: (L + W - R) / 2, y: H - 8, "text-anchor": "middle",
                                "font-size": 12}, fx.key));
    svg.appendChild(sv("text", {x: 14, y: (T + H - B) / 2, "text-anchor": "middle",
      "font-size": 12, transform: `rotate(-90 14 ${(T + H - B) / 2})`},
      DATA.labels[state.outcome]));
    const drawn = rows.filter(r => r.mean !== null);
    if (numeric && drawn.length > 1) {
      svg.appendChild(sv("polyline", {fill: "none", stroke: "#1f77b4", "stroke-width": 2,
        points: drawn.map(r => `${X(r)},${Y(r.mean)}`).join(" ")}));
    }
    for (const r of drawn) {
      if (r.lo !== null && r.hi !== null) {
        svg.appendChild(sv("line", {x1: X(r), x2: X(r), y1: Y(r.lo), y2: Y(r.hi),
                                    stroke: "#1f77b4", "stroke-opacity": 0.5}));
      }
      svg.appendChild(sv("circle", {cx: X(r), cy: Y(r.mean), r: 4, fill: "#1f77b4",
                                    "data-level": String(r.level), "data-mean": r.mean}));
    }
    table.innerHTML = "";
    const head = el("tr");
    for (const h of [fx.key, DATA.labels[state.outcome], "95% interval", "runs"])
      head.appendChild(el("th", {}, h));
    table.appendChild(head);
    for (const r of rows) {
      const tr = el("tr");
      for (const c of [fmt(r.level), fmt(r.mean), `${fmt(r.lo)} to ${fmt(r.hi)}`, r.n])
        tr.appendChild(el("td", {}, c));
      table.appendChild(tr);
    }
  }
  draw();
  return sec;
}

const root = document.getElementById("parts");
for (const part of DATA.parts) root.appendChild(buildPart(part));
</script>
</body>
</html>
"""
