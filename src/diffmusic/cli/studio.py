"""``diffmusic studio``: serve the studio (:mod:`diffmusic.studio`) with uvicorn."""

from __future__ import annotations

import argparse
import fcntl
import ipaddress
import os
import socket
import sys
from pathlib import Path
from urllib.parse import quote

from diffmusic.cli.errors import CliError


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_store() -> Path:
    """``$XDG_DATA_HOME/diffmusic/studio`` (``~/.local/share`` when unset)."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "diffmusic" / "studio"


def run(args: argparse.Namespace) -> int:
    """Run ``diffmusic studio`` until interrupted."""
    if not is_loopback(args.host) and not args.token:
        raise CliError(f"--host {args.host} lets other machines in: give --token SECRET too")
    if not 0 <= args.port <= 65535:
        raise CliError(f"--port must be 0 to 65535, got {args.port}")
    for folder in args.prior_folder or []:
        if not folder.is_dir():
            raise CliError(f"--prior-folder {folder}: no such folder")
    try:
        import uvicorn

        from diffmusic.studio.app import LOOPBACK_NAMES, create_app
    except ImportError as error:
        raise CliError(f"the studio needs {error.name}: pip install 'diffmusic[studio]'") \
            from None
    from diffmusic.studio.assets import MissingAssets

    store = (args.store or default_store()).resolve()
    store.mkdir(parents=True, exist_ok=True)
    lock = (store / "studio.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise CliError(f"--store {store}: another studio is using it") from None
    hosts = (*LOOPBACK_NAMES, args.host) if is_loopback(args.host) else ("*",)
    try:
        app = create_app(store, args.token, args.max_upload_mb, args.prior_folder,
                         args.max_minutes, hosts)
    except MissingAssets as error:
        raise CliError(str(error)) from None
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as error:
        raise CliError(f"cannot listen on {args.host}:{args.port}: {error.strerror}") from None
    port = sock.getsockname()[1]
    shown = f"[{args.host}]" if family == socket.AF_INET6 else args.host
    query = f"?token={quote(args.token)}" if args.token else ""
    print(f"diffmusic studio: http://{shown}:{port}/{query}", file=sys.stderr, flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[sock])
    return 0
