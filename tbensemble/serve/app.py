"""The HTTP service: ``POST /v1/predict`` (raw image body), KServe v2 health, Prometheus ``/metrics``.

A request's path: body read with a size cap -> type sniffed from its bytes -> decoded on a decode thread
-> queued for the micro-batcher -> scored and decided with the other requests of its batch on the
inference thread -> the batch's audit lines fsynced on the audit thread (while the next batch runs) ->
answered. The event loop only moves bytes.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from tbensemble.core.decisions import psi
from tbensemble.core.errors import DataError
from tbensemble.engine.api import Decoded, TriageEnsemble, sniff_image_type
from tbensemble.serve.audit import AuditLog
from tbensemble.serve.batcher import MicroBatcher, QueueFull
from tbensemble.serve.metrics import ServiceMetrics

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
RETRY_AFTER_FULL_S = 1
RETRY_AFTER_NOT_READY_S = 5

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeSettings:
    max_body_bytes: int = 64 << 20
    batch_size: int = 8
    max_wait_ms: float = 5.0
    max_queue: int = 64
    decode_workers: int = 2
    parallel_batches: int = 2
    token: str | None = None


@dataclass
class _Job:
    """One decoded request on its way to a batch."""

    request_id: str
    input_sha256: str
    decoded: Decoded


class ApiError(Exception):
    """An answer other than 200, with its one-line reason."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers or {}


def _error(status: int, reason: str, request_id: str | None = None, headers: dict[str, str] | None = None) -> Response:
    content: dict[str, Any] = {"error": reason}
    if request_id:
        content["request_id"] = request_id
    return JSONResponse(content, status_code=status, headers=headers)


def _plain(value: Any) -> Any:
    """numpy scalars as JSON values; NaN (no calibration) as null."""
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit`` (the declared length is checked first)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"body of {int(declared)} bytes is over the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"body over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def drift_statistic(triage: TriageEnsemble) -> Callable[[np.ndarray], float] | None:
    """PSI of recent scores against the manifest's OOF reference (``core.decisions.psi``); None without one."""
    reference = triage.ensemble.manifest.ensemble.drift
    if not reference:
        log.info("the manifest has no drift reference: /metrics leaves out the drift statistic")
        return None
    return functools.partial(psi, reference)


def create_app(
    triage: TriageEnsemble,
    audit: AuditLog,
    settings: ServeSettings | None = None,
    metrics: ServiceMetrics | None = None,
) -> FastAPI:
    """The FastAPI app around a loaded ensemble; ready once its models have been warmed up in the lifespan."""
    settings = settings or ServeSettings()
    metrics = metrics or ServiceMetrics(drift_statistic(triage))
    infer_pool = ThreadPoolExecutor(max_workers=settings.parallel_batches, thread_name_prefix="infer")
    decode_pool = ThreadPoolExecutor(max_workers=settings.decode_workers, thread_name_prefix="decode")
    audit_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit")
    state = {"ready": False, "in_flight": 0}
    # Requests past this many (reading, decoding, waiting or in a running batch) are refused before their
    # body is read, so a flood cannot hold unbounded bodies in memory.
    max_in_flight = settings.max_queue + settings.batch_size * settings.parallel_batches

    def run_batch(jobs: list[_Job]) -> list[tuple[dict[str, Any], Future]]:
        """Decide a batch on the inference thread; its audit lines go to the audit thread, so the next batch
        runs while this one's fsync waits for the disk. Each answer waits for its batch's fsync."""
        frame = triage.decide([job.request_id for job in jobs], [job.decoded for job in jobs])
        rows = frame.to_dict("records")
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        records = [
            {
                "time": now,
                "request_id": job.request_id,
                "input_sha256": job.input_sha256,
                "decision": str(row["decision"]),
                "score": float(row["score"]),
                "manifest_sha256": str(row["manifest_sha256"]),
            }
            for job, row in zip(jobs, rows, strict=True)
        ]
        written = audit_pool.submit(audit.append, records)
        metrics.observe_decisions([str(r["decision"]) for r in rows], [float(r["score"]) for r in rows])
        return [(row, written) for row in rows]

    batcher: MicroBatcher[_Job] = MicroBatcher(
        run_batch,
        infer_pool,
        max_batch=settings.batch_size,
        max_wait_s=settings.max_wait_ms / 1000.0,
        max_pending=settings.max_queue,
        on_batch=metrics.batch_size.observe,
        max_running=settings.parallel_batches,
    )
    metrics.queue_depth.set_function(lambda: batcher.pending)

    async def warm_up() -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(infer_pool, triage.warm_up)
        except Exception:
            log.exception("warm-up failed; the server stays not ready")
            return
        state["ready"] = True
        metrics.ready.set(1)
        log.info("ready: %d models on %s", len(triage.ensemble.manifest.models), ", ".join(triage.providers))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batching = asyncio.create_task(batcher.run())
        warming = asyncio.create_task(warm_up())
        try:
            yield
        finally:
            warming.cancel()
            batching.cancel()
            infer_pool.shutdown(wait=True)
            decode_pool.shutdown(wait=True)
            audit_pool.shutdown(wait=True)
            audit.close()

    app = FastAPI(title="tbensemble triage", version="1", lifespan=lifespan, docs_url=None, redoc_url=None)

    def authorise(request: Request) -> None:
        if settings.token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), settings.token.encode()):
            raise ApiError(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return _error(exc.status, exc.reason, getattr(request.state, "request_id", None), exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return _error(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0]
        return _error(422, f"{'.'.join(map(str, first.get('loc', ())))}: {first.get('msg', 'invalid')}")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        request_id = getattr(request.state, "request_id", None)
        log.exception("request %s failed", request_id)
        return _error(500, "internal error; the server log has the details", request_id)

    @app.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        if not state["ready"]:
            return _error(503, "models are warming up", headers={"Retry-After": str(RETRY_AFTER_NOT_READY_S)})
        return JSONResponse({"ready": True})

    @app.get("/metrics")
    async def prometheus(request: Request) -> Response:
        authorise(request)
        return Response(metrics.exposition(), media_type=PROMETHEUS_TEXT)

    async def answer_image(request: Request, request_id: str, heatmap: bool) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        body = await _read_body(request, settings.max_body_bytes)
        if sniff_image_type(body) is None:
            raise ApiError(415, "body is not a PNG, JPEG or DICOM image (no known signature in its first bytes)")
        try:
            decoded = await loop.run_in_executor(decode_pool, triage.prepare, body, request_id)
        except DataError as exc:
            raise ApiError(422, str(exc)) from None
        try:
            row, written = await batcher.submit(_Job(request_id, hashlib.sha256(body).hexdigest(), decoded))
        except QueueFull as exc:
            raise ApiError(503, f"server busy: {exc}", {"Retry-After": str(RETRY_AFTER_FULL_S)}) from None
        await asyncio.wrap_future(written)  # no answer before its audit line is on disk
        answer = {key: _plain(value) for key, value in row.items()}
        answer["request_id"] = request_id
        if heatmap:
            answer["heatmap_png_base64"] = await loop.run_in_executor(
                decode_pool, _overlay, triage, body, decoded.image, row
            )
        return answer

    @app.post("/v1/predict")
    async def predict(request: Request, heatmap: bool = False) -> Response:
        started = time.perf_counter()
        request_id = request.state.request_id = uuid.uuid4().hex
        status = 500
        try:
            authorise(request)
            if not state["ready"]:
                raise ApiError(503, "models are warming up", {"Retry-After": str(RETRY_AFTER_NOT_READY_S)})
            if state["in_flight"] >= max_in_flight:
                raise ApiError(
                    503,
                    f"server busy: {state['in_flight']} requests in progress",
                    {"Retry-After": str(RETRY_AFTER_FULL_S)},
                )
            state["in_flight"] += 1
            try:
                answer = await answer_image(request, request_id, heatmap)
            finally:
                state["in_flight"] -= 1
            answer["latency_ms"] = round((time.perf_counter() - started) * 1000.0, 3)
            status = 200
            return JSONResponse(answer, headers={"X-Request-Id": request_id})
        except ApiError as exc:
            status = exc.status
            raise
        finally:
            metrics.requests.labels(status=str(status)).inc()
            metrics.latency.observe(time.perf_counter() - started)

    return app


def _overlay(triage: TriageEnsemble, body: bytes, image: np.ndarray, row: dict[str, Any]) -> str:
    """The CAM overlay PNG of a request's image, base64: heatmap at the image's own size, decision in the title."""
    gray = triage.gray(body, row["image_id"])
    heatmap = triage.heatmap(image, *gray.shape)
    return base64.b64encode(triage.overlay(gray, heatmap, row)).decode("ascii")
