"""HTTP and websocket adapter: the dashboard at ``/``, live messages at ``/ws``."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from fastapi import FastAPI, WebSocket
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.websockets import WebSocketDisconnect, WebSocketState

from streamer.hub import Hub

log = logging.getLogger(__name__)
DASHBOARD_DIR = Path(__file__).resolve().parents[1] / "dashboard"


def create_app(hub: Hub, dashboard_dir: Path = DASHBOARD_DIR) -> FastAPI:
    """The web app around a hub; the pipeline is run by the caller."""
    app = FastAPI(
        title="Speech emotion analyzer",
        description="Live emotion scores of calls, and analysis of recordings.",
        version="0.1.0",
    )

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(dashboard_dir / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/api/status", summary="Streams and dashboard clients")
    async def status() -> dict:
        return {"streams": hub.statuses(), "hub": hub.stats()}

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
