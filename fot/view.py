"""`python -m fot.view RESULTS [-o report.html]` or `python -m fot.view SWEEPDIR`: one HTML file to read a run.

The page is self-contained (inline CSS and JS, no network, opens from file://) so it can be mailed,
attached to an issue or kept next to the results. It shows a table of the problems (filter by right,
wrong, decision), and for a problem its forest: every tree drawn from the node record
(`<out>.trees.jsonl`, written by fot.solve), nodes coloured by Q, the returned node and the dummy
marked; click a node to read its text, the critique that produced it and its reward samples. For a
sweep directory it draws the accuracy-against-tokens cells of sweep.json with the Pareto frontier and
the baselines, and the run's problems when `run.jsonl` is there.

The data goes in as JSON in a `<script type="application/json">` tag with `<`, `>` and `&` escaped
as \\u003c etc., so no text in a result (a model may write `</script>`) can end the tag early.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

from .measure.results import trees_path
from .options import Parser

# fields of a results line the page uses; the rest (settings, run, budget_bound ...) stays out of the page
PROBLEM_FIELDS = ("id", "question", "task", "answer", "reference", "correct", "oracle_correct", "decision", "text",
                  "tokens", "calls", "wall_s", "error", "error_kind", "method", "trees", "snapshots", "answers_seen",
                  "expert_tokens", "early_stopped")


# -- the live state of a running fot.solve (`fot view --watch`) ------------------------------------------

def live_path(results: Path) -> Path:
    """`<out>.live.json`: what a run is doing now, rewritten every second or so while it runs."""
    return results.with_name(results.stem + ".live.json")


class LiveState:
    """What fot.solve is doing now, for `fot view --watch`: problems done, the trees of the problems in flight
    (each tree's rollouts, current answer and Q, a line per rollout), calls, tokens and the vote as it stands.
    Written whole to a temporary file and renamed, so a reader never sees half of it."""

    def __init__(self, path: Path, total: int, method: str, backend: str):
        self.path, self.total, self.method, self.backend = path, total, method, backend
        self.inflight: dict[str, dict[int, dict]] = {}
        self.recent: list[dict] = []

    def rollout(self, problem_id: str, tree) -> None:
        """A tree's state after a rollout, from its snapshots (a tree fills in its other fields when it ends). With
        Ray the driver hears only that a rollout ended (tree None): the problem counts, its trees are not shown."""
        if tree is None:
            return
        last = tree.snapshots[-1] if tree.snapshots else None
        self.inflight.setdefault(problem_id, {})[tree.index] = {
            "tree": tree.index, "input": tree.input_kind, "rollouts": tree.rollouts_done,
            "answer": last.answer if last else None, "q": last.q if last else None,
            "calls": last.calls if last else 0, "tokens": last.tokens if last else 0,
            "track": [{"rollout": s.rollout, "q": s.q, "answer": s.answer, "tokens": s.tokens} for s in tree.snapshots]}

    def finished(self, row: dict) -> None:
        self.inflight.pop(str(row.get("id")), None)
        self.recent = [{k: row.get(k) for k in ("id", "answer", "correct", "decision")} |
                       {"tokens": (row.get("tokens") or {}).get("total")}, *self.recent][:10]

    def state(self, done: int, correct: int, graded: int, tokens: int, calls: int, elapsed_s: float,
              finished: bool = False) -> dict:
        flight = []
        for pid, trees in self.inflight.items():
            votes: dict[str, int] = {}
            for t in trees.values():
                if t["answer"] is not None:
                    votes[t["answer"]] = votes.get(t["answer"], 0) + 1
            leading = max(votes, key=votes.get) if votes else None
            flight.append({"id": pid, "trees": sorted(trees.values(), key=lambda t: t["tree"]), "votes": votes,
                           "leading": leading})
        return {"method": self.method, "backend": self.backend, "total": self.total, "done": done,
                "correct": correct, "graded": graded, "tokens": tokens, "calls": calls,
                "elapsed_s": round(elapsed_s, 1), "finished": finished, "inflight": flight, "recent": self.recent}

    def write(self, **counts) -> None:
        """Only for a run someone watches: `fot view --watch` makes the file, so an unwatched run leaves none."""
        if not self.path.exists():
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(self.state(**counts), allow_nan=False, default=str), encoding="utf-8")
            tmp.replace(self.path)
        except (OSError, ValueError):
            pass  # a live view is a convenience: it never stops the run


class ViewError(ValueError):
    """What is wrong with which file (and where), said in one line instead of a traceback."""


def _finite(text: str) -> float | None:
    v = float(text)
    return v if math.isfinite(v) else None


def loads(text: str) -> object:
    """JSON as the page can carry it: NaN, Infinity and numbers past a float's range (old results written
    with `--price-in inf`) become null, since the page's JSON.parse refuses them and would show nothing."""
    return json.loads(text, parse_constant=lambda _: None, parse_float=_finite)


def read_json(path: Path) -> object:
    try:
        return loads(path.read_text(encoding="utf-8", errors="replace"))
    except json.JSONDecodeError as e:
        raise ViewError(f"{path}: line {e.lineno} column {e.colno}: not JSON: {e.msg}") from None
    except (ValueError, RecursionError) as e:  # a 5,000-digit integer; nesting past the recursion limit
        raise ViewError(f"{path}: not JSON the viewer can read: {str(e)[:120] or 'nested too deeply'}") from None


def read_jsonl(path: Path) -> list[dict]:
    """Whole lines only: a results file being written (or torn by a crash) still opens, and so does a
    line of bytes that are not UTF-8 (they are shown as U+FFFD)."""
    rows = []
    if not path.is_file():
        return rows
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _dicts(value: object) -> list[dict]:
    """The objects of a list the page iterates over; anything else in it (null, a number) is dropped."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _drawable(nodes: list[dict]) -> list[dict]:
    """The nodes the page can lay out: each id (a number or a string) once, reached from a root by parent
    links. A node whose parent is missing, or a cycle of parents, would stop the drawing."""
    ref = lambda v: isinstance(v, (int, str)) and not isinstance(v, bool)  # noqa: E731
    first: dict = {}
    for n in nodes:
        if ref(n.get("id")) and (n.get("parent") is None or ref(n.get("parent"))):
            first.setdefault(n["id"], n)
    kids: dict = {}
    for n in first.values():
        kids.setdefault(n.get("parent"), []).append(n)
    reached, todo = set(), [n["id"] for n in kids.get(None, [])]
    while todo:
        i = todo.pop()
        if i not in reached:
            reached.add(i)
            todo += [k["id"] for k in kids.get(i, [])]
    return [n for n in first.values() if n["id"] in reached]


def _forest(trees: object) -> list[dict] | None:
    """A trees line's forest with the shapes the page draws from: lists of objects where it loops."""
    if not isinstance(trees, list):
        return None
    return [{**t, "nodes": [{**n, "rewards": _dicts(n.get("rewards"))} for n in _drawable(_dicts(t.get("nodes")))]}
            for t in _dicts(trees)]


def problems_of(results: Path) -> list[dict]:
    """The results lines joined with their trees lines (the last one per id, as fot.solve keeps them)."""
    forests = {str(t.get("id")): _forest(t.get("trees")) for t in read_jsonl(trees_path(results))}
    out = []
    for row in read_jsonl(results):
        p = {k: row.get(k) for k in PROBLEM_FIELDS}
        p["trees"] = _dicts(p["trees"])
        p["snapshots"] = [_dicts(s) for s in p["snapshots"]] if isinstance(p["snapshots"], list) else []
        p["tokens"] = p["tokens"] if isinstance(p["tokens"], dict) else {}
        if row.get("samples"):  # a sample that is not an object (null) is a row of its own, with nothing in it
            p["samples"] = [{"answer": s.get("answer"), "score": s.get("score")} if isinstance(s, dict)
                            else {"answer": None, "score": None} for s in row["samples"]] \
                if isinstance(row["samples"], list) else []
        p["forest"] = forests.get(str(row.get("id")))
        out.append(p)
    return out


CELL_NUMBERS = ("accuracy", "tokens_mean", "tokens_per_solved", "correct", "graded", "trees", "rollouts", "samples")


def _check_cells(path: Path, where: str, cells: object) -> list[dict]:
    if not isinstance(cells, list):
        raise ViewError(f"{path}: '{where}' must be a list of cells, got {type(cells).__name__}")
    for i, c in enumerate(cells):
        if not isinstance(c, dict):
            raise ViewError(f"{path}: {where}[{i}] must be an object, got {json.dumps(c)[:40]}")
        for k in CELL_NUMBERS:
            v = c.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise ViewError(f"{path}: {where}[{i}].{k} must be a number or null, got {json.dumps(v)[:40]}")
        ci = c.get("ci95")
        if ci is not None and not (isinstance(ci, list) and len(ci) == 2
                                   and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in ci)):
            raise ViewError(f"{path}: {where}[{i}].ci95 must be [low, high] or null, got {json.dumps(ci)[:40]}")
    return cells


def sweep_of(directory: Path) -> dict:
    """sweep.json without the per-problem lists of its cells (ids, outcomes), which the chart does not need;
    a file not in the shape fot.sweep writes is refused, naming the field, rather than drawn wrong."""
    path = directory / "sweep.json"
    sweep = read_json(path)
    if not isinstance(sweep, dict):
        raise ViewError(f"{path}: must be an object with 'cells', got {type(sweep).__name__}")
    slim = lambda c: {k: v for k, v in c.items() if k not in ("ids", "outcomes")}  # noqa: E731
    sweep["cells"] = [slim(c) for c in _check_cells(path, "cells", sweep.get("cells", []))]
    baselines = sweep.get("baselines") or {}
    if not isinstance(baselines, dict):
        raise ViewError(f"{path}: 'baselines' must be an object of method: [cells]")
    sweep["baselines"] = {m: [slim(c) for c in _check_cells(path, f"baselines.{m}", curve)]
                          for m, curve in baselines.items()}
    pareto = sweep.get("pareto") or []
    if not (isinstance(pareto, list) and all(isinstance(x, list) and len(x) == 2 for x in pareto)):
        raise ViewError(f"{path}: 'pareto' must be a list of [trees, rollouts]")
    sweep["pareto"] = pareto
    frontier = sweep.get("frontier")  # labels over every cell measured (forest "TxR", baselines "method@n")
    if frontier is not None and not (isinstance(frontier, list) and all(isinstance(x, str) for x in frontier)):
        raise ViewError(f"{path}: 'frontier' must be a list of cell labels")
    if not isinstance(sweep.get("meta") or {}, dict):
        raise ViewError(f"{path}: 'meta' must be an object")
    return sweep


def page_data(path: Path, watch: bool = False) -> dict:
    if path.is_dir():
        if not (path / "sweep.json").is_file():
            raise FileNotFoundError(f"{path} has no sweep.json (give a results .jsonl or a fot.sweep directory)")
        sweep = sweep_of(path)
        return {"kind": "sweep", "title": f"fot sweep: {sweep.get('meta', {}).get('problems_file', path.name)}",
                "source": str(path), "sweep": sweep, "problems": problems_of(path / "run.jsonl")}
    if not path.is_file():
        if watch and path.suffix == ".jsonl":  # the run has not written a result yet
            return {"kind": "results", "title": f"fot: {path.name}", "source": str(path), "summary": None,
                    "sweep": None, "problems": [], "watch": True}
        raise FileNotFoundError(f"{path}: no such results file")
    problems = problems_of(path)
    raw = read_jsonl(path)
    if raw and not any(k in row for row in raw for k in ("decision", "tokens", "trees", "samples")):
        raise ViewError(f"{path} is a problem file, not results (no line has a decision or tokens): run "
                        f"`fot solve {path}` and view the results it writes")
    summary_path = path.with_name(path.stem + ".summary.json")
    summary = read_json(summary_path) if summary_path.is_file() else None
    if summary is not None and not isinstance(summary, dict):
        raise ViewError(f"{summary_path}: must be an object, got {type(summary).__name__}")
    return {"kind": "results", "title": f"fot: {path.name}", "source": str(path), "summary": summary,
            "sweep": None, "problems": problems, "watch": watch}


def embed(data: dict) -> str:
    """JSON safe inside a <script> element: `<`, `>`, `&` only occur inside JSON strings, where the escapes
    mean the same characters, so `</script>` or `<!--` in a model's text cannot close or confuse the tag."""
    s = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    # a lone surrogate (a JSON "\\ud800" in a result) cannot be written as UTF-8; as an escape JSON.parse reads it
    s = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", s)
    return s.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e") \
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


_SURROGATE = re.compile("[\ud800-\udfff]")


def render(data: dict) -> str:
    title = _SURROGATE.sub("\ufffd", data["title"]).replace("&", "&amp;").replace("<", "&lt;")
    return (PAGE.replace("%%TITLE%%", title).replace("%%CSS%%", CSS).replace("%%JS%%", JS)
            .replace("%%DATA%%", embed(data)))


def default_output(path: Path) -> Path:
    return path / "sweep.html" if path.is_dir() else path.with_name(path.stem + ".html")


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog="python -m fot.view", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", help="a results .jsonl of fot.solve (its .trees.jsonl is read too) or a fot.sweep "
                    "directory")
    ap.add_argument("-o", "--output", default=None,
                    help="the HTML file (default: RESULTS.html next to it, or SWEEPDIR/sweep.html)")
    ap.add_argument("--watch", action="store_true",
                    help="serve the page on 127.0.0.1 and keep it current while fot.solve writes RESULTS: problems "
                         "done, the trees of the problems in flight, calls, tokens, the vote as it stands "
                         "(default off: write the HTML file once)")
    ap.add_argument("--port", type=int, default=8102, help="with --watch: the port (default 8102; 0: any free one)")
    args = ap.parse_args(argv)
    path = Path(args.path)
    if args.watch:
        if path.is_dir():
            ap.error("--watch follows a results .jsonl of fot.solve (the run's --out), not a directory")
        try:
            page_data(path, watch=True)  # refused now, in one line, if it is not results
            path.parent.mkdir(parents=True, exist_ok=True)
        except (OSError, ValueError) as e:
            print(f"{ap.prog}: {e}", file=sys.stderr)
            return 2
        return watch(path, args.port, ap.prog)
    try:
        data = page_data(path)
    except (FileNotFoundError, ValueError) as e:
        print(f"{ap.prog}: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # unreadable: a directory where a file should be, no permission
        print(f"{ap.prog}: {e.filename or path}: {e.strerror or e}", file=sys.stderr)
        return 2
    out = Path(args.output) if args.output else default_output(path)
    try:
        out.write_text(render(data), encoding="utf-8")
    except OSError as e:
        print(f"fot.view: cannot write {out}: {e.strerror or e}", file=sys.stderr)
        return 1
    with_trees = sum(p["forest"] is not None for p in data["problems"])
    print(f"fot.view: wrote {out} ({len(data['problems'])} problems, {with_trees} with their trees"
          f"{', the sweep chart' if data['kind'] == 'sweep' else ''})")
    return 0


def watch(path: Path, port: int, prog: str = "fot view", ready=None) -> int:
    """Serve the page of `path` at http://127.0.0.1:PORT/ and its live state at /live until Ctrl-C; the page
    polls /live every second and reloads itself when new results have been written (and no problem is open).
    It makes `<out>.live.json` (null until a run writes it): fot.solve keeps the file current only when it
    exists, so a run nobody watches leaves no live file behind."""
    import asyncio

    live_file = live_path(path)
    if not live_file.exists():
        try:
            live_file.write_text("null", encoding="utf-8")
        except OSError as e:
            print(f"{prog}: cannot write {live_file}: {e.strerror or e}", file=sys.stderr)
            return 1

    from aiohttp import web

    async def page(request: web.Request) -> web.Response:
        try:
            return web.Response(text=render(page_data(path, watch=True)), content_type="text/html")
        except (OSError, ValueError) as e:
            return web.Response(text=f"{prog}: {e}", status=500)

    async def live(request: web.Request) -> web.Response:
        state = None
        try:
            state = loads(live_path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass
        return web.json_response({"live": state, "results": len(read_jsonl(path))},
                                 headers={"Cache-Control": "no-store"})

    async def run() -> None:
        app = web.Application()
        app.router.add_get("/", page)
        app.router.add_get("/live", live)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            raise SystemExit(f"{prog}: cannot listen on 127.0.0.1:{port}: {e.strerror or e}")
        bound = site._server.sockets[0].getsockname()[1]
        print(f"{prog}: watching {path} at http://127.0.0.1:{bound}/ (Ctrl-C to stop)", flush=True)
        if ready is not None:
            ready(bound)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        return 0
    return 0


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>%%TITLE%%</title>
<style>%%CSS%%</style></head>
<body>
<header><h1 id="title"></h1><div id="summary"></div></header>
<section id="live" hidden></section>
<section id="sweep" hidden><h2>Accuracy against tokens</h2><div id="chart"></div><div id="cell" class="panel"></div></section>
<section id="list">
<div class="filters">
 <label>result <select id="f-correct"><option value="all">all</option><option value="right">right</option>
 <option value="wrong">wrong</option><option value="ungraded">ungraded</option><option value="error">error</option></select></label>
 <label>decision <select id="f-decision"><option value="all">all</option></select></label>
 <label>search <input id="f-text" type="search" placeholder="id or question"></label>
 <span id="shown"></span>
</div>
<table id="problems"><thead><tr><th data-key="i">#</th><th data-key="id">id</th><th data-key="status">result</th>
<th data-key="answer">answer</th><th data-key="reference">reference</th><th data-key="decision">decision</th>
<th data-key="tokens">tokens</th><th data-key="method">method</th><th data-key="count">trees / samples</th>
<th data-key="question">question</th></tr></thead><tbody></tbody></table>
</section>
<section id="detail" hidden></section>
<script id="data" type="application/json">%%DATA%%</script>
<script>%%JS%%</script>
</body></html>
"""

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 1.5em 2em;color:#222}
h1{font-size:1.3em}h2{font-size:1.1em;margin:.8em 0 .3em}h3{font-size:1em;margin:.6em 0 .2em}
.filters{margin:.5em 0;display:flex;gap:1.2em;align-items:center}
table{border-collapse:collapse}th,td{padding:2px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
#problems{max-height:40vh;display:block;overflow:auto}
#problems tbody tr{cursor:pointer}#problems tbody tr:hover{background:#f3f6ff}#problems tr.sel{background:#dde6ff}
.right{color:#17803d}.wrong{color:#c0392b}.muted{color:#888}
td.q{max-width:40em;}td.ans{max-width:10em}td.q,td.ans{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
pre{white-space:pre-wrap;background:#f7f7f7;padding:.5em;margin:.2em 0;max-height:20em;overflow:auto}
.panel{border:1px solid #ddd;padding:.5em 1em;margin:.5em 0;background:#fff}
.forest{display:flex;flex-wrap:wrap;gap:1em}.tree{border:1px solid #ddd;padding:.3em .6em}
.tree h3{font-weight:normal}.node{cursor:pointer}.node circle{stroke:#555;stroke-width:1}
.node.best circle{stroke:#000;stroke-width:3.5}.node.dummy circle{stroke-dasharray:3 2;fill:#ccc!important}
.node.sel circle{stroke:#1f5bff;stroke-width:4}.node text{font-size:9px;text-anchor:middle;pointer-events:none}
.edge{stroke:#999;stroke-width:1.2}.legend{font-size:12px;color:#555}
.point{cursor:pointer}.point:hover{stroke:#000;stroke-width:2}
#sweep-svg polyline,#sweep-svg line,.pareto-ring{pointer-events:none}
.axis text{font-size:11px}.axis line,.axis path{stroke:#888}
#detail{margin-top:1em}.cols{display:flex;gap:2em;flex-wrap:wrap}
#problems th[data-key]{cursor:pointer;user-select:none}#problems th.asc::after{content:" ▲"}#problems th.desc::after{content:" ▼"}
#live{border:2px solid #1f5bff;padding:.3em 1em .6em;margin:.5em 0;background:#f6f8ff}.live-problem table td{padding:1px 6px}
"""

JS = r"""
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const NS = "http://www.w3.org/2000/svg";
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) { if (v !== undefined && v !== null) e.setAttribute(k, v); }
  for (const k of kids) { if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k)); }
  return e;
}
function sv(tag, attrs, ...kids) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) { if (v !== undefined && v !== null) e.setAttribute(k, v); }
  for (const k of kids) { if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k)); }
  return e;
}
const fmt = (x, d) => x === null || x === undefined ? "n/a" : (typeof x === "number" ? x.toFixed(d === undefined ? 1 : d) : String(x));
const int = x => x === null || x === undefined ? "n/a" : Math.round(x).toLocaleString("en");
const pct = x => x === null || x === undefined ? "n/a" : (100 * x).toFixed(1) + "%";
function qColour(q) {  // -100 red .. 0 amber .. 100 green
  if (q === null || q === undefined) return "#bbb";
  const t = Math.max(0, Math.min(1, (q + 100) / 200));
  return "hsl(" + Math.round(t * 120) + ",70%,52%)";
}
function status(p) {
  if (p.error && (p.answer === null || p.answer === undefined)) return "error";
  if (p.correct === true) return "right";
  if (p.correct === false) return "wrong";
  return "ungraded";
}

// ---- header -------------------------------------------------------------------------------------
document.getElementById("title").textContent = D.title;
(function summary() {
  const ps = D.problems, graded = ps.filter(p => p.correct !== null && p.correct !== undefined);
  const right = graded.filter(p => p.correct).length;
  const toks = ps.map(p => (p.tokens || {}).total || 0);
  const mean = toks.length ? toks.reduce((a, b) => a + b, 0) / toks.length : 0;
  const parts = [ps.length + " problems", graded.length ? "accuracy " + pct(right / graded.length) + " (" + right + "/" + graded.length + ")" : "not graded",
                 "mean tokens/problem " + int(mean)];
  if (D.sweep && !ps.length) parts.splice(0, 3, "the run's problems are not here (no run.jsonl next to sweep.json)");
  const methods = [...new Set(ps.map(p => p.method).filter(Boolean))];
  if (methods.length) parts.splice(1, 0, "method " + methods.join(", "));
  if (D.summary && D.summary.backend) parts.push("backend: " + D.summary.backend);
  if (D.sweep && D.sweep.meta) parts.push("backend: " + D.sweep.meta.backend);
  document.getElementById("summary").textContent = parts.join(" · ");
})();

// ---- the problem table ----------------------------------------------------------------------------
function count(p) {  // a forest's trees, or a sampling method's samples (sc / bon / cot have no trees)
  const trees = p.forest ? p.forest.length : (p.trees || []).length;
  return trees ? trees + " trees" : (p.samples || []).length ? p.samples.length + " samples" : "0";
}
const SORT = {i: p => p._i, id: p => String(p.id), status: p => status(p), answer: p => p.answer === null ? "" : String(p.answer),
  reference: p => p.reference === null ? "" : String(p.reference), decision: p => String(p.decision),
  tokens: p => (p.tokens || {}).total || 0, method: p => p.method || "forest", count: p => parseInt(count(p)) || 0,
  question: p => String(p.question)};
D.problems.forEach((p, i) => { p._i = i; });
function sortBy(th) {
  const key = th.dataset.key, asc = !th.classList.contains("asc");
  document.querySelectorAll("#problems th").forEach(h => h.classList.remove("asc", "desc"));
  th.classList.add(asc ? "asc" : "desc");
  const f = SORT[key], rows = [...tbody.children];
  rows.sort((a, b) => { const x = f(D.problems[+a.dataset.i]), y = f(D.problems[+b.dataset.i]);
    return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1); });
  tbody.append(...rows);
}
document.querySelectorAll("#problems th[data-key]").forEach(th => th.addEventListener("click", () => sortBy(th)));
const tbody = document.querySelector("#problems tbody");
const decisions = [...new Set(D.problems.map(p => p.decision))].sort();
for (const d of decisions) document.getElementById("f-decision").append(el("option", {value: d}, d));
D.problems.forEach((p, i) => {
  const st = status(p);
  const tr = el("tr", {"class": "problem", "data-i": i, "data-status": st, "data-decision": p.decision},
    el("td", {}, i + 1), el("td", {}, p.id),
    el("td", {"class": st}, st === "right" ? "✓ right" : st === "wrong" ? "✗ wrong" : st),
    el("td", {"class": "ans"}, p.answer === null ? "—" : p.answer),
    el("td", {"class": "ans", title: p.reference === null ? "" : p.reference}, p.reference === null ? "—" : p.reference),
    el("td", {}, p.decision), el("td", {}, int((p.tokens || {}).total)), el("td", {}, p.method || "forest"),
    el("td", {}, count(p)), el("td", {"class": "q"}, p.question));
  tr.addEventListener("click", () => showProblem(i));
  tbody.append(tr);
});
function applyFilters() {
  const c = document.getElementById("f-correct").value, d = document.getElementById("f-decision").value;
  const t = document.getElementById("f-text").value.trim().toLowerCase();
  let shown = 0;
  for (const tr of tbody.children) {
    const p = D.problems[+tr.dataset.i];
    const ok = (c === "all" || tr.dataset.status === c) && (d === "all" || p.decision === d) &&
      (!t || String(p.id).toLowerCase().includes(t) || String(p.question).toLowerCase().includes(t));
    tr.hidden = !ok;
    shown += ok;
  }
  document.getElementById("shown").textContent = shown + " of " + D.problems.length + " shown";
}
for (const id of ["f-correct", "f-decision", "f-text"]) document.getElementById(id).addEventListener("input", applyFilters);
applyFilters();

// ---- one problem: vote, tokens over rollouts, the forest -----------------------------------------
function showProblem(i) {
  const p = D.problems[i];
  for (const tr of tbody.children) tr.classList.toggle("sel", +tr.dataset.i === i);
  const box = document.getElementById("detail");
  box.hidden = false;
  box.replaceChildren();
  const st = status(p);
  box.append(el("h2", {id: "problem-title"}, "Problem " + p.id + " — ", el("span", {"class": st}, st)));
  box.append(el("pre", {}, p.question));
  const facts = el("table", {id: "facts"});
  const row = (k, v) => facts.append(el("tr", {}, el("th", {}, k), el("td", {}, v)));
  row("answer returned", p.answer === null ? "none" : p.answer);
  row("reference", p.reference === null ? "none" : p.reference);
  row("decision", p.decision + (p.decision === "expert" ? " (the expert prompt chose among the trees' answers; " + int(p.expert_tokens) + " tokens)" : ""));
  const tk = p.tokens || {};
  row("tokens", int(tk.total) + " (prompt " + int(tk.prompt) + ", completion " + int(tk.completion) + ", cached " + int(tk.cached) + ")");
  row("calls / wall", int(p.calls) + " / " + fmt(p.wall_s) + " s");
  if (p.oracle_correct !== null && p.oracle_correct !== undefined) row("some node right (oracle)", p.oracle_correct ? "yes" : "no");
  if (p.error) row("error", (p.error_kind ? p.error_kind + ": " : "") + p.error);
  box.append(facts);
  const cols = el("div", {"class": "cols"});
  if ((p.trees || []).length) cols.append(vote(p));
  if (p.snapshots && p.snapshots.length) cols.append(tokenChart(p));
  box.append(cols);
  if (p.samples && p.samples.length) {
    box.append(el("h2", {}, "Samples (" + p.method + ", " + p.samples.length + ")"));
    const votes = new Map();
    for (const s of p.samples) { const k = s.answer === null ? "(no answer)" : s.answer; votes.set(k, (votes.get(k) || 0) + 1); }
    const vt = el("table", {id: "sample-votes"}, el("tr", {}, el("th", {}, "answer"), el("th", {}, "votes"), el("th", {}, "")));
    for (const [ans, n] of [...votes.entries()].sort((a, b) => b[1] - a[1]))
      vt.append(el("tr", {}, el("td", {}, ans), el("td", {}, n + " of " + p.samples.length), el("td", {}, ans === p.answer ? "◀ returned (" + p.decision + ")" : "")));
    box.append(vt);
    const t = el("table", {id: "samples"}, el("tr", {}, el("th", {}, "#"), el("th", {}, "answer"), el("th", {}, "self-evaluation score")));
    p.samples.forEach((s, k) => t.append(el("tr", {}, el("td", {}, k), el("td", {}, s.answer === null ? "none" : s.answer), el("td", {}, s.score === null || s.score === undefined ? "n/a" : fmt(s.score)))));
    box.append(t);
  }
  if (!p.forest && p.samples && p.samples.length && !(p.trees || []).length) return;  // a sampling method: no forest
  box.append(el("h2", {}, "The forest"));
  if (!p.forest) {
    box.append(el("p", {"class": "muted", id: "no-forest"}, "No node record for this problem (no trees line: a sampling method, --no-trees, or results older than the record)."));
    return;
  }
  box.append(el("div", {"class": "legend"}, "Nodes coloured by Q (red −100 … green +100, grey unscored); thick ring: the node the tree returned; dashed grey: the dummy answer. Click a node."));
  const forest = el("div", {"class": "forest"});
  p.forest.forEach(t => forest.append(drawTree(t)));
  box.append(forest);
  box.append(el("div", {id: "node", "class": "panel"}, el("span", {"class": "muted"}, "Click a node to read it.")));
  box.scrollIntoView({behavior: "instant", block: "start"});
}

function vote(p) {
  const div = el("div", {id: "vote"}, el("h3", {}, "The vote"));
  const groups = new Map();
  for (const t of p.trees || []) {
    const k = t.answer === null ? "(no answer)" : t.answer;
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k).push(t);
  }
  const tab = el("table", {}, el("tr", {}, el("th", {}, "answer"), el("th", {}, "trees"), el("th", {}, "best Q"), el("th", {}, "")));
  for (const [ans, ts] of [...groups.entries()].sort((a, b) => b[1].length - a[1].length)) {
    const qs = ts.map(t => t.q).filter(q => q !== null);
    tab.append(el("tr", {}, el("td", {}, ans), el("td", {}, ts.map(t => "#" + t.index + " (" + t.input + ")").join(", ")),
      el("td", {}, qs.length ? fmt(Math.max(...qs)) : "n/a"), el("td", {}, ans === p.answer ? "◀ returned (" + p.decision + ")" : "")));
  }
  div.append(tab);
  return div;
}

function axes(g, x0, y0, xs, ys, xl, yl, W, H, m) {
  g.append(sv("line", {x1: m.l, y1: H - m.b, x2: W - m.r, y2: H - m.b, "class": "axis", stroke: "#888"}));
  g.append(sv("line", {x1: m.l, y1: m.t, x2: m.l, y2: H - m.b, stroke: "#888"}));
  for (const [v, label] of xs) { const x = x0(v); g.append(sv("text", {x, y: H - m.b + 14, "text-anchor": "middle", "font-size": 10}, label)); g.append(sv("line", {x1: x, x2: x, y1: H - m.b, y2: H - m.b + 4, stroke: "#888"})); }
  for (const [v, label] of ys) { const y = y0(v); g.append(sv("text", {x: m.l - 5, y: y + 3, "text-anchor": "end", "font-size": 10}, label)); g.append(sv("line", {x1: m.l, x2: W - m.r, y1: y, y2: y, stroke: "#eee"})); }
  g.append(sv("text", {x: (m.l + W - m.r) / 2, y: H - 4, "text-anchor": "middle", "font-size": 11}, xl));
  g.append(sv("text", {x: 12, y: (m.t + H - m.b) / 2, "text-anchor": "middle", "font-size": 11, transform: "rotate(-90 12 " + (m.t + H - m.b) / 2 + ")"}, yl));
}
function ticks(lo, hi, n) {
  const span = hi - lo || 1, step0 = span / n, mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 5, 10].map(s => s * mag).find(s => span / s <= n) || mag * 10;
  const out = [];
  for (let k = Math.ceil(lo / step); k * step <= hi + 1e-9; k++) out.push(+(k * step).toPrecision(12));  // 0.6, not 0.6000000000000001
  return out;
}
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

function tokenChart(p) {
  const W = 420, H = 220, m = {l: 58, r: 10, t: 10, b: 34};
  const div = el("div", {id: "tokens-chart"}, el("h3", {}, "Tokens over rollouts (cumulative, per tree)"));
  const s = sv("svg", {width: W, height: H});
  const all = p.snapshots.flat();
  const maxR = Math.max(1, ...all.map(x => x.rollout)), maxT = Math.max(1, ...all.map(x => x.tokens));
  const X = r => m.l + (W - m.l - m.r) * r / maxR, Y = t => H - m.b - (H - m.t - m.b) * t / maxT;
  axes(s, X, Y, ticks(0, maxR, 8).map(v => [v, v]), ticks(0, maxT, 5).map(v => [v, int(v)]), "rollout", "tokens", W, H, m);
  p.snapshots.forEach((snaps, k) => {
    const col = PALETTE[k % PALETTE.length];
    s.append(sv("polyline", {points: snaps.map(x => X(x.rollout) + "," + Y(x.tokens)).join(" "), fill: "none", stroke: col, "stroke-width": 1.5}));
    for (const x of snaps) s.append(sv("circle", {cx: X(x.rollout), cy: Y(x.tokens), r: 2.5, fill: col}, sv("title", {}, "tree " + k + ", rollout " + x.rollout + ": " + int(x.tokens) + " tokens, answer " + x.answer)));
  });
  div.append(s);
  return div;
}

function drawTree(t) {
  const nodes = t.nodes || [], kids = new Map(), byId = new Map(nodes.map(n => [n.id, n]));
  for (const n of nodes) { const k = n.parent === null ? "top" : n.parent; if (!kids.has(k)) kids.set(k, []); kids.get(k).push(n); }
  const pos = new Map();
  let leaf = 0, maxDepth = 0;
  function place(n, depth) {  // leaves left to right, a parent centred over its children
    maxDepth = Math.max(maxDepth, depth);
    const ch = kids.get(n.id) || [];
    let x;
    if (!ch.length) x = leaf++;
    else { const xs = ch.map(c => place(c, depth + 1)); x = (Math.min(...xs) + Math.max(...xs)) / 2; }
    pos.set(n.id, [x, depth]);
    return x;
  }
  for (const r of kids.get("top") || []) place(r, 0);
  const dx = 30, dy = 42, pad = 16;
  const W = Math.max(140, pad * 2 + Math.max(0, leaf - 1) * dx), H = pad * 2 + maxDepth * dy + 4;
  const s = sv("svg", {width: W, height: H, "class": "tree-svg", "data-tree": t.index});
  const P = id => { const [x, d] = pos.get(id); return [pad + x * dx, pad + d * dy]; };
  for (const n of nodes) if (n.parent !== null && byId.has(n.parent)) {
    const [x1, y1] = P(n.parent), [x2, y2] = P(n.id);
    s.append(sv("line", {x1, y1, x2, y2, "class": "edge"}));
  }
  for (const n of nodes) {
    const [x, y] = P(n.id);
    const cls = "node" + (n.id === t.best ? " best" : "") + (n.role === "dummy" ? " dummy" : "");
    const g = sv("g", {"class": cls, "data-id": n.id, "data-tree": t.index, tabindex: 0},
      sv("circle", {cx: x, cy: y, r: 10, fill: qColour(n.q)}),
      sv("text", {x, y: y + 3}, n.id),
      sv("title", {}, n.role + " #" + n.id + " · answer " + n.answer + " · Q " + fmt(n.q) + " · N " + n.n));
    g.addEventListener("click", () => showNode(t, n, g));
    s.append(g);
  }
  const head = el("h3", {}, "Tree " + t.index + " · input " + t.input + " · T=" + t.temperature + " · answer " + (t.answer === null ? "none" : t.answer) + " · Q " + fmt(t.q) + (t.stopped !== "done" ? " · " + t.stopped : ""));
  const box = el("div", {"class": "tree", "data-tree": t.index}, head, s);
  if (t.hint || t.input !== "raw") box.append(el("details", {}, el("summary", {}, "the input this tree saw"), el("pre", {}, t.question + (t.hint ? "\n\n" + t.hint : ""))));
  return box;
}

function showNode(t, n, g) {
  document.querySelectorAll(".node.sel").forEach(x => x.classList.remove("sel"));
  g.classList.add("sel");
  const box = document.getElementById("node");
  box.replaceChildren(el("h3", {id: "node-title"}, "Tree " + t.index + ", node #" + n.id + " (" + n.role + (n.id === t.best ? ", returned by the tree" : "") + ")"));
  box.append(el("div", {}, "parent " + (n.parent === null ? "—" : "#" + n.parent) + " · rollout " + n.rollout + " · answer " + (n.answer === null ? "none" : n.answer) +
    " · Q " + fmt(n.q) + " · own Q " + fmt(n.q_own) + " · N " + n.n + " · tokens " + int(n.tokens) + " to make, " + int(n.eval_tokens) + " to score"));
  box.append(el("h3", {}, "Text"), el("pre", {id: "node-text"}, n.text));
  if (n.critique) box.append(el("h3", {}, "The critique it answers"), el("pre", {id: "node-critique"}, n.critique));
  box.append(el("h3", {}, "Reward samples (" + (n.rewards || []).length + ")"));
  const tab = el("table", {id: "node-rewards"}, el("tr", {}, el("th", {}, "score"), el("th", {}, "rollout"), el("th", {}, "the evaluator's text")));
  for (const r of n.rewards || []) tab.append(el("tr", {}, el("td", {}, r.score === null ? "unreadable" : fmt(r.score, 0)), el("td", {}, r.rollout), el("td", {}, el("pre", {}, r.text || "(no text kept)"))));
  box.append(tab);
}

// ---- a sweep: accuracy against tokens -------------------------------------------------------------
function sweepChart(S) {
  const sec = document.getElementById("sweep");
  sec.hidden = false;
  const W = 760, H = 420, m = {l: 60, r: 170, t: 14, b: 40};
  const all = S.cells.filter(c => c.accuracy !== null && (c.method || "forest") === "forest");
  const forest = all.filter(c => !c.inexact);
  const rough = all.filter(c => c.inexact);  // replayed approximately: drawn hollow and grey, on no line
  const base = Object.entries(S.baselines || {}).map(([k, cs]) => [k, cs.filter(c => c.accuracy !== null)]);
  const pts = all.concat(...base.map(b => b[1]));
  if (!pts.length) { sec.append(el("p", {}, "No cell has an accuracy.")); return; }
  const lx = pts.map(c => Math.log10(Math.max(1, c.tokens_mean)));
  const lo = Math.floor(Math.min(...lx) * 10) / 10 - 0.05, hi = Math.ceil(Math.max(...lx) * 10) / 10 + 0.05;
  const accs = pts.flatMap(c => c.ci95 ? c.ci95 : [c.accuracy]);
  const ylo = Math.max(0, Math.floor(Math.min(...accs) * 10) / 10), yhi = Math.min(1, Math.ceil(Math.max(...accs) * 10) / 10 || 1);
  const X = t => m.l + (W - m.l - m.r) * (Math.log10(Math.max(1, t)) - lo) / (hi - lo);
  const Y = a => H - m.b - (H - m.t - m.b) * (a - ylo) / ((yhi - ylo) || 1);
  const s = sv("svg", {width: W, height: H, id: "sweep-svg"});
  const xt = [];
  for (let e = Math.floor(lo); e <= Math.ceil(hi); e++) for (const k of [1, 2, 5]) { const v = k * Math.pow(10, e); const l = Math.log10(v); if (l >= lo && l <= hi) xt.push([v, int(v)]); }
  axes(s, X, Y, xt, ticks(ylo, yhi, 6).map(v => [v, pct(v)]), "mean tokens per problem (log scale)", "accuracy", W, H, m);
  const panel = document.getElementById("cell");
  const show = (c, label) => { panel.replaceChildren(el("b", {}, label), " · accuracy " + pct(c.accuracy) + (c.ci95 ? " [95% CI " + pct(c.ci95[0]) + " – " + pct(c.ci95[1]) + "]" : "") +
    " (" + c.correct + "/" + c.graded + ") · " + int(c.tokens_mean) + " tokens/problem · " + int(c.tokens_per_solved) + " tokens/solved"); };
  const legend = [];
  const treeCounts = [...new Set(forest.map(c => c.trees))].sort((a, b) => a - b);
  treeCounts.forEach((tc, k) => {
    const col = PALETTE[k % PALETTE.length];
    const row = forest.filter(c => c.trees === tc).sort((a, b) => a.tokens_mean - b.tokens_mean);
    s.append(sv("polyline", {points: row.map(c => X(c.tokens_mean) + "," + Y(c.accuracy)).join(" "), fill: "none", stroke: col, "stroke-width": 1.5}));
    for (const c of row) {
      if (c.ci95) s.append(sv("line", {x1: X(c.tokens_mean), x2: X(c.tokens_mean), y1: Y(c.ci95[0]), y2: Y(c.ci95[1]), stroke: col, "stroke-opacity": 0.4}));
      const label = c.trees + " tree" + (c.trees > 1 ? "s" : "") + " × " + c.rollouts + " rollouts";
      const dot = sv("circle", {cx: X(c.tokens_mean), cy: Y(c.accuracy), r: 5, fill: col, "class": "point cell", "data-label": c.trees + "x" + c.rollouts}, sv("title", {}, label + ": " + pct(c.accuracy) + " at " + int(c.tokens_mean) + " tokens"));
      dot.addEventListener("click", () => show(c, label));
      dot.addEventListener("mouseenter", () => show(c, label));
      s.append(dot);
    }
    legend.push([col, tc + " tree" + (tc > 1 ? "s" : ""), "solid"]);
  });
  for (const c of rough) {
    const label = c.trees + " tree" + (c.trees > 1 ? "s" : "") + " × " + c.rollouts + " rollouts, replayed approximately (" + c.inexact + " of " + c.problems + ")";
    const dot = sv("circle", {cx: X(c.tokens_mean), cy: Y(c.accuracy), r: 5, fill: "none", stroke: "#888", "pointer-events": "visible", "class": "point cell approx", "data-label": c.trees + "x" + c.rollouts}, sv("title", {}, label + ": ~" + pct(c.accuracy)));
    dot.addEventListener("click", () => show(c, label));
    dot.addEventListener("mouseenter", () => show(c, label));
    s.append(dot);
  }
  if (rough.length) legend.push(["#888", "replayed approximately (~)", "solid"]);
  // the frontier over every measured cell, baselines too (sweep.json's `frontier`); older files: `pareto`
  const labelled = new Map(forest.map(c => [c.trees + "x" + c.rollouts, c]));
  for (const [method, curve] of base) for (const c of curve) labelled.set(method + "@" + c.samples, c);
  const front = (S.frontier ? S.frontier.map(l => labelled.get(l)) : (S.pareto || []).map(([t, r]) => labelled.get(t + "x" + r))).filter(Boolean).sort((a, b) => a.tokens_mean - b.tokens_mean);
  if (front.length) {
    s.append(sv("polyline", {points: front.map(c => X(c.tokens_mean) + "," + Y(c.accuracy)).join(" "), fill: "none", stroke: "#000", "stroke-dasharray": "6 4", id: "pareto"}));
    for (const c of front) s.append(sv("circle", {cx: X(c.tokens_mean), cy: Y(c.accuracy), r: 10, fill: "none", stroke: "#000", "class": "pareto-ring"}));
    legend.push(["#000", "Pareto frontier", "6 4"]);
  }
  base.forEach(([method, curve], k) => {
    const col = PALETTE[(treeCounts.length + k) % PALETTE.length];
    s.append(sv("polyline", {points: curve.map(c => X(c.tokens_mean) + "," + Y(c.accuracy)).join(" "), fill: "none", stroke: col, "stroke-dasharray": "2 3", "stroke-width": 1.5}));
    for (const c of curve) {
      const label = method + " with " + c.samples + " samples";
      const sq = sv("rect", {x: X(c.tokens_mean) - 4, y: Y(c.accuracy) - 4, width: 8, height: 8, fill: col, "class": "point baseline", "data-label": method + "@" + c.samples}, sv("title", {}, label + ": " + pct(c.accuracy)));
      sq.addEventListener("click", () => show(c, label));
      sq.addEventListener("mouseenter", () => show(c, label));
      s.append(sq);
    }
    legend.push([col, method + " (baseline)", "2 3"]);
  });
  legend.forEach(([col, text, dash], k) => {
    const y = m.t + 10 + k * 18, x = W - m.r + 14;
    s.append(sv("line", {x1: x, x2: x + 24, y1: y, y2: y, stroke: col, "stroke-width": 2, "stroke-dasharray": dash === "solid" ? null : dash}));
    s.append(sv("text", {x: x + 30, y: y + 4, "font-size": 11}, text));
  });
  document.getElementById("chart").append(s);
  panel.append(el("span", {"class": "muted"}, "Point at a cell to read it."));
  if (!D.problems.length) document.getElementById("list").hidden = true;
}
if (D.sweep) sweepChart(D.sweep);

// ---- fot view --watch: the run as it goes -------------------------------------------------------------
function spark(track) {  // Q after each rollout of one tree
  const W = 160, H = 28, qs = track.map(s => s.q).filter(q => q !== null);
  const s = sv("svg", {width: W, height: H, "class": "spark"});
  if (track.length < 2 || !qs.length) return s;
  const X = k => 2 + (W - 4) * k / (track.length - 1), Y = q => H - 2 - (H - 4) * (q + 100) / 200;
  s.append(sv("polyline", {points: track.map((t, k) => t.q === null ? null : X(k) + "," + Y(t.q)).filter(Boolean).join(" "), fill: "none", stroke: "#1f5bff", "stroke-width": 1.5}));
  return s;
}
function renderLive(L, results) {
  const sec = document.getElementById("live");
  sec.hidden = false;
  if (!L) { sec.replaceChildren(el("h2", {}, "Live"), el("p", {"class": "muted", id: "live-counts"}, "waiting for the run to start (no live file yet)")); return; }
  const parts = [(L.finished ? "run finished" : "running"), L.done + " of " + L.total + " problems done"];
  if (L.graded) parts.push("accuracy " + pct(L.correct / L.graded) + " (" + L.correct + "/" + L.graded + ")");
  parts.push(int(L.calls) + " calls", int(L.tokens) + " tokens", fmt(L.elapsed_s) + " s", "method " + L.method);
  sec.replaceChildren(el("h2", {}, "Live"), el("div", {id: "live-counts"}, parts.join(" · ")));
  const written = new Set(D.problems.map(p => String(p.id)));  // the live file is up to a second behind the results
  for (const p of L.inflight.filter(p => !written.has(String(p.id)))) {
    const n = p.trees.length, lead = p.leading, counts = Object.values(p.votes);
    const tied = lead !== null && counts.filter(c => c === p.votes[lead]).length > 1;
    const state = lead === null ? "no answer yet" : tied ? "current decision: none leads yet (" + Object.entries(p.votes).map(([a, c]) => a + " ×" + c).join(", ") + ")"
      : "current decision: " + lead + " leads, " + p.votes[lead] + " of " + n + " trees (not decided yet)";
    const box = el("div", {"class": "panel live-problem", "data-id": p.id}, el("h3", {}, "In flight: " + p.id + " — " + state));
    const t = el("table", {}, el("tr", {}, ...["tree", "input", "rollouts", "best answer", "Q", "calls", "tokens", "best Q over rollouts"].map(h => el("th", {}, h))));
    for (const tr of p.trees) t.append(el("tr", {"class": "live-tree"}, el("td", {}, tr.tree), el("td", {}, tr.input), el("td", {}, tr.rollouts),
      el("td", {}, tr.answer === null ? "none" : tr.answer), el("td", {}, fmt(tr.q)), el("td", {}, int(tr.calls)), el("td", {}, int(tr.tokens)), el("td", {}, spark(tr.track))));
    box.append(t);
    sec.append(box);
  }
  if (L.recent && L.recent.length) {
    const t = el("table", {id: "live-recent"}, el("tr", {}, ...["just finished", "answer", "result", "decision", "tokens"].map(h => el("th", {}, h))));
    for (const r of L.recent) t.append(el("tr", {}, el("td", {}, r.id), el("td", {}, r.answer === null ? "none" : r.answer),
      el("td", {"class": r.correct === true ? "right" : r.correct === false ? "wrong" : ""}, r.correct === true ? "right" : r.correct === false ? "wrong" : "ungraded"), el("td", {}, r.decision), el("td", {}, int(r.tokens))));
    sec.append(t);
  }
  if (results > D.problems.length) {
    if (document.getElementById("detail").hidden) location.reload();
    else sec.append(el("p", {id: "live-new"}, (results - D.problems.length) + " new results: ", el("a", {href: "#", onclick: "location.reload()"}, "reload the page")));
  }
}
if (D.watch) {
  const poll = () => fetch("/live", {cache: "no-store"}).then(r => r.json()).then(x => renderLive(x.live, x.results)).catch(() => {});
  poll();
  setInterval(poll, 1000);
}
"""


if __name__ == "__main__":
    sys.exit(main())
