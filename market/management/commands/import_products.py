"""`manage.py import_products <file.csv>`: upsert products by sku on the market jobs pool.

A thin shell over `market.imports.product_import` (the details are there and in
docs/import.md). Progress goes to stderr: a tqdm bar on a terminal, plain lines
otherwise; the summary goes to stdout.
"""

from __future__ import annotations

import os
import re
import sys
import time

from django.core.management.base import CommandError

from config.multidb.public import JobCommand
from market import imports

PLAIN_EVERY_S = 1.0  # plain progress lines: at most one a second, plus the last one
DEFAULT_NICE = 10  # parsing and validating is this process's CPU; the database's share is the server's


class Progress:
    """Renders `(phase, done, total)` reports: tqdm on a TTY, plain lines elsewhere, or nothing."""

    UNITS = {"validate": ("B", "validating"), "import": ("rows", "importing")}

    def __init__(self, stream, mode: str, phases=None):
        self.stream = stream
        self.phases = phases  # told "phase <name> started" when a phase starts (-v 2)
        self.mode = "bar" if mode == "auto" and _isatty(stream) else ("lines" if mode == "auto" else mode)
        self.phase: str | None = None
        self.bar = None
        self.started = self.last_line = 0.0
        self.last_done = 0

    def __call__(self, phase: str, done: int, total: int) -> None:
        if self.mode == "none":
            return
        if phase != self.phase:
            self.close()
            self.phase, self.started, self.last_line, self.last_done = phase, time.monotonic(), 0.0, 0
            if self.phases is not None:
                self.phases(f"phase {phase} started")
            if self.mode == "bar":
                from tqdm import tqdm

                unit, desc = self.UNITS.get(phase, ("it", phase))
                # A terminal that reports no size (a bare pty) still gets a bar: tqdm would draw nothing.
                sized = _terminal_sized(self.stream)
                self.bar = tqdm(
                    total=total,
                    unit=unit,
                    desc=desc,
                    file=self.stream,
                    dynamic_ncols=sized,
                    ncols=None if sized else 100,
                    nrows=None if sized else 24,
                    unit_scale=unit == "B",
                    unit_divisor=1024 if unit == "B" else 1000,
                    leave=True,
                )
        if self.bar is not None:
            self.bar.update(done - self.last_done)
            self.last_done = done
            return
        now = time.monotonic()
        if done < total and now - max(self.last_line, self.started) < PLAIN_EVERY_S:
            return
        if done == self.last_done and self.last_line:
            return  # already said
        self.last_line, self.last_done = now, done
        self.stream.write(plain_line(phase, done, total, now - self.started) + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def plain_line(phase: str, done: int, total: int, elapsed: float) -> str:
    """`12,000/1,000,000 rows (1.2%) 45,000 rows/s eta 21s` (bytes shown as MB for validation)."""
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = f"{(total - done) / rate:.0f}s" if rate > 0 else "?"
    pct = 100.0 * done / total if total else 100.0
    if phase == "validate":
        mb = 1024 * 1024
        return f"validating: {done / mb:,.1f}/{total / mb:,.1f} MB ({pct:.1f}%) {rate / mb:,.1f} MB/s eta {eta}"
    return f"importing: {done:,}/{total:,} rows ({pct:.1f}%) {rate:,.0f} rows/s eta {eta}"


def _log(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def _terminal_sized(stream) -> bool:
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return size.columns > 0 and size.lines > 0


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Command(JobCommand):
    help = (
        "Upsert products by sku from a CSV file with the columns sku,name,price_cents,stock, on the market "
        "jobs pool. A bad row stops it before anything is written; a rerun after a crash finishes the job."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="CSV file (UTF-8) with a header line naming sku,name,price_cents,stock")
        parser.add_argument(
            "--batch-size",
            type=int,
            default=imports.DEFAULT_BATCH_SIZE,
            help=f"rows per transaction (default {imports.DEFAULT_BATCH_SIZE:,})",
        )
        parser.add_argument(
            "--progress",
            choices=("auto", "bar", "lines", "none"),
            default="auto",
            help="auto: a bar when stderr is a terminal, plain lines otherwise",
        )
        parser.add_argument(
            "--nice",
            type=int,
            default=DEFAULT_NICE,
            metavar="N",
            help=f"lower the CPU priority of this process, and of its own database backend when the "
            f"server runs on this host, by N (default {DEFAULT_NICE}) so web workers and the "
            "backends serving them keep theirs; 0 leaves both",
        )

    def execute(self, *args, **options):
        # As early as a command can (Django's set-up is done by now, its system checks are not).
        nice = options.get("nice", DEFAULT_NICE)
        if isinstance(nice, int) and 0 < nice <= 19:
            os.nice(nice)
        return super().execute(*args, **options)

    def run(self, *args, file: str, batch_size: int, progress: str, nice: int, verbosity: int = 1, **options):
        if not 1 <= batch_size <= imports.MAX_BATCH_SIZE:
            raise CommandError(f"--batch-size must be between 1 and {imports.MAX_BATCH_SIZE:,}")
        if not 0 <= nice <= 19:
            raise CommandError("--nice must be between 0 and 19")
        log = _log if verbosity >= 2 else None
        if log and nice:
            log(f"lowered the CPU priority of this process (pid {os.getpid()}) by {nice}, to nice {os.nice(0)}")
        renderer = Progress(sys.stderr, progress, phases=log)
        try:
            result = imports.product_import(
                path=file, batch_size=batch_size, progress=renderer, backend_nice=nice, log=log
            )
        except (imports.ImportRejected, imports.ImportRefused) as exc:
            raise CommandError(f"{file}: {exc}" if isinstance(exc, imports.ImportRejected) else str(exc)) from None
        except imports.ImportInterrupted as exc:
            r = exc.result
            signum = re.search(r"(\d+)$", exc.reason)
            raise CommandError(
                f"import_products {exc.reason}: {r.batches} batches committed "
                f"({sum(r.batch_rows):,} of {r.rows:,} rows); run it again to finish",
                returncode=128 + int(signum.group(1)) if signum else 130,
            ) from None
        finally:
            renderer.close()
        total_s = result.validate_s + result.import_s
        rate = result.rows / total_s if total_s > 0 else 0.0
        batches = f"{result.batches} batch" + ("es" if result.batches != 1 else "")
        self.stdout.write(
            f"imported {result.rows:,} rows from {file} in {total_s:.1f}s ({rate:,.0f} rows/s): "
            f"{result.created:,} created, {result.updated:,} updated, {result.unchanged:,} unchanged "
            f"({batches}; validation {result.validate_s:.1f}s, writing {result.import_s:.1f}s)"
        )
