"""localstripe on one address, empty at every start.

The `localstripe` command binds `::` (every interface) and reloads the store it pickled to
/tmp on the previous run unless given --from-scratch. This runs the same aiohttp app bound to
the address given (127.0.0.1 by default), never reading or writing that pickle:

    python -m stack.localstripe_server --host 127.0.0.1 --port 8420
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from aiohttp import web


def build_app() -> web.Application:
    """localstripe's aiohttp application with an empty, memory-only store."""
    from localstripe import resources, server

    store: Any = resources.store
    store.clear()
    # localstripe pickles the whole store to a fixed /tmp path after every change; nothing
    # reads it back here, and other users' processes on the machine could.
    store.dump_to_disk = lambda: None
    app: web.Application = server.app
    return app


def main(argv: list[str] | None = None) -> None:
    """Command line: serve localstripe until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--quiet", action="store_true", help="no access log")
    args = parser.parse_args(argv)

    access_log: logging.Logger | None = None
    if not args.quiet:
        # localstripe also reports its webhook deliveries on this logger.
        access_log = logging.getLogger("aiohttp.access")
        access_log.setLevel(logging.INFO)
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access_log.addHandler(handler)
        access_log.propagate = False

    listening = f"localstripe listening on http://{args.host}:{args.port}"
    web.run_app(
        build_app(),
        host=args.host,
        port=args.port,
        access_log=access_log,
        print=lambda _: print(listening, flush=True),
    )


if __name__ == "__main__":
    main()
