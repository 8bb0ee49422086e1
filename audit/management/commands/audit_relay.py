"""Sweeper: delivers pending audit events from every domain outbox to the shared database."""

from __future__ import annotations

import logging
import signal
import threading

from django.core.management.base import CommandError
from django.db import connections

from audit import relay
from config.multidb.public import JobCommand

log = logging.getLogger("audit.relay")


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(text) from None
        if value <= 0:
            raise ValueError(text)
        return value

    parse.__name__ = kind.__name__
    return parse


class Command(JobCommand):
    help = (
        "Deliver pending audit events to the shared database (exactly once). "
        "--follow keeps sweeping until SIGTERM/SIGINT."
    )

    def add_arguments(self, parser):
        parser.add_argument("--follow", action="store_true", help="keep running; stop cleanly on SIGTERM/SIGINT")
        parser.add_argument(
            "--batch",
            type=_positive(int),
            default=relay.DEFAULT_BATCH_SIZE,
            help=f"events per transaction (default {relay.DEFAULT_BATCH_SIZE})",
        )
        parser.add_argument(
            "--interval",
            type=_positive(float),
            default=1.0,
            help="seconds between sweeps of an empty outbox with --follow (default 1)",
        )

    def run(self, *args, follow: bool, batch: int, interval: float, **options):
        if not follow:
            try:
                delivered = relay.relay_all(batch)
            except Exception as exc:
                raise CommandError(f"audit relay failed: {relay.describe(exc)}") from None
            finally:
                relay.update_gauges()
            self.stdout.write(f"delivered {delivered} audit event(s)")
            return
        self._follow(batch, interval)

    def _follow(self, batch: int, interval: float) -> None:
        stop = threading.Event()

        def request_stop(signum, frame):
            if stop.is_set():  # a second signal: stop now (a batch in flight rolls back)
                raise KeyboardInterrupt
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, request_stop)  # JobCommand restores the previous handlers
        delivered, backoff = 0, interval
        self.stderr.write(f"audit relay following every {interval:g}s (batch {batch}); SIGTERM/SIGINT stops it")
        while not stop.is_set():
            try:
                n = relay.relay_all(batch)
                delivered += n
                backoff = interval
            except Exception as exc:
                n = 0
                backoff = min(backoff * 2, 30.0)
                log.warning("audit relay sweep failed (%s); retrying in %.0f s", relay.describe(exc), backoff)
            finally:
                relay.update_gauges()
                # Back to the pools between sweeps: the next sweep checks out a
                # checked connection within seconds instead of finding a dead one.
                connections.close_all()
            if n == 0:
                stop.wait(backoff)
        self.stdout.write(f"delivered {delivered} audit event(s)")
