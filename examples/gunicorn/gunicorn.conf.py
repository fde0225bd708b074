"""gunicorn settings for the cowbuf example: load the app (and its shared array) once
in the master, then fork the workers.

    gunicorn -c gunicorn.conf.py app:application
"""

import os

bind = os.environ.get("COWBUF_EXAMPLE_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("COWBUF_EXAMPLE_WORKERS", "3"))
# The point: build the data before forking, so that every worker shares it.
preload_app = True
worker_class = "sync"
timeout = 120


def post_fork(server, worker):  # type: ignore[no-untyped-def]
    # Every worker inherits the master's registry, and with it the shared memory.
    import cowbuf

    server.log.info("worker %s shares %s", worker.pid, sorted(cowbuf.registry))
