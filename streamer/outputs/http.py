"""HTTP and websocket adapter.

``/`` the dashboard, ``/ws`` live messages, ``/api/status`` streams and
clients, ``POST /api/analyze`` analysis of an uploaded recording (the same
JSON as ``python -m streamer.analysis.files``), ``/metrics`` (Prometheus), ``/docs``
and ``/openapi.json``; for a load balancer ``/healthz`` (alive), ``/readyz``
(takes new calls) and ``POST /api/drain`` (take no new calls, exit once the
running ones end). Every route but the two health checks is behind
``AccessGuard`` (token and websocket origin, see ``streamer.core.access``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import Callable
from http.cookies import SimpleCookie
from pathlib import Path
from typing import BinaryIO
from urllib.parse import parse_qsl, urlencode

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.websockets import WebSocketDisconnect, WebSocketState

from streamer.analysis.decode import AudioError, AudioTooLong, AudioUnsupported
from streamer.core.access import COOKIE, AccessConfig
from streamer.outputs.hub import Hub
from streamer.resources import dashboard_dir

log = logging.getLogger(__name__)
DASHBOARD_DIR = dashboard_dir()
ANALYZE_PATH = "/api/analyze"
MEMORY_SPOOL = 8 * 1024 * 1024  # larger uploads go to a private temp file, deleted after use
# A load balancer's health checks carry no token; they reveal only whether calls are taken.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})


class Window(BaseModel):
    start: float = Field(description="seconds from the start of the recording")
    end: float
    speech: bool = Field(description="false: silence or noise, no emotion given")
    probs: dict[str, float] | None = Field(description="the 8 emotion probabilities, null without speech")
    arousal: float | None = Field(description="high-arousal share of probs (0-1), null without speech")


class AnalysisResult(BaseModel):
    file: str = Field(description="the uploaded file's name")
    duration_s: float
    overall: dict[str, float] | None = Field(description="mean over speech windows; null if no speech")
    top: str | None
    arousal: float | None = Field(
        description="high-arousal share (happy, angry, fearful, surprised) of overall (0-1); null if no speech"
    )
    adapted: float | None = Field(
        description="weight (0-1) of the recording's own speech statistics in the normalisation "
        "(speaker adaptation; 0 if the model does not adapt); null if no speech"
    )
    windows: list[Window]


class ErrorResponse(BaseModel):
    error: str = Field(description="one readable sentence")


class _TooLarge(Exception):
    pass


class _TooSlow(Exception):
    pass


class _Closing(Exception):
    pass


class AccessGuard:
    """ASGI middleware: the token on every route, and ``Origin`` on websockets.

    The token is taken from ``Authorization: Bearer``, the cookie, or a
    ``token`` query parameter; opening a page with the query sets the cookie
    and redirects to the same URL without it (so it is not left in history).
    Refused: JSON 401 over HTTP; a websocket is closed before it is accepted
    (HTTP 403 at the handshake).
    """

    def __init__(self, app, access: AccessConfig) -> None:
        self.app = app
        self.access = access
        self._origins_logged: set[str] = set()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
        from_query = next((v for k, v in query if k == "token"), None)
        if scope["type"] == "websocket" and not self.access.origin_ok(headers.get("origin"), headers.get("host")):
            origin = headers.get("origin", "")[:100]
            if origin not in self._origins_logged and len(self._origins_logged) < 1000:
                self._origins_logged.add(origin)
                log.warning("refused a dashboard websocket from origin %s (see --allow-origin)", origin)
            await self._refuse_websocket(receive, send)
            return
        if not self.access.token_ok(self._offered(headers, from_query)):
            if scope["type"] == "websocket":
                await self._refuse_websocket(receive, send)
            else:
                response = JSONResponse(
                    {"error": "a valid token is needed: open the page with ?token=…, or send Authorization: Bearer"},
                    401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
            return
        if scope["type"] == "http" and from_query is not None and self.access.token is not None:
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            response = RedirectResponse(scope["path"] + (f"?{rest}" if rest else ""), 303)
            response.set_cookie(COOKIE, from_query, httponly=True, samesite="strict", secure=self.access.tls)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    @staticmethod
    def _offered(headers: dict[str, str], from_query: str | None) -> str | None:
        authorization = headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            return authorization[7:].strip()
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed cookie header is just no token
            return from_query
        return cookie[COOKIE].value if COOKIE in cookie else from_query

    @staticmethod
    async def _refuse_websocket(receive, send) -> None:
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 1008})


class UploadLimit:
    """ASGI middleware: refuse uploads over ``max_bytes`` with 413, without reading them whole,
    and bodies that arrive too slowly with 408.

    The declared Content-Length is checked first; a body without one (chunked)
    is counted as it streams in and cut off at the limit. A body that sends
    nothing for ``idle_timeout_s``, or is not complete after ``total_timeout_s``,
    is cut off (a slow client must not hold an upload slot for ever).
    """

    def __init__(
        self,
        app,
        max_bytes: int,
        idle_timeout_s: float = 30.0,
        total_timeout_s: float = 300.0,
        closing: asyncio.Event | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.idle_timeout_s = idle_timeout_s
        self.total_timeout_s = total_timeout_s
        self.closing = closing or asyncio.Event()  # set at shutdown: bodies still arriving get 503

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != ANALYZE_PATH:
            await self.app(scope, receive, send)
            return
        limit_mb = self.max_bytes / 1e6
        message = f"the upload is larger than the {limit_mb:g} MB limit"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await JSONResponse({"error": message}, 413, headers={"Connection": "close"})(scope, receive, send)
            return
        seen = 0
        started = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.total_timeout_s

        async def counting_receive():
            nonlocal seen
            timeout = max(min(self.idle_timeout_s, deadline - loop.time()), 0.001)
            receiving = asyncio.ensure_future(receive())
            closing = asyncio.ensure_future(self.closing.wait())
            done, _ = await asyncio.wait([receiving, closing], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            closing.cancel()
            if receiving not in done:
                receiving.cancel()
                raise _Closing if self.closing.is_set() else _TooSlow
            event = receiving.result()
            seen += len(event.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge
            return event

        async def tracking_send(event):
            nonlocal started
            started = started or event["type"] == "http.response.start"
            await send(event)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await JSONResponse({"error": message}, 413, headers={"Connection": "close"})(scope, receive, send)
        except _Closing:
            if not started:
                closing = JSONResponse({"error": "the analyzer is shutting down"}, 503, headers={"Connection": "close"})
                await closing(scope, receive, send)
        except _TooSlow:
            if not started:
                slow = f"the upload arrived too slowly (nothing for {self.idle_timeout_s:g} s, or not all within "
                slow += f"{self.total_timeout_s:g} s)"
                await JSONResponse({"error": slow}, 408, headers={"Connection": "close"})(scope, receive, send)


def _error(status: int, text: str) -> JSONResponse:
    return JSONResponse({"error": text}, status)


def create_app(
    hub: Hub,
    analyze: Callable[[BinaryIO], dict] | None = None,
    max_upload_mb: float = 50.0,
    dashboard_dir: Path = DASHBOARD_DIR,
    concurrent_uploads: int = 2,
    upload_read_timeout_s: float = 30.0,
    access: AccessConfig | None = None,
    metrics: Callable[[], tuple[bytes, str]] | None = None,
    readiness: Callable[[], str | None] | None = None,
    drain: Callable[[], dict] | None = None,
) -> FastAPI:
    """The web app around a hub and a file analyzer; the pipeline is run by the caller.

    ``analyze`` takes a binary file object and returns the analysis dict (it
    runs in a thread); without it the upload API answers 503. Its errors map
    to statuses: :class:`AudioTooLong` (over its duration limit) 413,
    :class:`AudioUnsupported` (decodable, implausible format) 422, any other
    :class:`AudioError` (not decodable) 415. At most ``concurrent_uploads``
    are received and analysed at once; more get 503 at once (with
    ``Retry-After``), and a body that stalls for ``upload_read_timeout_s`` (or
    takes ten times that in all) gets 408. ``metrics`` renders ``/metrics``
    (body, content type). ``readiness`` returns why the analyzer cannot take
    new calls, or None when it can (``/readyz``); ``drain`` starts a drain
    and returns its state (``POST /api/drain``). ``access`` (default: no
    token, same-origin websockets) guards every route but the health checks.
    """
    if concurrent_uploads < 1 or not upload_read_timeout_s > 0:
        raise ValueError("concurrent_uploads must be at least 1 and upload_read_timeout_s positive")
    app = FastAPI(
        title="Speech emotion analyzer",
        description="Live emotion scores of calls, and analysis of recordings.",
        version="0.1.0",
    )
    # Set by the caller at shutdown (``app.state.closing``): uploads end at once with 503.
    app.state.closing = closing = asyncio.Event()
    app.add_middleware(
        UploadLimit,
        max_bytes=int(max_upload_mb * 1e6),
        idle_timeout_s=upload_read_timeout_s,
        total_timeout_s=10 * upload_read_timeout_s,
        closing=closing,
    )
    app.add_middleware(AccessGuard, access=access or AccessConfig())  # added last: runs first
    uploads = asyncio.Semaphore(concurrent_uploads)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(dashboard_dir / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/api/status", summary="Streams and dashboard clients")
    async def status() -> dict:
        return {"streams": hub.statuses(), "hub": hub.stats()}

    @app.get("/healthz", summary="Liveness: the analyzer answers", tags=["health"])
    async def healthz() -> dict:
        return {"alive": True}

    @app.get(
        "/readyz",
        summary="Readiness: the analyzer takes new calls",
        tags=["health"],
        responses={503: {"description": "not ready: starting, draining, a worker down, or at --max-calls"}},
    )
    async def readyz():
        reason = readiness() if readiness is not None else None
        if reason is not None:
            return JSONResponse({"ready": False, "reason": reason}, 503, headers={"Retry-After": "1"})
        return {"ready": True}

    if drain is not None:

        @app.post(
            "/api/drain",
            summary="Take no new calls; exit once the running calls have ended",
            description="Readiness fails at once, new call connections are refused with 503, running calls "
            "go on to their end (or until --drain-timeout), then the analyzer exits. Same as SIGUSR1.",
            status_code=202,
            tags=["health"],
        )
        async def start_drain() -> dict:
            return drain()

    if metrics is not None:

        @app.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
        async def prometheus() -> Response:
            body, content_type = metrics()
            return Response(body, media_type=content_type)

    @app.post(
        ANALYZE_PATH,
        summary="Analyse a recording",
        description=(
            "Send the recording as multipart/form-data in the field `file`, or as the raw body with an "
            "audio Content-Type (e.g. audio/wav). Any format libsndfile reads (WAV, FLAC, OGG…), any rate "
            "and channel count. The audio is analysed in memory or a private temporary file and not kept."
        ),
        response_model=AnalysisResult,
        responses={
            413: {
                "model": ErrorResponse,
                "description": "larger than the upload limit, or longer than the duration limit",
            },
            415: {"model": ErrorResponse, "description": "not audio, or not decodable"},
            422: {
                "model": ErrorResponse,
                "description": "empty upload, missing 'file' field, or an implausible sample rate or channel count",
            },
            408: {"model": ErrorResponse, "description": "the body arrived too slowly"},
            503: {"model": ErrorResponse, "description": "analysis unavailable, or too many uploads at once (retry)"},
        },
        openapi_extra={
            "requestBody": {
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {"file": {"type": "string", "format": "binary"}},
                            "required": ["file"],
                        }
                    },
                    "audio/*": {"schema": {"type": "string", "format": "binary"}},
                },
                "required": True,
            }
        },
    )
    async def analyze_upload(request: Request):
        if analyze is None:
            return _error(503, "file analysis is not available in this process")
        if uploads.locked():  # refuse at once rather than queue bodies without bound
            return JSONResponse(
                {"error": f"{concurrent_uploads} uploads are being analysed; try again shortly"},
                503,
                headers={"Retry-After": "5"},
            )
        async with uploads:  # held from the first byte received to the result
            return await receive_and_analyze(request)

    async def receive_and_analyze(request: Request):
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        spool = form = None
        try:
            if content_type == "multipart/form-data":
                form = await request.form(max_files=1, max_fields=10)
                upload = form.get("file")
                if not isinstance(upload, UploadFile):
                    return _error(422, "send the recording in the multipart form field 'file'")
                name, fileobj = upload.filename or "upload", upload.file
            elif content_type.startswith("audio/") or content_type == "application/octet-stream":
                spool = tempfile.SpooledTemporaryFile(max_size=MEMORY_SPOOL)  # noqa: SIM115 - closed in finally
                async for chunk in request.stream():
                    spool.write(chunk)
                name, fileobj = request.headers.get("x-filename", "upload"), spool
            else:
                return _error(
                    415, "send multipart/form-data with a 'file' field, or a raw body with an audio/* Content-Type"
                )
            fileobj.seek(0, 2)
            if fileobj.tell() == 0:
                return _error(422, "the upload is empty")
            fileobj.seek(0)
            result = await asyncio.to_thread(analyze, fileobj)
            return {"file": name, **result}
        except AudioTooLong as exc:
            return _error(413, f"{exc}.")
        except AudioUnsupported as exc:
            return _error(422, f"{exc}.")
        except AudioError as exc:
            return _error(415, f"{exc}.")
        except (_TooLarge, _TooSlow, _Closing):
            raise
        except Exception as exc:  # never a traceback to the client
            if closing.is_set():  # the worker stopped serving it
                return _error(503, "the analyzer is shutting down")
            log.exception("analysis of an upload failed")
            return _error(500, f"analysis failed ({type(exc).__name__})")
        finally:
            if spool is not None:
                spool.close()
            if form is not None:
                await form.close()

    @app.websocket("/ws")
    async def websocket(ws: WebSocket) -> None:
        await ws.accept()
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):  # the client went away mid-send
            await hub.serve(ws.send_text, ws.receive)
        if ws.application_state == WebSocketState.CONNECTED and ws.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(RuntimeError, OSError, TimeoutError):
                # Going away: the analyzer is shutting down. A stalled client cannot take the
                # close frame; it must not hold up the shutdown.
                await asyncio.wait_for(ws.close(code=1001), 0.5)

    app.mount("/static", StaticFiles(directory=dashboard_dir), name="static")
    return app
