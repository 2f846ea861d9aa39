"""HTTP and websocket adapter.

``/`` the dashboard, ``/ws`` live messages, ``/api/status`` streams and
clients, ``POST /api/analyze`` analysis of an uploaded recording (the same
JSON as ``python -m streamer.analyze``), ``/docs`` and ``/openapi.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.websockets import WebSocketDisconnect, WebSocketState

from streamer.audio import AudioError, AudioTooLong, AudioUnsupported
from streamer.hub import Hub

log = logging.getLogger(__name__)
DASHBOARD_DIR = Path(__file__).resolve().parents[1] / "dashboard"
ANALYZE_PATH = "/api/analyze"
MEMORY_SPOOL = 8 * 1024 * 1024  # larger uploads go to a private temp file, deleted after use


class Window(BaseModel):
    start: float = Field(description="seconds from the start of the recording")
    end: float
    speech: bool = Field(description="false: silence or noise, no emotion given")
    probs: dict[str, float] | None = Field(description="the 8 emotion probabilities, null without speech")


class AnalysisResult(BaseModel):
    file: str = Field(description="the uploaded file's name")
    duration_s: float
    overall: dict[str, float] | None = Field(description="mean over speech windows; null if no speech")
    top: str | None
    adapted: float | None = Field(
        description="weight (0-1) of the recording's own speech statistics in the normalisation "
        "(speaker adaptation; 0 if the model does not adapt); null if no speech"
    )
    windows: list[Window]


class ErrorResponse(BaseModel):
    error: str = Field(description="one readable sentence")


class _TooLarge(Exception):
    pass


class UploadLimit:
    """ASGI middleware: refuse uploads over ``max_bytes`` with 413, without reading them whole.

    The declared Content-Length is checked first; a body without one (chunked)
    is counted as it streams in and cut off at the limit.
    """

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

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

        async def counting_receive():
            nonlocal seen
            event = await receive()
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


def _error(status: int, text: str) -> JSONResponse:
    return JSONResponse({"error": text}, status)


def create_app(
    hub: Hub,
    analyze: Callable[[BinaryIO], dict] | None = None,
    max_upload_mb: float = 50.0,
    dashboard_dir: Path = DASHBOARD_DIR,
    concurrent_uploads: int = 2,
) -> FastAPI:
    """The web app around a hub and a file analyzer; the pipeline is run by the caller.

    ``analyze`` takes a binary file object and returns the analysis dict (it
    runs in a thread); without it the upload API answers 503. Its errors map
    to statuses: :class:`AudioTooLong` (over its duration limit) 413,
    :class:`AudioUnsupported` (decodable, implausible format) 422, any other
    :class:`AudioError` (not decodable) 415.
    """
    app = FastAPI(
        title="Speech emotion analyzer",
        description="Live emotion scores of calls, and analysis of recordings.",
        version="0.1.0",
    )
    app.add_middleware(UploadLimit, max_bytes=int(max_upload_mb * 1e6))
    uploads = asyncio.Semaphore(concurrent_uploads)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(dashboard_dir / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/api/status", summary="Streams and dashboard clients")
    async def status() -> dict:
        return {"streams": hub.statuses(), "hub": hub.stats()}

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
            503: {"model": ErrorResponse, "description": "analysis unavailable"},
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
            async with uploads:
                result = await asyncio.to_thread(analyze, fileobj)
            return {"file": name, **result}
        except AudioTooLong as exc:
            return _error(413, f"{exc}.")
        except AudioUnsupported as exc:
            return _error(422, f"{exc}.")
        except AudioError as exc:
            return _error(415, f"{exc}.")
        except _TooLarge:
            raise
        except Exception as exc:  # never a traceback to the client
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
            with contextlib.suppress(RuntimeError, OSError):
                await ws.close(code=1001)  # going away: the analyzer is shutting down

    app.mount("/static", StaticFiles(directory=dashboard_dir), name="static")
    return app
