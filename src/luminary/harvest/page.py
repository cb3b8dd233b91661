"""A static page to browse a harvest: ``OUT/index.html`` (``luminary harvest ... --html``).

Everything is in the one file: the data inline as JSON, the script and the
style inline, no fonts, images or requests, so it opens from ``file://``
with no server and no network. It shows the relations, each one's prompts
with their weights, its tuples (sortable by score or by any entity, filtered
by a search box, marked ✓ when in the relation's ground truth) and, for a
harvest over checkpoints, a checkpoint selector and a table of tuples and
precision@n per checkpoint.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from luminary.core.io import atomic_write_text, read_json
from luminary.harvest.precision import normalise_tuple


def _relation_view(folder: Path, name: str, truth: list | None, precision: dict | None) -> dict:
    known = {normalise_tuple(t) for t in truth} if truth is not None else None
    tuples = read_json(folder / name / "ent_tuples.json")
    for t in tuples:
        t["true"] = None if known is None else normalise_tuple(t["entities"]) in known
    return {"prompts": read_json(folder / name / "prompts.json"), "tuples": tuples, "precision": precision}


def _view(folder: Path, rows: list[dict], truth: dict[str, list]) -> dict:
    return {r["relation"]: _relation_view(folder, r["relation"], truth.get(r["relation"]), r.get("precision"))
            for r in rows}


def page_data(folder: str | Path, truth: dict[str, list] | None = None, title: str | None = None) -> dict:
    """What the page shows, read from a harvest folder (one model, or over checkpoints)."""
    folder, truth = Path(folder), truth or {}
    title = title or folder.name
    summary = read_json(folder / "summary.json")
    if isinstance(summary, dict) and summary.get("kind") == "checkpoints":
        views = [{"name": c["name"], "step": c["step"],
                  "relations": _view(folder / c["name"], read_json(folder / c["name"] / "summary.json"), truth)}
                 for c in summary["checkpoints"]]
        return {"title": title, "views": views, "over": summary}
    return {"title": title, "views": [{"name": "model", "step": None, "relations": _view(folder, summary, truth)}],
            "over": None}


def write_page(folder: str | Path, truth: dict[str, list] | None = None, title: str | None = None) -> Path:
    """``folder/index.html``; ``title``: the harvest's name (default the folder's: pass the final name
    when writing into a temporary folder)."""
    folder = Path(folder)
    title = title or folder.name
    data = json.dumps(page_data(folder, truth, title)).replace("<", "\\u003c")  # no "</script>" inside the JSON
    path = folder / "index.html"
    atomic_write_text(path, PAGE.replace("__TITLE__", html.escape(title)).replace("__DATA__", data))
    return path


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>harvest: __TITLE__</title>
<style>
body { font-family: sans-serif; max-width: 1100px; margin: 1.5em auto; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0; } td, th { border: 1px solid #ccc; padding: 3px 8px; }
th.sort { cursor: pointer; background: #f3f3f3; } th.sort:hover { background: #e6e6e6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } .true { color: #080; font-weight: bold; }
.controls > * { margin-right: 1em; } .note { color: #555; font-size: 0.9em; }
</style></head><body>
<h1>Harvest: __TITLE__</h1>
<p class="controls">
<label id="view-box">checkpoint <select id="view"></select></label>
<label>relation <select id="relation"></select></label>
<label>search <input id="search" type="search" placeholder="filter tuples"></label>
</p>
<div id="over-box"><h2>Over checkpoints</h2><table id="over"></table></div>
<h2>Prompts</h2><table id="prompts"><thead><tr><th>prompt</th><th>weight</th><th>raw weight</th></tr></thead>
<tbody></tbody></table>
<h2>Tuples <span id="count" class="note"></span></h2><p id="precision" class="note"></p>
<table id="tuples"><thead><tr></tr></thead><tbody></tbody></table>
<script id="data" type="application/json">__DATA__</script>
<script>
"use strict";
const DATA = JSON.parse(document.getElementById("data").textContent);
const $ = (id) => document.getElementById(id);
const state = { view: DATA.views.length - 1, relation: null, key: "score", desc: true, query: "" };

function cell(row, text, cls) {
  const td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; row.appendChild(td);
  return td;
}
function fmt(x) { return x === null || x === undefined ? "-" : (typeof x === "number" ? x.toFixed(3) : String(x)); }

function fillSelects() {
  DATA.views.forEach((v, i) => {
    const o = document.createElement("option"); o.value = i;
    o.textContent = v.step === null ? v.name : v.name + " (step " + v.step + ")"; $("view").appendChild(o);
  });
  $("view").value = state.view;
  if (DATA.views.length < 2) $("view-box").style.display = "none";
  Object.keys(DATA.views[0].relations).forEach((r) => {
    const o = document.createElement("option"); o.value = r; o.textContent = r; $("relation").appendChild(o);
  });
  state.relation = $("relation").value;
}

function drawOver() {
  const over = DATA.over;
  if (!over) { $("over-box").style.display = "none"; return; }
  const t = $("over"); t.textContent = "";
  const rel = over.relations[state.relation];
  const head = t.createTHead().insertRow();
  ["checkpoint", "step", "tuples"].concat(rel.precision ? ["precision@" + over.precision_at] : []).forEach((h) => {
    const th = document.createElement("th"); th.textContent = h; head.appendChild(th); });
  const body = t.createTBody();
  over.checkpoints.forEach((c, i) => {
    const r = body.insertRow(); cell(r, c.name); cell(r, c.step, "num"); cell(r, rel.tuples[i], "num");
    if (rel.precision) cell(r, fmt(rel.precision[i]), "num");
    if (i === state.view) r.style.background = "#fff6d5";
  });
}

function draw() {
  const rel = DATA.views[state.view].relations[state.relation];
  const pb = $("prompts").tBodies[0]; pb.textContent = "";
  rel.prompts.forEach((p) => { const r = pb.insertRow(); cell(r, p.prompt); cell(r, fmt(p.weight), "num");
                               cell(r, fmt(p.raw_weight), "num"); });
  const arity = rel.tuples.length ? rel.tuples[0].entities.length : 0;
  const keys = Array.from({ length: arity }, (_, i) => "ent" + i).concat(["score"]);
  const head = $("tuples").tHead.rows[0]; head.textContent = "";
  const rank = document.createElement("th"); rank.textContent = "#"; head.appendChild(rank);
  keys.forEach((k) => {
    const th = document.createElement("th"); th.className = "sort"; th.dataset.key = k;
    th.textContent = k + (state.key === k ? (state.desc ? " \\u25bc" : " \\u25b2") : "");
    th.addEventListener("click", () => { if (state.key === k) state.desc = !state.desc;
                                         else { state.key = k; state.desc = k === "score"; } draw(); });
    head.appendChild(th);
  });
  const th = document.createElement("th"); th.textContent = "in truth"; head.appendChild(th);
  const q = state.query.trim().toLowerCase();
  let rows = rel.tuples.map((t, i) => Object.assign({ rank: i + 1 }, t))
    .filter((t) => !q || t.entities.some((e) => e.toLowerCase().includes(q)));
  const value = (t) => state.key === "score" ? t.score : t.entities[Number(state.key.slice(3))].toLowerCase();
  rows.sort((a, b) => { const x = value(a), y = value(b); const c = x < y ? -1 : x > y ? 1 : a.rank - b.rank;
                        return state.desc ? -c : c; });
  const body = $("tuples").tBodies[0]; body.textContent = "";
  rows.forEach((t) => {
    const r = body.insertRow(); cell(r, t.rank, "num"); t.entities.forEach((e) => cell(r, e));
    cell(r, t.score.toFixed(4), "num");
    cell(r, t.true === null ? "" : (t.true ? "\\u2713" : ""), t.true ? "true" : "");
  });
  $("count").textContent = "(" + rows.length + " of " + rel.tuples.length + ")";
  const p = rel.precision;
  $("precision").textContent = p ? "precision@" + p.n + " (seeds left out): " + p.precision.toFixed(3) +
    " (" + p.hits + " of " + p.n + ")" : "";
  drawOver();
}

fillSelects();
$("view").addEventListener("change", (e) => { state.view = Number(e.target.value); draw(); });
$("relation").addEventListener("change", (e) => { state.relation = e.target.value; draw(); });
$("search").addEventListener("input", (e) => { state.query = e.target.value; draw(); });
draw();
</script>
</body></html>
"""
