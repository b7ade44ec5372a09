"""Run code in a fresh interpreter: import checks must not see modules this test process already loaded."""

import subprocess
import sys


def assert_prints_ok(code: str) -> None:
    """Run ``code`` with ``python -c``; it must exit 0 and print exactly ``ok``."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
