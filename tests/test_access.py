"""Access control: token, websocket Origin, TLS, and bounded upload intake, on a real uvicorn server."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from conftest import ROOT, twilio_start_closes
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from streamer.app.access import resolve_access
from streamer.core.access import AccessConfig
from streamer.outputs.http import create_app
from streamer.outputs.hub import Hub
from streamer.outputs.mqtt.broker import mqtt_plaintext_warning

TOKEN = "s3cret-token-for-the-tests-0123"
RESULT = {"duration_s": 0.0, "overall": None, "top": None, "arousal": None, "adapted": None, "windows": []}


def app_with(access: AccessConfig | None = None, **kwargs):
    hub = Hub()
    hub.offer({"type": "status", "stream": "desk-1", "state": "running", "source": "x"})
    return create_app(hub, access=access, metrics=lambda: (b"emotion_up 1\n", "text/plain"), **kwargs)


def ws_open(url: str, **kwargs) -> bool:
    """True if the websocket opened and history came; False if the handshake was refused."""
    try:
        with connect(url, open_timeout=5, **kwargs) as ws:
            return "desk-1" in ws.recv(timeout=5)
    except InvalidStatus:
        return False


def test_a_page_on_another_site_cannot_open_the_websocket(serve_app):
    server = serve_app(app_with())
    assert not ws_open(server.ws_url, origin="https://evil.example")
    assert ws_open(server.ws_url, origin=f"http://127.0.0.1:{server.port}")  # the dashboard itself
    assert ws_open(server.ws_url)  # not a browser: no Origin


def test_allowed_origins_are_accepted(serve_app):
    access = resolve_access("127.0.0.1", allow_origins=["https://Wall.example:8443/"])
    server = serve_app(app_with(access))
    assert ws_open(server.ws_url, origin="https://wall.example:8443")
    assert not ws_open(server.ws_url, origin="https://wall.example:9999")


def test_the_token_guards_every_route(serve_app):
    server = serve_app(app_with(AccessConfig(token=TOKEN)))
    with httpx.Client(base_url=server.url, timeout=5) as client:
        for path in ("/", "/api/status", "/metrics", "/openapi.json", "/static/app.js"):
            refused = client.get(path)
            assert refused.status_code == 401 and "token" in refused.json()["error"], path
        assert client.get("/api/status", headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401
        ok = client.get("/api/status", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and ok.json()["streams"][0]["stream"] == "desk-1"
        assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text == "emotion_up 1\n"
        # A browser opens the page once with the token: it becomes a cookie and leaves the URL.
        opened = client.get(f"/?token={TOKEN}&view=floor")
        assert opened.status_code == 303 and opened.headers["location"] == "/?view=floor"
        cookie = opened.headers["set-cookie"]
        assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
        assert client.get("/").status_code == 200  # the client now sends the cookie
    assert not ws_open(server.ws_url)
    assert not ws_open(server.ws_url, additional_headers={"Cookie": "emotion_token=nope"})
    assert ws_open(server.ws_url, additional_headers={"Cookie": f"emotion_token={TOKEN}"})
    assert ws_open(server.ws_url, additional_headers={"Authorization": f"Bearer {TOKEN}"})


def test_binding_beyond_loopback_needs_a_token(tmp_path):
    with pytest.raises(ValueError, match=r"--host 0.0.0.0 is reachable from other machines"):
        resolve_access("0.0.0.0", env={})
    assert resolve_access("0.0.0.0", env={"EMOTION_TOKEN": TOKEN}).token == TOKEN
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    assert resolve_access("10.1.2.3", token_file=token_file).token == TOKEN
    assert resolve_access("::1").token is None and resolve_access("localhost").token is None
    with pytest.raises(ValueError, match="at least 16 characters"):
        resolve_access("0.0.0.0", env={"EMOTION_TOKEN": "short"})
    with pytest.raises(ValueError, match="cannot read"):
        resolve_access("0.0.0.0", token_file=tmp_path / "missing")
    with pytest.raises(ValueError, match="both --certfile and --keyfile"):
        resolve_access("127.0.0.1", certfile=token_file)
    with pytest.raises(ValueError, match="no such file"):
        resolve_access("127.0.0.1", certfile=tmp_path / "c.pem", keyfile=token_file)
    with pytest.raises(ValueError, match="scheme://host"):
        resolve_access("127.0.0.1", allow_origins=["wall.example"])


def test_the_analyzer_refuses_to_start_exposed_without_a_token():
    proc = subprocess.run(
        [sys.executable, "run_stream.py", "--serve", "--host", "0.0.0.0", "--port", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: --host 0.0.0.0 is reachable from other machines: give a token with --token-file FILE or EMOTION_TOKEN"
    )


def test_tls_serves_https_and_wss(serve_app, tmp_path):
    cert, key = self_signed(tmp_path)
    access = resolve_access("127.0.0.1", certfile=cert, keyfile=key)
    server = serve_app(app_with(access), ssl_certfile=str(cert), ssl_keyfile=str(key))
    assert server.url.startswith("https://")
    assert httpx.get(server.url + "/api/status", verify=False, timeout=5).status_code == 200
    import ssl

    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    assert ws_open(server.ws_url, ssl=context, origin=f"https://127.0.0.1:{server.port}")
    assert not ws_open(server.ws_url, ssl=context, origin=f"http://127.0.0.1:{server.port}")


def test_plaintext_mqtt_credentials_are_warned_about():
    assert "unencrypted" in mqtt_plaintext_warning(True, False, "broker.example")
    assert mqtt_plaintext_warning(True, True, "broker.example") is None
    assert mqtt_plaintext_warning(True, False, "127.0.0.1") is None
    assert mqtt_plaintext_warning(False, False, "broker.example") is None


# Upload intake: bounded in number and in time, and the rest of the server stays responsive.


def trickle(port: int, length: int = 100_000) -> socket.socket:
    """An upload that declares a body and sends almost none of it."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        b"POST /api/analyze HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: audio/wav\r\n"
        + f"Content-Length: {length}\r\n\r\n".encode()
        + b"RIFF"
    )
    return sock


def response_of(sock: socket.socket, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        pass
    return data


def test_more_uploads_than_allowed_get_503_at_once(serve_app):
    analysed = threading.Event()
    server = serve_app(app_with(analyze=lambda f: analysed.set() or {}, concurrent_uploads=1))
    slow = trickle(server.port)
    try:
        time.sleep(0.2)
        start = time.monotonic()
        refused = httpx.post(
            server.url + "/api/analyze", content=b"RIFF....", headers={"Content-Type": "audio/wav"}, timeout=5
        )
        assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
        assert "try again" in refused.json()["error"] and time.monotonic() - start < 1.0
    finally:
        slow.close()
    assert not analysed.is_set()


def test_a_stalled_body_gets_408_and_frees_its_slot(serve_app):
    server = serve_app(app_with(analyze=lambda f: RESULT, concurrent_uploads=1, upload_read_timeout_s=0.5))
    slow = trickle(server.port)
    try:
        answer = response_of(slow, timeout=5)
    finally:
        slow.close()
    assert answer.startswith(b"HTTP/1.1 408") and b"too slowly" in answer
    ok = httpx.post(server.url + "/api/analyze", content=b"RIFF....", headers={"Content-Type": "audio/wav"}, timeout=5)
    assert ok.status_code == 200  # the slot is free again


def test_status_and_websocket_stay_responsive_while_uploads_stall(serve_app):
    server = serve_app(app_with(analyze=lambda f: {}, concurrent_uploads=2))
    attackers = [trickle(server.port) for _ in range(6)]  # 2 hold the slots, 4 are refused
    try:
        for _ in range(5):
            start = time.monotonic()
            assert httpx.get(server.url + "/api/status", timeout=5).status_code == 200
            assert time.monotonic() - start < 1.0
        assert ws_open(server.ws_url)
    finally:
        for sock in attackers:
            sock.close()


def self_signed(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


def test_the_analyzer_serves_token_origin_and_tls_end_to_end(start_analyzer, tmp_path):
    """Through run_stream.py: exposed on every address, with a token file and TLS."""
    import ssl

    cert, key = self_signed(tmp_path)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    analyzer = start_analyzer(
        [
            "--serve",
            "--host",
            "0.0.0.0",
            "--token-file",
            str(token_file),
            "--certfile",
            str(cert),
            "--keyfile",
            str(key),
        ]
    )
    assert analyzer.url.startswith("https://") and "open it once with ?token=" in analyzer.output()
    assert TOKEN not in analyzer.output()
    with httpx.Client(base_url=analyzer.url, verify=False, timeout=5) as client:
        assert client.get("/api/status").status_code == 401
        assert client.get("/metrics").status_code == 401
        assert client.get("/api/status", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        opened = client.get(f"/?token={TOKEN}")
        assert opened.status_code == 303 and "secure" in opened.headers["set-cookie"].lower()
        assert client.get("/metrics").text.startswith("# HELP")  # with the cookie
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    own = f"https://127.0.0.1:{analyzer.port}"
    cookie = {"Cookie": f"emotion_token={TOKEN}"}
    assert ws_open_any(analyzer.ws_url, ssl=context, origin=own, additional_headers=cookie)
    assert not ws_open_any(analyzer.ws_url, ssl=context, origin="https://evil.example", additional_headers=cookie)
    assert not ws_open_any(analyzer.ws_url, ssl=context, origin=own)
    # Calls come over wss on the same port, with the token (Twilio: a custom parameter; fork: the URL).
    calls = f"wss://127.0.0.1:{analyzer.port}"
    assert twilio_start_closes(calls + "/twilio", TOKEN, ssl=context) is None
    assert twilio_start_closes(calls + "/twilio", None, ssl=context) == 1008
    assert not ws_open_any(calls + "/fork", ssl=context)
    assert ws_open_any(calls + f"/fork?token={TOKEN}", ssl=context)
    assert analyzer.stop() == 0


def ws_open_any(url: str, **kwargs) -> bool:
    """True if the websocket opened (the analyzer has no streams, so no history is awaited)."""
    try:
        with connect(url, open_timeout=5, **kwargs):
            return True
    except InvalidStatus:
        return False
