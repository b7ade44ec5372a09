"""``tbens serve``: the exported ensemble as an HTTP triage service (needs the ``serve`` extra)."""

from __future__ import annotations

import ipaddress
import logging
import signal
from pathlib import Path

import click

from tbensemble.cli.options import precision_option
from tbensemble.core.errors import TbensError

MIN_TOKEN_CHARS = 16

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses; any other name or address reaches beyond this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(path: str | None, host: str) -> str | None:
    """The bearer token from ``path``; binding beyond loopback without one is refused."""
    if path is None:
        if not is_loopback(host):
            raise TbensError(
                f"--host {host}: binding beyond loopback needs --token-file (a file holding a bearer token of "
                f"at least {MIN_TOKEN_CHARS} characters)"
            )
        return None
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise TbensError(f"--token-file {path}: cannot read it ({exc})") from None
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
        raise TbensError(f"--token-file {path}: the token must be one word of at least {MIN_TOKEN_CHARS} characters")
    return token


@click.command("serve")
@click.option(
    "--artifacts", required=True, type=click.Path(exists=True, file_okay=False), help="Run folder with manifest.json."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; beyond loopback needs a token.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--device", type=click.Choice(["auto", "cuda", "cpu"]), default="auto", show_default=True)
@precision_option
@click.option(
    "--audit-log",
    default="audit.jsonl",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="JSON lines, one per decision, fsynced before each answer.",
)
@click.option(
    "--token-file",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="File holding the bearer token that /v1/predict and /metrics require.",
)
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1), help="Most images per batch.")
@click.option(
    "--max-wait-ms",
    default=5.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Longest a request waits for others to share its batch.",
)
@click.option(
    "--parallel-batches",
    default=2,
    show_default=True,
    type=click.IntRange(min=1),
    help="Batches scored at once (one's Python steps and round trips overlap another's ONNX call).",
)
@click.option(
    "--max-queue", default=64, show_default=True, type=click.IntRange(min=1), help="Waiting requests before 503."
)
@click.option("--max-body-mb", default=64.0, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=None,
    help="Refuse (422) images declaring more pixels (all frames); default 50000000.",
)
@click.option(
    "--drain-timeout", default=30.0, show_default=True, type=click.FloatRange(min=0), help="Seconds SIGTERM waits."
)
def command(
    artifacts: str,
    host: str,
    port: int,
    device: str,
    precision: str,
    audit_log: str,
    token_file: str | None,
    batch_size: int,
    max_wait_ms: float,
    parallel_batches: int,
    max_queue: int,
    max_body_mb: float,
    max_pixels: int | None,
    drain_timeout: float,
) -> None:
    """Serve the ensemble over HTTP: POST an image (DICOM, PNG or JPEG) as the raw body, get its decision.

    \b
    POST /v1/predict[?heatmap=1]   body: the image's bytes; answer: JSON decision row, request_id, latency_ms
    GET  /v2/health/live           the process answers
    GET  /v2/health/ready          every model loaded, verified and warmed up
    GET  /metrics                  Prometheus text format

    Every decision is appended to the audit log and flushed to disk before its answer is sent. SIGTERM
    stops accepting connections, finishes the requests in flight, then exits 0.

    \b
    Examples:
      tbens serve --artifacts artifacts/quickstart --port 8000
      curl --data-binary @scan.dcm http://127.0.0.1:8000/v1/predict
      tbens serve --artifacts artifacts/quickstart --host 0.0.0.0 --token-file /etc/tbens/token
    """
    token = read_token(token_file, host)
    try:
        import uvicorn

        from tbensemble.serve.app import ServeSettings, create_app
        from tbensemble.serve.audit import AuditLog
    except ImportError as exc:
        raise TbensError(
            f"tbens serve needs the serve extra ({exc.name} missing): pip install 'tbensemble[serve]'"
        ) from None
    from tbensemble.data.decode import set_max_pixels
    from tbensemble.engine.api import load

    if max_pixels is not None:
        set_max_pixels(max_pixels)
    triage = load(artifacts, device=device, precision=precision)
    audit = AuditLog(audit_log)
    settings = ServeSettings(
        max_body_bytes=int(max_body_mb * (1 << 20)),
        batch_size=batch_size,
        max_wait_ms=max_wait_ms,
        parallel_batches=parallel_batches,
        max_queue=max_queue,
        token=token,
    )
    app = create_app(triage, audit, settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=drain_timeout,
    )
    server = uvicorn.Server(config)
    # uvicorn drains on SIGTERM, then re-raises the signal to whatever handler was there before it: with
    # the default one the process would die by the signal (status 143) after a clean drain. This handler
    # makes the re-raised signal a no-op, so a drained server exits 0.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        server.run()
    except SystemExit:
        server.started = False
    if not server.started:
        raise TbensError(f"--host {host} --port {port}: the server could not start (see the log above)")
    log.info("drained and stopped")
