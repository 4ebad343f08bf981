"""`manage.py serve`: the web server (HTTP + websockets) under uvicorn, as `manage.py up` runs it.

uvicorn hands the request body to the app chunk by chunk as it arrives (with flow control), so
nasweb.middleware.RequestBodyLimit refuses an oversize upload at the first chunk past the limit;
daphne read the whole body into memory before the app saw any of it. The production line is the
same server without this command:

    uvicorn nasweb.asgi:application --host 0.0.0.0 --port 8000 --ws websockets --lifespan off \\
        --timeout-graceful-shutdown 2

`--fd` serves a socket that is already listening (inherited from `manage.py up`, which binds the
port itself so that it can say clearly when the port is taken, and keeps it across a restart of
this process).
"""

from __future__ import annotations

import socket

import uvicorn
from django.core.management.base import BaseCommand

from ..processes import die_with_parent

# Open websockets would otherwise hold a shutdown until their clients leave.
GRACEFUL_SHUTDOWN_S = 2


class Command(BaseCommand):
    help = "Serve NAS Studio's HTTP and websockets with uvicorn."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--fd", type=int, default=None, help="serve this listening socket instead")

    def handle(self, *args, host, port, fd, **options):
        die_with_parent()
        config = uvicorn.Config(
            "nasweb.asgi:application", host=host, port=port, ws="websockets", lifespan="off",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, log_config=None, access_log=False,
            server_header=False,
        )  # fmt: skip
        sockets = [socket.socket(fileno=fd)] if fd is not None else None
        uvicorn.Server(config).run(sockets=sockets)
