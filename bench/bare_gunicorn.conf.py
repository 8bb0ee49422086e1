"""gunicorn settings for bench/bare_wsgi.py: the project's worker model and
sizes (run.py passes WEB_CONCURRENCY / WEB_THREADS / PORT), nothing else."""

import os

wsgi_app = "bench.bare_wsgi:application"
bind = f"127.0.0.1:{os.environ['PORT']}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
worker_class = "gthread"
keepalive = 5
worker_connections = threads + max(threads // 2, 1)  # as config/gunicorn.conf.py
control_socket_disable = True
accesslog = None
errorlog = "-"
loglevel = "warning"


def worker_exit(server, worker):
    from bench.bare_wsgi import close

    close()
