"""The one place the process environment is read.

Every variable the project understands is declared here, with its type and
default. Anything that looks like one of ours but is not (a typo in a prefix or
a knob) stops the process with the closest correct name. Values never appear
in messages, so a password in a URL cannot leak through an error.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parents[3]  # the project root

env = environ.Env()


class ConfigError(ImproperlyConfigured):
    """Bad configuration: the message names the variable and never its value."""


def fail(message: str) -> None:
    """Stop the process now with a one-line message (no traceback, no values)."""
    sys.stderr.write(f"configuration error: {message}\n")
    raise SystemExit(2)


LOCAL_ENV = BASE_DIR / "var" / "local.env"


def _is_database_url(key: str) -> bool:
    return key.endswith("_DATABASE_URL") and "REPLICA" not in key and "DIRECT" not in key


def read_dotenv(path: Path | None = None, *, local: Path | None = LOCAL_ENV) -> None:
    """Load the configuration files; real environment variables win over `.env`, which wins over `local`.

    `.env` is the user's and no tool writes it. `var/local.env` is written by scripts/devdb.py for
    the project-local cluster; its database URLs count only when neither the environment nor
    `.env` names any database URL, so a setup never mixes the user's servers with the local one.
    """
    path = path or BASE_DIR / ".env"
    if path.is_file():
        environ.Env.read_env(str(path), overwrite=False)
    if local is None or not local.is_file():
        return
    users_urls = any(_is_database_url(key) and value.strip() for key, value in os.environ.items())
    for key, value in read_local_env(local).items():
        if not (users_urls and _is_database_url(key)):
            os.environ.setdefault(key, value)


def read_local_env(path: Path = LOCAL_ENV) -> dict[str, str]:
    """The `KEY=value` lines of the file scripts/devdb.py writes (no quoting: it writes none)."""
    if not path.is_file():
        return {}
    lines = (line.strip() for line in path.read_text().splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#") and "=" in line)


@dataclass(frozen=True)
class Var:
    name: str
    kind: str  # str, int, float, bool, url, list, choice
    default: Any = None
    required: bool = False
    choices: tuple[str, ...] = ()
    help: str = ""


_PARSERS: dict[str, Callable[[str], Any]] = {
    "str": str,
    "int": int,
    "float": float,
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def parse(var: Var, raw: str | None) -> Any:
    """Parse one raw value; raise ConfigError naming the variable on bad input."""
    if raw is None or raw.strip() == "":
        if var.required:
            raise ConfigError(f"{var.name} is required but not set ({var.help})")
        return var.default
    if var.kind == "bool":
        low = raw.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"{var.name} must be a boolean (true/false), got a value that is not")
    if var.kind == "list":
        return [item.strip() for item in raw.split(",") if item.strip()]
    if var.kind == "choice":
        value = raw.strip().lower()
        if value not in var.choices:
            raise ConfigError(f"{var.name} must be one of {', '.join(var.choices)}")
        return value
    if var.kind == "url":
        return raw.strip()
    try:
        value = _PARSERS[var.kind](raw.strip())
    except ValueError:
        article = "an" if var.kind == "int" else "a"
        noun = {"int": "integer", "float": "number (seconds)"}.get(var.kind, var.kind)
        raise ConfigError(f"{var.name} must be {article} {noun}, got a value that is not") from None
    if var.kind in ("int", "float") and value < 0:
        raise ConfigError(f"{var.name} must not be negative")
    return value


def check_spelling(known: set[str], environ_keys: list[str]) -> None:
    """Refuse variables that look like ours but are not: `BLGO_DATABASE_URL`."""
    for key in sorted(environ_keys):
        if key in known:
            continue
        looks_ours = "_DATABASE_" in key or key.startswith(("DJANGO_DEBUG", "DJANGO_SECRET", "DJANGO_ALLOWED"))
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.88)
        if not looks_ours and not close:
            continue
        if not close:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ConfigError(f"{key} is not a variable this project knows{hint}")
