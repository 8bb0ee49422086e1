"""Long admin jobs: a base command that runs on the jobs pools and always closes them."""

from __future__ import annotations

import signal

from django.core.management.base import BaseCommand

from config.multidb.lifecycle import close_all_pools, run_job_exit_hooks
from config.multidb.router import connected_to


class JobCommand(BaseCommand):
    """Subclasses implement `run(*args, **options)`; every query inside goes to `<alias>_jobs`.

    On exit, on error and on SIGINT/SIGTERM the pools are closed, so the job
    leaves no connection and no open transaction behind.
    """

    def handle(self, *args, **options):
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def stop(signum, frame):
            raise KeyboardInterrupt(f"stopped by signal {signum}")

        for sig in previous:
            signal.signal(sig, stop)
        try:
            with connected_to("jobs"):
                return self.run(*args, **options)
        finally:
            # The apps' hooks run before the pools close (audit: the job's events go out, a
            # bounded wait; the sweeper delivers anything left if the shared database is down).
            run_job_exit_hooks()
            close_all_pools()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def run(self, *args, **options):  # pragma: no cover - abstract
        raise NotImplementedError
