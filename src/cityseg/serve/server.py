"""Running it: a listening socket, uvicorn around the app, and ``cityseg serve``."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from dataclasses import dataclass

from cityseg.defaults import DEFAULT_HOST, DEFAULT_LOG_LEVEL, DEFAULT_PORT
from cityseg.engine import PredictOptions, Segmenter
from cityseg.errors import CitysegError
from cityseg.serve.app import create_app, model_label
from cityseg.serve.memory import HeapTrimmer, cap_arenas
from cityseg.serve.settings import ServeSettings


def bind_socket(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one), or a one-line error.

    Binding before the server starts turns "address in use" into a clear message, and lets a caller
    (a test, ``--port 0``) learn the port without a race.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise CitysegError(f"cannot resolve --host {host}: {exc.strerror}; use an address like 127.0.0.1") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise CitysegError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port") from None
    sock.set_inheritable(True)
    return sock


@dataclass
class LocalServer:
    """A server ready to run: uvicorn's ``Server``, the socket it listens on, and its URL.

    ``run()`` blocks until ``stop()`` (from another thread) or Ctrl+C; run it in a thread to serve in the background.
    """

    server: object  # uvicorn.Server (uvicorn is imported lazily)
    socket: socket.socket
    url: str

    def run(self) -> None:
        cap_arenas()  # before uvicorn's threads allocate: see cityseg.serve.memory
        trimmer = HeapTrimmer().start()
        try:
            self.server.run(sockets=[self.socket])
        finally:
            trimmer.stop()
            self.socket.close()

    def stop(self) -> None:
        self.server.should_exit = True

    @property
    def started(self) -> bool:
        return bool(self.server.started)


def make_server(
    segmenter: Segmenter,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    settings: ServeSettings | None = None,
    log_level: str = DEFAULT_LOG_LEVEL,
) -> LocalServer:
    """Bind ``host:port`` and wrap :func:`create_app` in a uvicorn server (not started yet).

    Raises:
        CitysegError: the address cannot be listened on.
    """
    import uvicorn

    settings = settings or ServeSettings()
    app = create_app(segmenter, settings)
    sock = bind_socket(host, port)
    shown_host = f"[{host}]" if ":" in host else host
    config = uvicorn.Config(
        app,
        log_level=log_level,
        # bound open connections too: each may be uploading; /predict's own limit refuses the rest with 503
        limit_concurrency=4 * settings.queue_size + 64,
        timeout_graceful_shutdown=10,
    )
    return LocalServer(uvicorn.Server(config), sock, f"http://{shown_host}:{sock.getsockname()[1]}/")


def serve(
    model: str | os.PathLike | Segmenter,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    options: PredictOptions | None = None,
    settings: ServeSettings | None = None,
    log_level: str = DEFAULT_LOG_LEVEL,
    token: str | None = None,
    no_auth: bool = False,
) -> None:
    """Load a model and serve it until interrupted (Ctrl+C): the page at ``/``, the API beside it.

    Args:
        model: a model folder, run folder, ``runs/latest`` or a loaded :class:`Segmenter`.
        host: address to listen on (default loopback only).
        port: TCP port; 0 picks a free one (printed).
        options: how the model runs, as for ``cityseg predict``: its ``backend`` (``torch``, ``onnx`` or
            ``openvino``; int8 when ``model.int8.onnx`` is there), ``onnx_file``, ``threads``, ``flip`` and
            ``scales`` (default ``PredictOptions()``). What each request gets is the request's to say.
        settings: limits; see :class:`ServeSettings`.
        log_level: uvicorn's log level (``info`` logs every request).
        token: the bearer token requests need (default ``$CITYSEG_TOKEN``); required beyond loopback.
        no_auth: serve beyond loopback without a token, on purpose.

    Raises:
        CitysegError: the model cannot be loaded, the address cannot be listened on, or it is beyond this
            machine and there is no token (see :mod:`cityseg.serve.auth`).
    """
    from dataclasses import replace

    from cityseg.serve.auth import resolve_token

    required = resolve_token(token, host, no_auth)  # before the model loads: the quicker mistake to fix
    settings = replace(settings or ServeSettings(), token=required)
    options = options or PredictOptions()
    segmenter = model if isinstance(model, Segmenter) else Segmenter.from_options(model, options)
    server = make_server(segmenter, host, port, settings, log_level)
    backend = getattr(segmenter.backend, "name", options.backend)
    print(
        f"serving {model_label(segmenter.model_dir)} ({backend}) at {server.url}  "
        f"(API: POST /predict, GET /health, /classes, /openapi.json{'; token required' if required else ''}; "
        "Ctrl+C stops)",
        flush=True,
    )
    with _stopping_is_not_dying():
        server.run()
    print("stopped: the requests in flight were answered", flush=True)


@contextlib.contextmanager
def _stopping_is_not_dying():
    """SIGTERM (a service manager, ``docker stop``, ``kill``) is the way a server is asked to stop: exit 0.

    uvicorn catches the signal, stops accepting, lets the requests in flight finish (up to
    ``timeout_graceful_shutdown``), then raises the signal again for whatever handler was there before it.
    With Python's default, the process would die of the signal (status -15) after a clean shutdown; with
    this quiet handler in place, ``cityseg serve`` returns and exits 0.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
