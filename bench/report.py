"""From the raw rounds of bench/run.py to medians, targets, the JSON file,
docs/benchmarks.md and its chart. Ratios are taken inside a round (both
systems measured minutes apart on the same machine) and only then reduced to
a median, so a noisy neighbour skews one round, not the verdict."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

SYSTEM_NAMES = {
    "seed": "express-seed (node, pg Pool max 10)",
    "project": "project (gunicorn, production settings, pooled)",
    "project_django": "project, API_FAST_LANE=false (the same requests through Django's request path)",
    "project_nopool": "project, DATABASE_POOL_DISABLED=true (connect per request)",
    "bare": "bare WSGI + psycopg_pool (bench/bare_wsgi.py, same gunicorn settings)",
    "baseline": "another checkout (BENCH_BASELINE) served like `project`, from its own code",
    "baseline_django": "the same baseline checkout with API_FAST_LANE=false",
}
# A system of this checkout -> the same system served from the baseline checkout (BENCH_BASELINE).
BASELINE_OF = {"project": "baseline", "project_django": "baseline_django"}
SCENARIO_TITLES = {
    "get_user": "GET /api/users/<id> (random ids among the seeded users)",
    "transfer": "POST transfer (seed: /api/transfer; project: /api/market/transfers) on the same market_account rows",
    "mixed": "mixed read load: GET /api/blog/posts + GET /api/market/products/<sku>",
}

# (scenario, numerator system, denominator system, metric, operator, limit, label)
RATIO_TARGETS = [
    ("get_user", "project", "seed", "rps", ">=", 0.6, "GET by id: project rps / seed rps"),
    ("get_user", "project", "seed", "p99_ms", "<=", 2.0, "GET by id: project p99 / seed p99"),
    ("get_user", "project", "project_nopool", "rps", ">=", 7.0, "GET by id: pooled rps / connect-per-request rps"),
    ("get_user", "project", "bare", "rps", ">=", 0.8, "GET by id: project rps / bare WSGI rps"),
    ("transfer", "project", "seed", "rps", ">=", 0.5, "transfer: project rps / seed rps"),
]


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def _runs(results: dict, scenario: str) -> dict[int, dict[str, dict]]:
    """round number -> system -> run."""
    out: dict[int, dict[str, dict]] = {}
    for rnd in results["rounds"]:
        for run in rnd["runs"]:
            if run["scenario"] == scenario:
                out.setdefault(rnd["round"], {})[run["system"]] = run
    return out


def round_ratios(results: dict, scenario: str, num: str, den: str, metric: str) -> list[float]:
    ratios = []
    for by_system in _runs(results, scenario).values():
        a, b = by_system.get(num), by_system.get(den)
        if a and b and a.get(metric) is not None and b.get(metric):
            ratios.append(a[metric] / b[metric])
    return ratios


def _spread(values: list[float]) -> dict:
    return {
        "median": _median(values),
        "min": round(min(values), 3) if values else None,
        "max": round(max(values), 3) if values else None,
        "per_round": [round(v, 3) for v in values],
    }


def comparison(results: dict) -> list[dict]:
    """This checkout against the baseline checkout, per scenario and pair of systems: rps and
    server CPU per request, each a ratio taken inside a round (this / baseline), then the
    median, min and max over rounds; and each side's rps against the seed of the same rounds."""
    rows = []
    for scenario, seed in results["baselines"].items():
        for system, other in BASELINE_OF.items():
            rps = round_ratios(results, scenario, system, other, "rps")
            if not rps:
                continue
            rows.append(
                {
                    "scenario": scenario,
                    "system": system,
                    "baseline": other,
                    "rps_ratio": _spread(rps),
                    "cpu_ratio": _spread(round_ratios(results, scenario, system, other, "server_cpu_us_per_request")),
                    "rps_vs_seed": {
                        s: _median(round_ratios(results, scenario, s, seed, "rps")) for s in (system, other)
                    },
                }
            )
    return rows


def _ratio_cell(spread: dict) -> str:
    if spread["median"] is None:
        return "n/a"
    return f"{spread['median']:.3f} ({spread['min']:.3f}-{spread['max']:.3f})"


def short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def comparison_lines(results: dict) -> list[str]:
    """The console table of comparison(): empty without a baseline checkout."""
    rows, checkout = results.get("comparison") or [], results.get("baseline_checkout")
    if not checkout:
        return []
    if not rows:
        return ["no comparison with the baseline: neither get_user nor transfer was measured"]
    width = max(len(f"{r['system']} / {r['baseline']}") for r in rows)
    lines = [
        f"this checkout / baseline {checkout['commit']} {short(checkout['subject'])}".rstrip(),
        "  ratios inside each round, median (min-max) over rounds; rps > 1 and CPU/req < 1: this checkout is ahead",
        f"  {'scenario':<9} {'systems':<{width}}  {'rps ratio':<21} {'server CPU/req ratio':<21} rps vs seed",
    ]
    for r in rows:
        vs_seed = ", ".join(f"{s} {_fmt(v, 3)}" for s, v in r["rps_vs_seed"].items())
        lines.append(
            f"  {r['scenario']:<9} {r['system'] + ' / ' + r['baseline']:<{width}}  "
            f"{_ratio_cell(r['rps_ratio']):<21} {_ratio_cell(r['cpu_ratio']):<21} {vs_seed}"
        )
    return lines


def summarize(results: dict) -> dict:
    summary: dict = {}
    for scenario, baseline in results["baselines"].items():
        rounds = _runs(results, scenario)
        if not rounds:
            continue
        systems: dict[str, dict] = {}
        names = [s for s in SYSTEM_NAMES if any(s in r for r in rounds.values())]
        for system in names:
            runs = [r[system] for r in rounds.values() if system in r]
            rps = [r["rps"] for r in runs]
            entry = {
                "rps_median": _median(rps),
                "rps_min": min(rps),
                "rps_max": max(rps),
                "p50_ms_median": _median([r["p50_ms"] for r in runs]),
                "p99_ms_median": _median([r["p99_ms"] for r in runs]),
                "cpu_us_median": _median(
                    [r["server_cpu_us_per_request"] for r in runs if r.get("server_cpu_us_per_request") is not None]
                ),
                "requests": sum(r["requests"] for r in runs),
                "non2xx": sum(r["non2xx"] for r in runs),
                "socket_errors": sum(r["socket_errors"] for r in runs),
                "peak_connections": max(r["peak_connections"]["total"] for r in runs),
            }
            if system != baseline:
                entry["rps_ratio"] = _median(round_ratios(results, scenario, system, baseline, "rps"))
                entry["p99_ratio"] = _median(round_ratios(results, scenario, system, baseline, "p99_ms"))
            systems[system] = entry
        summary[scenario] = {"baseline": baseline, "systems": systems}
    return summary


def _check(value: float | None, op: str, limit: float) -> bool | None:
    if value is None:
        return None
    return value >= limit if op == ">=" else value <= limit


def targets(results: dict) -> list[dict]:
    out = []
    for scenario, num, den, metric, op, limit, label in RATIO_TARGETS:
        ratios = round_ratios(results, scenario, num, den, metric)
        value = _median(ratios)
        out.append(
            {
                "name": label,
                "value": value,
                "op": op,
                "limit": limit,
                "ok": _check(value, op, limit),
                "per_round": [round(r, 3) for r in ratios],
                "why_missing": results["skipped"].get(scenario) if value is None else None,
            }
        )

    mixed = _runs(results, "mixed")
    budget = results["budget"]
    if mixed:
        peaks: dict[str, int] = {}
        total = 0
        for by_system in mixed.values():
            peak = by_system["project"]["peak_connections"]
            total = max(total, peak["total"])
            for db, n in peak["by_database"].items():
                peaks[db] = max(peaks.get(db, 0), n)
        ok = total <= budget["total"] and all(n <= budget["by_database"].get(db, 0) for db, n in peaks.items())
        out.append(
            {
                "name": "mixed load: peak server connections <= budget",
                "value": total,
                "op": "<=",
                "limit": budget["total"],
                "ok": ok,
                "by_database": peaks,
                "budget_by_database": budget["by_database"],
                "budget_source": budget["source"],
            }
        )
    else:
        out.append(
            {
                "name": "mixed load: peak server connections <= budget",
                "value": None,
                "op": "<=",
                "limit": budget["total"],
                "ok": None,
                "why_missing": results["skipped"].get("mixed"),
            }
        )

    all_runs = [run for rnd in results["rounds"] for run in rnd["runs"]]
    bad = sum(r["non2xx"] for r in all_runs)
    out.append(
        {
            "name": "non-2xx answers, all runs",
            "value": bad,
            "op": "<=",
            "limit": 0,
            "ok": bad == 0,
            "socket_errors": sum(r["socket_errors"] for r in all_runs),
        }
    )
    return out


def budget_from_dbbudget(data: dict, alias_db: dict[str, str]) -> dict[str, int]:
    """Web connections per database out of `dbbudget --json` (servers[].rows[]:
    alias, role, per_process, processes, total). The sampler counts `web:*`
    connections, so jobs rows (other processes) are left out here."""
    found: dict[str, int] = {}
    for server in data.get("servers", []):
        for row in server.get("rows", []):
            db = alias_db.get(row.get("alias"))
            if db and row.get("role") == "web" and isinstance(row.get("total"), int):
                found[db] = found.get(db, 0) + row["total"]
    return found


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def target_lines(results: dict) -> list[str]:
    lines = []
    for t in results["targets"]:
        mark = {True: "PASS", False: "MISS", None: "not measured"}[t["ok"]]
        lines.append(f"{mark:<12} {t['name']}: {_fmt(t['value'])} (target {t['op']} {t['limit']})")
    return lines


def chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = results["summary"]
    scenarios = [s for s in ("get_user", "transfer") if s in summary]
    if not scenarios:
        return
    fig, axes = plt.subplots(len(scenarios), 2, figsize=(10, 4.2 * len(scenarios)), squeeze=False)
    colors = {
        "seed": "#888888",
        "project": "#2a7ab9",
        "project_nopool": "#d9822b",
        "bare": "#3a9e5a",
        "baseline": "#9cc3e4",
        "baseline_django": "#c9dff0",
    }
    panels = [
        (ax, scenario, metric) for row, scenario in zip(axes, scenarios) for ax, metric in zip(row, ("rps", "p99_ms"))
    ]
    for ax, scenario, metric in panels:
        systems = summary[scenario]["systems"]
        names = list(systems)
        if metric == "rps":
            values = [systems[n]["rps_median"] for n in names]
            lower = [v - systems[n]["rps_min"] for n, v in zip(names, values)]
            upper = [systems[n]["rps_max"] - v for n, v in zip(names, values)]
            ax.bar(names, values, yerr=[lower, upper], capsize=4, color=[colors.get(n, "#555") for n in names])
            ax.set_ylabel("requests/s (median, min-max over rounds)")
        else:
            values = [systems[n]["p99_ms_median"] for n in names]
            ax.bar(names, values, color=[colors.get(n, "#555") for n in names])
            ax.set_ylabel("p99 latency, ms (median over rounds)")
        ax.set_title(f"{scenario}: {'throughput' if metric == 'rps' else 'p99'}", fontsize=10)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        for i, v in enumerate(values):
            ax.annotate(_fmt(v, 0 if metric == "rps" else 1), (i, v), ha="center", va="bottom", fontsize=8)
    s = results["settings"]
    fig.suptitle(
        f"make bench, {results['date'][:10]}: {s['rounds']} rounds x {s['duration_s']} s, "
        f"wrk {s['wrk_threads']} thread / {s['wrk_connections']} connections",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(results: dict, chart_name: str | None) -> str:
    s, m = results["settings"], results["machine"]
    checkout = results.get("baseline_checkout")
    out = ["# Benchmarks", ""]
    if not results["full_run"]:
        out += [
            "> **Smoke run** (shorter or fewer rounds than the default): the numbers below only show that",
            "> the harness works. Run `make bench` on a quiet machine for figures worth quoting.",
            "",
        ]
    out += [
        "The project side by side with the system it started from (express-seed, `BENCH_SEED_DIR`, default",
        "`../shared/anchors/express-seed` beside the project),",
        "its own connect-per-request mode and a bare WSGI app, on the same machine, the same PostgreSQL",
        "cluster and the same rows, in one run. Generated by `bench/run.py`; edit that, not this file.",
        "",
        "## How to run",
        "",
        "```",
        "make bench                                   # the default run: about 5 minutes",
        "BENCH_DURATION=3 BENCH_ROUNDS=1 make bench   # a smoke run; does not rewrite this page",
        "```",
        "",
        "`make bench` creates fresh databases `bench_shared`, `bench_blog`, `bench_market` on the server the",
        "project's URLs point at, runs `migrate_all`, seeds 10,000 users (bulk insert), then accounts, products",
        "and posts through the project's own API; starts every server on a free port; measures; writes",
        "`bench/results/<date>.json` (every round and system: rps, p50, p99, non-2xx) and this page; stops",
        "every process it started, also on Ctrl-C. Other knobs: `BENCH_CONNECTIONS` (16), `BENCH_WRK_THREADS`",
        "(1), `BENCH_WARMUP` (3 s), `BENCH_USERS` (10000), `BENCH_REUSE_DB=true` (keep an already seeded set),",
        "`BENCH_WRITE_DOCS=true` (let a smoke run rewrite this page). The exit status is 1 when a target is missed.",
        "`make bench BASELINE=<git rev or path>` measures another checkout in the same rounds (bench/run.py).",
        "",
        "## Method",
        "",
        "- Systems: "
        + "; ".join(f"`{k}` = {v}" for k, v in SYSTEM_NAMES.items() if k not in BASELINE_OF.values() or checkout)
        + ".",
        f"- Every round measures every system of a scenario for {s['duration_s']} s, one after the other, the",
        "  order rotated each round; each ratio is taken against the baseline of the same round and the",
        "  reported ratio is the median over rounds. A warm-up run per system precedes the rounds.",
        f"- wrk {s['wrk_threads']} thread, {s['wrk_connections']} connections, keep-alive; `bench/load.lua` picks",
        "  random ids / SKUs / account pairs and counts every answer outside 2xx (`response()`, printed in",
        "  `done()`). Transfers move 1 cent from the lower to the higher account id (one lock order, so the",
        "  seed cannot deadlock) with a unique `Idempotency-Key` per request and a token of a staff user.",
        f"- Python servers: gunicorn gthread, {s['web_concurrency']} workers x {s['web_threads']} threads",
        "  (`WEB_CONCURRENCY`/`WEB_THREADS`), pools of at most "
        + ", ".join(f"{p} {n}" for p, n in s["pool_max_size"].items())
        + " connections per process",
        "  (`<P>_DATABASE_POOL_MAX_SIZE`);",
        "  `DJANGO_DEBUG=false`. The seed: one node process per database (users on the shared one, accounts",
        "  on the market one), node-postgres `Pool` max 10.",
        "- Server CPU µs/req: user + system CPU of the server's processes (master and workers) during the",
        "  run, divided by the requests answered. It moves much less than rps when other work shares the",
        "  machine, and it is where Python's cost shows (PostgreSQL's and wrk's CPU are not in it).",
        "- Peak connections: `pg_stat_activity` sampled every 100 ms from a separate thread, client backends",
        "  of the bench databases whose `application_name` is `web:*` (the project's web pools) and whose",
        "  `client_port` belongs to the measured server's processes (several servers share the label),",
        "  during the mixed load; compared with the budget of `manage.py dbbudget --json` (see below). The",
        "  `peak conns` column of the other scenarios counts the same way per system (`bench:seed`,",
        "  `bench:bare` for the others).",
        "",
        "## Results",
        "",
        f"Run of {results['date']} (`{results['command']}`), {s['rounds']} round(s) x {s['duration_s']} s,",
        f"{s['users']:,} users, {s['accounts']} accounts, {s['products']} products, {s['posts']} posts;",
        f"finished in {results.get('elapsed_s', 0):.0f} s. Raw numbers: `bench/results/{results['file']}`.",
        "",
    ]
    if chart_name:
        out += [f"![throughput and p99 per system]({chart_name})", ""]
    out += ["### Targets", "", "| target | measured | goal | per round | verdict |", "|---|---|---|---|---|"]
    for t in results["targets"]:
        verdict = {True: "met", False: "**missed**", None: "not measured"}[t["ok"]]
        per_round = ", ".join(_fmt(x) for x in t.get("per_round", [])) or "-"
        if t["ok"] is None and t.get("why_missing"):
            verdict += f" ({t['why_missing']})"
        out.append(f"| {t['name']} | {_fmt(t['value'])} | {t['op']} {t['limit']} | {per_round} | {verdict} |")
    out.append("")
    for scenario, block in results["summary"].items():
        out += [
            f"### {SCENARIO_TITLES[scenario]}",
            "",
            f"Baseline of the ratios: `{block['baseline']}`.",
            "",
            "| system | rps (median) | rps min-max | p50 ms | p99 ms | rps ratio | p99 ratio | server CPU µs/req "
            "| non-2xx | socket errors | peak conns |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, e in block["systems"].items():
            out.append(
                f"| `{name}` | {_fmt(e['rps_median'], 0)} | {_fmt(e['rps_min'], 0)}-{_fmt(e['rps_max'], 0)} | "
                f"{_fmt(e['p50_ms_median'])} | {_fmt(e['p99_ms_median'])} | {_fmt(e.get('rps_ratio'))} | "
                f"{_fmt(e.get('p99_ratio'))} | {_fmt(e.get('cpu_us_median'), 0)} | {e['non2xx']} | "
                f"{e['socket_errors']} | {e['peak_connections']} |"
            )
        out.append("")
    if checkout and results.get("comparison"):
        out += [
            f"### This checkout against the baseline `{checkout['commit']}` ({checkout['spec']})",
            "",
            "Ratios this / baseline taken inside each round, median (min-max) over rounds; rps above 1 and",
            "server CPU per request below 1 mean this checkout is ahead.",
            "",
            "| scenario | systems | rps ratio | server CPU µs/req ratio | rps vs seed (this, baseline) |",
            "|---|---|---|---|---|",
        ]
        for r in results["comparison"]:
            vs_seed = ", ".join(_fmt(v, 3) for v in r["rps_vs_seed"].values())
            out.append(
                f"| {r['scenario']} | `{r['system']}` / `{r['baseline']}` | {_ratio_cell(r['rps_ratio'])} | "
                f"{_ratio_cell(r['cpu_ratio'])} | {vs_seed} |"
            )
        out.append("")
    b = results["budget"]
    out += [
        "### Connection budget",
        "",
        f"Source: {b['source']}.",
        "",
        "| database | budget | peak during the mixed load |",
        "|---|---|---|",
    ]
    peaks = next((t.get("by_database", {}) for t in results["targets"] if t["name"].startswith("mixed")), {})
    for db, n in b["by_database"].items():
        out.append(f"| `{db}` | {n} | {peaks.get(db, 'n/a')} |")
    out.append("")
    if results["skipped"]:
        out += ["### Not measured in this run", ""]
        out += [f"- `{k}`: {v}" for k, v in results["skipped"].items()]
        out.append("")
    out += [
        "## Machine",
        "",
        f"- {m.get('cpu', '?')}, {m.get('cpus')} CPUs, {m.get('memory_gb', '?')} GB, Linux {m.get('kernel')}",
        f"- load average at start {m.get('loadavg_start')}, at end {m.get('loadavg_end')} (other work on the",
        "  machine shows up here; only the ratios are meant to travel)",
        f"- PostgreSQL {m.get('postgresql')} (max_connections {m.get('max_connections')}), Python {m.get('python')},"
        f" Django {m.get('django')}, psycopg {m.get('psycopg')}, psycopg_pool {m.get('psycopg_pool')},"
        f" gunicorn {m.get('gunicorn')}, node {m.get('node')}, {m.get('wrk')}",
        f"- git commit {m.get('git_commit', '?')}",
        "",
        "## Reading the numbers",
        "",
        "- Client, servers and PostgreSQL share the same cores, so absolute figures move with anything else",
        "  running; the ratios inside a round are what the targets use.",
        "- gthread workers with keep-alive clients could let one worker take most of wrk's connections,",
        "  halving throughput for that run (FACTS.md); `worker_connections` = threads x 1.5 in both",
        "  gunicorn configurations bounds that (bench/profile.md).",
        "- `project` answers `GET /api/users/<id>` and transfers through the fast lane (config/httpkit/fastlane.py);",
        "  `project_django` is the same server with `API_FAST_LANE=false`, so the gap between the two is",
        "  what Django's request path costs on these endpoints.",
        "- Where the time of a Django request goes, and what could be cut: `bench/profile.md`.",
        "",
    ]
    return "\n".join(out)


def result_name(results: dict) -> str:
    """<day>.json for a full run, <day>-vs-<commit>.json for a comparison of at least the default
    length (any scenarios); `-smoke` before .json otherwise (git ignores those)."""
    day, s = results["date"][:10], results["settings"]
    checkout = results.get("baseline_checkout")
    if checkout:
        long_enough = s["duration_s"] >= 10 and s["rounds"] >= 3
        return f"{day}-vs-{checkout['commit']}{'' if long_enough else '-smoke'}.json"
    return f"{day}.json" if results["full_run"] else f"{day}-smoke.json"


def write(results: dict, *, root: Path, write_docs: bool) -> list[Path]:
    name = result_name(results)
    results["file"] = name
    out_dir = root / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / name]
    paths[0].write_text(json.dumps(results, indent=2) + "\n")
    if write_docs:
        docs = root / "docs"
        docs.mkdir(exist_ok=True)
        png = docs / "benchmarks.png"
        chart(results, png)
        md = docs / "benchmarks.md"
        md.write_text(markdown(results, png.name if png.exists() else None))
        paths += [md, png] if png.exists() else [md]
    return paths


if __name__ == "__main__":
    # Re-render docs/benchmarks.md and the chart from a results file, without measuring again:
    #   .venv/bin/python bench/report.py bench/results/<date>.json
    import sys

    root = Path(__file__).resolve().parent.parent
    saved = json.loads(Path(sys.argv[1]).read_text())
    saved["summary"], saved["targets"], saved["comparison"] = summarize(saved), targets(saved), comparison(saved)
    docs = root / "docs"
    chart(saved, docs / "benchmarks.png")
    (docs / "benchmarks.md").write_text(markdown(saved, "benchmarks.png"))
    print("\n".join(target_lines(saved)))
