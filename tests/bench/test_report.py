"""bench/report.py: the comparison of this checkout with a baseline checkout (BENCH_BASELINE),
on results shaped like bench/run.py's."""

from __future__ import annotations

from bench import report

CHECKOUT = {
    "spec": "HEAD~3",
    "path": "/tmp/base",
    "temporary_worktree": True,
    "commit": "e4fd240",
    "subject": "gunicorn: its error log in JSON",
    "uncommitted_changes": False,
}


def run(scenario: str, system: str, rps: float, cpu: int | None = 500) -> dict:
    return {
        "scenario": scenario,
        "system": system,
        "requests": int(rps * 10),
        "seconds": 10.0,
        "rps": rps,
        "p50_ms": 5.0,
        "p90_ms": 8.0,
        "p99_ms": 20.0,
        "max_ms": 40.0,
        "non2xx": 0,
        "socket_errors": 0,
        "bad_sample": None,
        "server_cpu_us_per_request": cpu,
        "peak_connections": {"total": 4, "by_database": {"bench_shared": 4}},
    }


def results(rounds: list[list[dict]], checkout: dict | None = CHECKOUT, duration: int = 10) -> dict:
    out = {
        "date": "2026-12-03T10:00:00+00:00",
        "command": "make bench",
        "full_run": False,
        "machine": {},
        "settings": {
            "duration_s": duration,
            "rounds": len(rounds),
            "warmup_s": 3,
            "wrk_connections": 16,
            "wrk_threads": 1,
            "users": 10000,
            "accounts": 500,
            "products": 200,
            "posts": 60,
            "web_concurrency": 2,
            "web_threads": 4,
            "pool_max_size": {"SHARED": 4},
        },
        "baselines": {"get_user": "seed", "transfer": "seed", "mixed": "project"},
        "skipped": {},
        "budget": {"source": "test", "by_database": {"bench_shared": 8}, "total": 8},
        "baseline_checkout": checkout,
        "rounds": [{"round": i + 1, "runs": runs} for i, runs in enumerate(rounds)],
    }
    out["summary"] = report.summarize(out)
    out["targets"] = report.targets(out)
    out["comparison"] = report.comparison(out)
    out["file"] = report.result_name(out)
    return out


def three_rounds() -> list[list[dict]]:
    # project / baseline rps: 1.25, 0.9, 1.1; CPU per request: 0.8, (none: no requests), 1.2
    return [
        [run("get_user", "seed", 200), run("get_user", "project", 100, 400), run("get_user", "baseline", 80, 500)],
        [run("get_user", "seed", 200), run("get_user", "project", 90, None), run("get_user", "baseline", 100, 500)],
        [run("get_user", "baseline", 100, 500), run("get_user", "project", 110, 600), run("get_user", "seed", 100)],
    ]


def test_comparison_is_the_median_of_ratios_taken_inside_each_round():
    (row,) = report.comparison(results(three_rounds()))
    assert (row["scenario"], row["system"], row["baseline"]) == ("get_user", "project", "baseline")
    assert row["rps_ratio"] == {"median": 1.1, "min": 0.9, "max": 1.25, "per_round": [1.25, 0.9, 1.1]}
    # a round without a CPU figure on one side drops out of the CPU ratio, not of the rps one
    assert row["cpu_ratio"] == {"median": 1.0, "min": 0.8, "max": 1.2, "per_round": [0.8, 1.2]}
    # each side against the seed of its own round: project 0.5, 0.45, 1.1; baseline 0.4, 0.5, 1.0
    assert row["rps_vs_seed"] == {"project": 0.5, "baseline": 0.5}


def test_the_ratio_of_medians_is_not_what_is_reported():
    # Round 2 is slow for both systems (a noisy neighbour): per-round ratios ignore it, medians of rps do not.
    rounds = [
        [run("transfer", "project", 100), run("transfer", "baseline", 100)],
        [run("transfer", "project", 50), run("transfer", "baseline", 40)],
        [run("transfer", "project", 99), run("transfer", "baseline", 101)],
    ]
    (row,) = report.comparison(results(rounds))
    assert row["rps_ratio"]["median"] == 1.0
    assert row["rps_ratio"]["max"] == 1.25
    assert row["rps_vs_seed"] == {"project": None, "baseline": None}  # no seed measured


def test_each_pair_and_scenario_gets_its_own_row():
    rounds = [
        [
            run("get_user", "project", 100),
            run("get_user", "baseline", 50),
            run("get_user", "project_django", 60),
            run("get_user", "baseline_django", 60),
            run("transfer", "project_django", 30),
            run("transfer", "baseline_django", 20),
        ]
    ]
    rows = report.comparison(results(rounds))
    assert [(r["scenario"], r["system"], r["rps_ratio"]["median"]) for r in rows] == [
        ("get_user", "project", 2.0),
        ("get_user", "project_django", 1.0),
        ("transfer", "project_django", 1.5),
    ]


def test_without_a_baseline_there_is_no_comparison_and_the_page_does_not_mention_one():
    rounds = [[run("get_user", "seed", 200), run("get_user", "project", 100)]]
    res = results(rounds, checkout=None)
    assert res["comparison"] == []
    assert report.comparison_lines(res) == []
    page = report.markdown(res, None)
    assert "baseline_django" not in page and "This checkout against the baseline" not in page
    assert report.result_name(res) == "2026-12-03-smoke.json"


def test_the_console_table_and_the_page_show_the_comparison():
    res = results(three_rounds())
    lines = report.comparison_lines(res)
    assert lines[0] == "this checkout / baseline e4fd240 gunicorn: its error log in JSON"
    row = next(line for line in lines if "project / baseline" in line)
    assert "1.100 (0.900-1.250)" in row and "1.000 (0.800-1.200)" in row and "project 0.500" in row
    page = report.markdown(res, None)
    assert "### This checkout against the baseline `e4fd240` (HEAD~3)" in page
    assert "| get_user | `project` / `baseline` | 1.100 (0.900-1.250) | 1.000 (0.800-1.200) | 0.500, 0.500 |" in page
    # the baseline is a system of the summary like the others, its ratio taken against the seed
    assert res["summary"]["get_user"]["systems"]["baseline"]["rps_ratio"] == 0.5


def test_comparison_results_are_named_after_the_baseline_commit():
    assert report.result_name(results(three_rounds())) == "2026-12-03-vs-e4fd240.json"
    short = results(three_rounds(), duration=2)
    assert report.result_name(short) == "2026-12-03-vs-e4fd240-smoke.json"


def test_a_baseline_run_without_a_compared_scenario_says_so():
    res = results([[run("mixed", "project", 100)]])
    assert res["comparison"] == []
    assert report.comparison_lines(res) == [
        "no comparison with the baseline: neither get_user nor transfer was measured"
    ]
