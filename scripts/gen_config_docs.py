#!/usr/bin/env python3
"""Write `.env.example` and the README's configuration table from config/multidb/conf/databases.py.

The variables are declared once (with type, default and help); the docs are
generated so they cannot drift. `--check` exits 1 when either file is stale
(a test runs it).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config.multidb.conf.databases import GLOBAL_VARS, Var, domain_vars  # noqa: E402
from config.topology import TOPOLOGY  # noqa: E402

START, END = "<!-- config-table:start -->", "<!-- config-table:end -->"
EXAMPLE_VALUES = {
    "DJANGO_SECRET_KEY": "change-me-to-a-long-random-string",
    "APP_ROLE": None,  # set by gunicorn.conf.py; commands default to cli
}


def _default(v: Var) -> str:
    if v.required:
        return "required"
    if v.default in (None, "", []):
        return ""
    if isinstance(v.default, bool):
        return "true" if v.default else "false"
    if isinstance(v.default, list):
        return ",".join(v.default)
    return str(v.default)


def _kind(v: Var) -> str:
    return " / ".join(v.choices) if v.kind == "choice" else v.kind


def table() -> str:
    rows = ["| variable | type | default | meaning |", "|---|---|---|---|"]
    rows += [f"| `{v.name}` | {_kind(v)} | {_default(v)} | {v.help} |" for v in domain_vars("<P>")]
    rows += [f"| `{v.name}` | {_kind(v)} | {_default(v)} | {v.help} |" for v in GLOBAL_VARS]
    return "\n".join(rows)


def env_example() -> str:
    out = [
        "# Every variable the project reads, with its default. Copy to .env and adjust;",
        "# real environment variables win over .env. A misspelt name stops every entry point.",
        "# `make run` / `make test` write a .env for a project-local cluster when there is none.",
        "",
    ]
    for domain in TOPOLOGY:
        out.append(f"# --- database `{domain.alias}` (apps: {', '.join(domain.apps)}) ---")
        for v in domain_vars(domain.prefix):
            out.append(f"# {v.help} ({_kind(v)})")
            value = (
                f"postgres://postgres@127.0.0.1:5432/platform_{domain.prefix.lower()}"
                if v.name.endswith("_DATABASE_URL") and v.required
                else _default(v)
            )
            out.append(f"{v.name}={value}" if value else f"# {v.name}=")
        out.append("")
    out.append("# --- jobs pools, breaker, Django, web server ---")
    for v in GLOBAL_VARS:
        out.append(f"# {v.help} ({_kind(v)})" if v.help else f"# ({_kind(v)})")
        value = EXAMPLE_VALUES.get(v.name, _default(v))
        out.append(f"{v.name}={value}" if value else f"# {v.name}=")
    out += [
        "",
        "# --- traces: off unless the standard OpenTelemetry variables ask (README, Traces) ---",
        "# OTEL_TRACES_EXPORTER=otlp (or console; none = off), OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318,",
        "# OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, OTEL_SDK_DISABLED=true: read by the SDK",
    ]
    return "\n".join(out) + "\n"


def main(check: bool) -> int:
    stale = []
    example = ROOT / ".env.example"
    current = example.read_text() if example.exists() else ""
    if current != env_example():
        stale.append(example)
        if not check:
            example.write_text(env_example())
    readme = ROOT / "README.md"
    text = readme.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    new = f"{head}{START}\n{table()}\n{END}{tail}"
    if new != text:
        stale.append(readme)
        if not check:
            readme.write_text(new)
    if check and stale:
        print("stale: " + ", ".join(p.name for p in stale) + " (run: python scripts/gen_config_docs.py)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv))
