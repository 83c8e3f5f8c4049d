"""Who may call a served model: a bearer token, required whenever the server listens beyond this machine.

On the loopback address (the default) only this machine's users reach the server, as with any local tool.
Bound to any other address, anyone who can reach the port could use the model, so :func:`check_exposure`
refuses to start without a token unless the user says ``--no-auth``. With a token every route but the page
itself (``GET /``, which asks for the token once and sends it on) needs ``Authorization: Bearer TOKEN``;
tokens are compared in constant time (:func:`hmac.compare_digest`), and a refusal is a 401 in the same JSON
error form as every other error. TorchServe turned token authorisation on by default for the same reason.
"""

from __future__ import annotations

import hmac
import ipaddress
import os

from cityseg.errors import CitysegError

TOKEN_ENV = "CITYSEG_TOKEN"  # where the token may come from instead of --token (kept out of shell history)
OPEN_PATHS = frozenset({"/"})  # the page: it holds no data and asks for the token itself


def is_loopback(host: str) -> bool:
    """``127.0.0.1``, ``::1``, ``localhost``: addresses only this machine reaches."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost may resolve to anything
        return False


def resolve_token(token: str | None, host: str, no_auth: bool = False) -> str | None:
    """The token the server will require (``token``, else ``$CITYSEG_TOKEN``), or None for an open server.

    Raises:
        CitysegError: an address beyond this machine with neither a token nor ``no_auth``; an empty token.
    """
    token = token if token is not None else os.environ.get(TOKEN_ENV)
    if no_auth:
        return None
    if token is not None and not token.strip():
        raise CitysegError(f"the token is empty; pass a long random --token or set {TOKEN_ENV}")
    if token is None and not is_loopback(host):
        raise CitysegError(
            f"refusing to serve on {host} without a token: anyone who reaches it could use the model; "
            f"pass --token (or set {TOKEN_ENV}), or --no-auth to serve it openly on purpose"
        )
    return token


def authorised(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>``, compared in constant time."""
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
