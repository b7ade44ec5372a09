"""The service against the CLI on the same images, in one interleaved run, and a kill -9 under load.

    flock /tmp/tbens-heavy.lock python scripts/bench_serve.py --artifacts artifacts/quickstart \\
        --images data/demo/test --concurrency 8 --duration 60 [--kill-test]

1. ``tbens predict`` on the images (repeated ``--repeat`` times through symlinks, so it runs long enough),
   and on one image, timed as subprocesses: end-to-end and marginal (start-up subtracted) images per second,
   with ``--decisions`` (the rows the service answers: like for like) and without (the submission only).
2. ``tbens serve`` on a free loopback port; ``load_test.run_load`` for ``--duration`` seconds; SIGTERM; the
   exit status must be 0 and every 200 must have its audit line.
3. ``tbens predict`` again (the machine is shared and noisy: the CLI figure is the mean of both runs).
4. With ``--kill-test``: a server under load is killed with SIGKILL, restarted on the same audit log, and
   the log must have no torn line and a line for every request that got a 200.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_test import missing_audit_lines, read_images, run_load

READY_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(
    artifacts: str, audit_log: Path, port: int, log_path: Path, options: tuple[str, ...] = ()
) -> subprocess.Popen:
    """``tbens serve`` in a subprocess, returned once ``/v2/health/ready`` answers 200."""
    command = [sys.executable, "-m", "tbensemble", "serve", "--artifacts", artifacts, "--port", str(port)]
    command += ["--audit-log", str(audit_log), *options]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}; see {log_path}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1.0).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"server not ready after {READY_TIMEOUT_S:.0f} s; see {log_path}")


def time_cli(artifacts: str, images: list[Path], work: Path, decisions: bool) -> float:
    """Wall seconds of ``tbens predict`` on ``images`` (a folder of symlinks), as a user would run it; with
    ``decisions``, also writing the decision rows (``--decisions``), the work the service does per image."""
    folder = work / f"cli-{len(images)}"
    if not folder.exists():
        folder.mkdir()
        for i, path in enumerate(images):
            (folder / f"{i:05d}_{path.name}").symlink_to(path.resolve())
    command = [sys.executable, "-m", "tbensemble", "-q", "predict", "--artifacts", artifacts]
    command += ["--images", str(folder), "--out", str(work / "submission.csv")]
    if decisions:
        command += ["--decisions", str(work / "decisions.csv")]
    began = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def cli_rates(artifacts: str, images: list[Path], work: Path, decisions: bool) -> tuple[float, float]:
    """(end-to-end, marginal) images per second of the CLI; marginal leaves out start-up and model loading."""
    all_s = time_cli(artifacts, images, work, decisions)
    one_s = time_cli(artifacts, images[:1], work, decisions)
    return len(images) / all_s, (len(images) - 1) / max(all_s - one_s, 1e-9)


CLI_MODES = {"decisions": True, "scores": False}
"""``tbens predict --decisions`` (the rows the service answers: like for like) and the plain submission."""


def all_cli_rates(artifacts: str, images: list[Path], work: Path) -> dict[str, tuple[float, float]]:
    return {mode: cli_rates(artifacts, images, work, decisions) for mode, decisions in CLI_MODES.items()}


def server_options(args: argparse.Namespace) -> tuple[str, ...]:
    options = ("--batch-size", str(args.batch_size), "--max-wait-ms", str(args.max_wait_ms))
    return (*options, "--parallel-batches", str(args.parallel_batches))


def serve_under_load(args: argparse.Namespace, work: Path) -> None:
    port, audit_log = free_port(), work / "audit.jsonl"
    server = start_server(args.artifacts, audit_log, port, work / "serve.log", server_options(args))
    try:
        result = run_load(f"http://127.0.0.1:{port}", read_images(args.images), args.concurrency, args.duration)
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=60)
    missing = missing_audit_lines(audit_log, result.request_ids)
    print(f"service, concurrency {args.concurrency}: {result.summary()}")
    print(f"SIGTERM exit status {code}; audit lines missing for {len(missing)} of {len(result.request_ids)} answers")
    args.service_rate = result.throughput


def kill_test(args: argparse.Namespace, work: Path) -> None:
    port, audit_log = free_port(), work / "audit-kill.jsonl"
    server = start_server(args.artifacts, audit_log, port, work / "serve-kill.log", server_options(args))

    killer = threading.Timer(args.kill_after, server.send_signal, (signal.SIGKILL,))
    killer.start()
    result = run_load(f"http://127.0.0.1:{port}", read_images(args.images), args.concurrency, args.kill_after + 1)
    killer.join()
    server.wait(timeout=30)
    size_before = audit_log.stat().st_size
    torn = size_before > 0 and not audit_log.read_bytes().endswith(b"\n")
    restarted = start_server(args.artifacts, audit_log, port, work / "serve-kill.log")
    restarted.send_signal(signal.SIGTERM)
    restarted.wait(timeout=60)
    missing = missing_audit_lines(audit_log, result.request_ids)
    print(
        f"kill -9 after {args.kill_after:.0f} s under load: {result.ok} answers 200, "
        f"{result.statuses.get('connection error', 0)} connection errors; torn last line before restart: {torn}; "
        f"after restart: {len(missing)} of {len(result.request_ids)} answered requests missing from the log"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", required=True)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=5, help="Times the CLI goes over the images.")
    parser.add_argument("--batch-size", type=int, default=8, help="The server's --batch-size.")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="The server's --max-wait-ms.")
    parser.add_argument("--parallel-batches", type=int, default=2, help="The server's --parallel-batches.")
    parser.add_argument("--kill-test", action="store_true")
    parser.add_argument("--kill-after", type=float, default=5.0)
    args = parser.parse_args()
    files = [p for _, p in sorted((p.name, p) for p in args.images.iterdir() if p.is_file())]
    images = [p for p in files if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".dcm", ".dicom")] * args.repeat
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        work = Path(tmp)
        before = all_cli_rates(args.artifacts, images, work)
        serve_under_load(args, work)
        after = all_cli_rates(args.artifacts, images, work)
        for mode in CLI_MODES:
            end_to_end, marginal = (before[mode][0] + after[mode][0]) / 2, (before[mode][1] + after[mode][1]) / 2
            print(
                f"tbens predict ({mode}) on {len(images)} images: {end_to_end:.1f} img/s end to end, "
                f"{marginal:.1f} img/s without start-up (runs: {before[mode][1]:.1f}, {after[mode][1]:.1f})"
            )
            print(
                f"service / CLI ({mode}) throughput: {args.service_rate / marginal:.2f} (vs CLI without start-up), "
                f"{args.service_rate / end_to_end:.2f} (vs CLI end to end)"
            )
        if args.kill_test:
            kill_test(args, work)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
