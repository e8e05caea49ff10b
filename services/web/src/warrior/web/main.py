"""`warrior-web` (and `warrior web`): serve the viewer against the stack the environment names.

Binds to 127.0.0.1 by default. A non-loopback address is refused unless a token is configured
(WARRIOR_GRPC_TOKEN / WARRIOR_GRPC_TOKEN_FILE, the experts' own) or --insecure-no-token says so.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
import threading
from collections.abc import Sequence

from warrior.common.redis_client import connect
from warrior.common.security import SecurityConfigError, TokenSource
from warrior.common.settings import Settings, SettingsError
from warrior.common.store import StoreConfigError, open_store

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
HOST_ENV = "WARRIOR_WEB_HOST"
PORT_ENV = "WARRIOR_WEB_PORT"


class BindRefused(ValueError):
    """A non-loopback address without a token (and without --insecure-no-token)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost: it may resolve anywhere


def check_bind(host: str, token: TokenSource | None, insecure: bool) -> None:
    if token is None and not insecure and not is_loopback(host):
        raise BindRefused(
            f"refusing to serve on {host} without a token: set WARRIOR_GRPC_TOKEN or WARRIOR_GRPC_TOKEN_FILE, "
            "bind to 127.0.0.1, or pass --insecure-no-token to serve every page to anyone who can reach it"
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=os.environ.get(HOST_ENV, DEFAULT_HOST),
                        help=f"address to bind (default {DEFAULT_HOST}, or ${HOST_ENV})")  # fmt: skip
    parser.add_argument("--port", type=int, default=int(os.environ.get(PORT_ENV, DEFAULT_PORT)),
                        help=f"port (default {DEFAULT_PORT}, or ${PORT_ENV})")  # fmt: skip
    parser.add_argument(
        "--insecure-no-token", action="store_true",
        help="allow a non-loopback address without a token (every page readable by anyone who reaches it)",
    )  # fmt: skip


def serve(host: str, port: int, *, insecure: bool = False) -> None:
    """Serve the viewer against the Redis and store of the environment (REDIS_URL, WARRIOR_STORE_URL, WARRIOR_HOME)."""
    import uvicorn

    from warrior.web.app import create_app
    from warrior.web.data import Viewer

    token = TokenSource.from_env()
    check_bind(host, token, insecure)
    settings = Settings.from_env()
    viewer = Viewer(connect(settings.redis_url), open_store(settings.store_url))
    app = create_app(viewer, token)
    # The newest campaigns' ratings snapshots are read in the background (about 0.6 s for 90,000 winners).
    threading.Thread(target=viewer.preload, name="warrior-web-preload", daemon=True).start()
    print(f"viewer on http://{host}:{port}/ ({'token required' if token else 'no token'})", file=sys.stderr)
    uvicorn.run(app, host=host, port=port, log_level="warning", proxy_headers=False)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="warrior-web", description="Serve the read-only web viewer.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        serve(args.host, args.port, insecure=args.insecure_no_token)
    except (BindRefused, SecurityConfigError, SettingsError, StoreConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
