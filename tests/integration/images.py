"""The local test image, built once per test session by scripts/build_image.sh (no registry needed).

Tests that run containers call `ensure_image()` (or use its tag) rather than building themselves, so
the image is checked once per session however many modules need it.
"""

from __future__ import annotations

import subprocess
import threading

from tests.integration.nodeproc import REPO_ROOT

TEST_IMAGE = "warren-busybox:latest"
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build_image.sh"
# A first build takes a few seconds; an up-to-date image is checked in well under one.
BUILD_TIMEOUT_S = 300.0

_lock = threading.Lock()
_built: str | None = None


def ensure_image() -> str:
    """The test image's tag, after making sure it exists (builds it on the session's first call).

    Raises RuntimeError with the script's output if it cannot be built (no Docker Engine, no
    busybox-static and no package source).
    """
    global _built
    with _lock:
        if _built is None:
            done = subprocess.run(
                ["bash", str(BUILD_SCRIPT), "--tag", TEST_IMAGE],
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT_S,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(
                    f"{BUILD_SCRIPT} failed (exit {done.returncode}):\n{done.stdout}{done.stderr}"
                )
            _built = TEST_IMAGE
        return _built
