"""`cityseg serve` beyond this machine asks who is calling: a bearer token, compared in constant time."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cityseg.errors import CitysegError
from cityseg.serve import ServeSettings, create_app
from cityseg.serve.auth import TOKEN_ENV, authorised, is_loopback, resolve_token

TOKEN = "s3cret-token-of-this-test"


@pytest.fixture(scope="module")
def locked(tiny_segmenter):
    with TestClient(create_app(tiny_segmenter, ServeSettings(token=TOKEN))) as client:
        yield client


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 120, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/health"),
        ("GET", "/classes"),
        ("GET", "/openapi.json"),
        ("POST", "/predict"),
        ("POST", "/predict/video"),
    ],
)
@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}", "Bearer", f"Bearer {TOKEN}x"])
def test_every_route_but_the_page_answers_401_without_the_token(locked, method, path, header):
    headers = {"Authorization": header} if header else {}
    response = locked.request(method, path, headers=headers, content=png_bytes() if method == "POST" else None)
    assert response.status_code == 401
    assert response.json() == {
        "error": "unauthorized",
        "message": "this server needs a token: send Authorization: Bearer TOKEN",
    }
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_the_token_opens_every_route_and_the_page_needs_none(locked):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert locked.get("/health", headers=auth).status_code == 200
    answer = locked.post("/predict", headers={**auth, "Content-Type": "image/png"}, content=png_bytes())
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    page = locked.get("/")
    assert page.status_code == 200 and "authorisedFetch" in page.text  # the page asks for the token itself


def test_an_open_server_needs_no_token(tiny_segmenter):
    with TestClient(create_app(tiny_segmenter)) as client:
        assert client.get("/health").status_code == 200


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.5.0.1", True), ("::1", True), ("[::1]", True), ("localhost", True),
     ("0.0.0.0", False), ("192.168.1.20", False), ("::", False), ("myhost.example", False)],
)  # fmt: skip
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback


def test_beyond_loopback_a_token_is_required_unless_no_auth_is_said(monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert resolve_token(None, "127.0.0.1") is None
    with pytest.raises(CitysegError, match=r"refusing to serve on 0\.0\.0\.0 without a token.*--no-auth") as error:
        resolve_token(None, "0.0.0.0")
    assert "\n" not in str(error.value)
    assert resolve_token(None, "0.0.0.0", no_auth=True) is None
    assert resolve_token("abc", "0.0.0.0") == "abc"
    monkeypatch.setenv(TOKEN_ENV, "from-the-environment")
    assert resolve_token(None, "0.0.0.0") == "from-the-environment"
    with pytest.raises(CitysegError, match="the token is empty"):
        resolve_token("  ", "0.0.0.0")


def test_the_cli_refuses_to_expose_a_model_without_a_token(tiny_model_dir, monkeypatch, capsys):
    from cityseg.cli import main

    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert main(["serve", str(tiny_model_dir), "--host", "0.0.0.0", "--port", "0"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("cityseg: error: refusing to serve on 0.0.0.0 without a token") and "\n" not in error


def test_tokens_are_compared_as_whole_strings():
    assert authorised(f"Bearer {TOKEN}", TOKEN) and authorised(f"bearer  {TOKEN} ", TOKEN)
    assert not authorised(f"Bearer {TOKEN[:-1]}", TOKEN) and not authorised(None, TOKEN)
