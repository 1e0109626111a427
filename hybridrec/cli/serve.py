"""``hybridrec serve``: answer recommendation, similar-item, search and explanation requests over HTTP.

The app itself is :func:`hybridrec.serving.create_app`; this module parses the flags, runs it under
uvicorn and wires the signals: SIGHUP reloads the model folder (loaded fully, then swapped in;
requests in flight finish on the old model), SIGTERM and Ctrl+C stop the server gracefully
(requests in flight are answered first), SIGTERM with exit code 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from hybridrec.errors import HybridRecError

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve a saved model over HTTP (needs the extra 'serve')",
        description="Serve a saved model over HTTP (FastAPI + uvicorn): GET /health, POST /recommend, /similar, "
                    "/search, /explain, /items, /items/remove, /reload; OpenAPI docs at /docs. SIGHUP reloads "
                    "the model folder without dropping requests. Needs pip install 'hybridrec[serve]'.")
    parser.add_argument("--model", required=True, metavar="DIR", help="folder of a saved model")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    parser.add_argument("--threads", type=int, default=8,
                        help="requests scored at once (the thread pool's size; default 8)")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch CPU threads of each request's scoring (default 1: requests run side by "
                             "side instead)")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise HybridRecError(f"--port must be in 0..65535, got {args.port}")
    for flag in ("threads", "torch_threads"):
        if getattr(args, flag) < 1:
            raise HybridRecError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    serving = _serving_module()
    import torch
    import uvicorn

    torch.set_num_threads(args.torch_threads)
    holder = serving.ModelHolder(args.model)
    app = serving.create_app(holder=holder, threads=args.threads)
    info = holder.served.info()
    print(f"hybridrec serve: {info['class']} from {info['path']} ({info['n_users']:,} users, "
          f"{info['n_items']:,} items) on http://{args.host}:{args.port} (API docs at /docs)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, access_log=args.access_log,
                                           log_level="info" if args.verbose else "warning"))
    _install_signal_handlers(holder)
    try:
        server.run()
    except SystemExit as err:  # uvicorn's startup failure (e.g. the port is taken), its reason logged above
        raise HybridRecError(f"could not serve on {args.host}:{args.port} (uvicorn exit {err.code}; "
                             "see the message above)") from None
    if not server.started:
        raise HybridRecError(f"could not serve on {args.host}:{args.port} (see the message above)")
    return 0


def _serving_module():
    """:mod:`hybridrec.serving`, or a :class:`HybridRecError` naming the extra to install."""
    try:
        from hybridrec import serving
    except ModuleNotFoundError as err:
        raise HybridRecError(f"hybridrec serve needs FastAPI and uvicorn ({err.name} is not installed): "
                             "pip install 'hybridrec[serve]'") from None
    try:
        import uvicorn  # noqa: F401
    except ModuleNotFoundError:
        raise HybridRecError(f"hybridrec serve needs uvicorn (not installed): {serving.INSTALL_HINT}") from None
    return serving


def _install_signal_handlers(holder) -> None:
    """SIGHUP: reload in a thread (the event loop keeps serving); SIGTERM: a clean exit.

    uvicorn takes SIGTERM over while it serves, shuts down gracefully, then raises the signal again
    with the handler it found: a no-op one here, so the command returns 0 instead of dying by it.
    """
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda signum, frame: threading.Thread(
            target=_reload_logged, args=(holder,), name="hybridrec-reload", daemon=True).start())


def _reload_logged(holder) -> None:
    try:
        served = holder.reload()
        logger.warning("SIGHUP: reloaded %s (generation %d)", served.path, served.generation)
    except HybridRecError as err:
        logger.error("SIGHUP: reload failed, still serving the previous model: %s", err)
