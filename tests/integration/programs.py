"""Small programs that process-runtime tasks run in the integration tests and benchmarks."""

from __future__ import annotations

import textwrap
from pathlib import Path

# GET / answers the task's ID; GET /health answers 500 once the file SICK_DIR/<task id> exists (if a
# directory was given); every answer closes its connection.
_TASK_ID_SERVER = textwrap.dedent(
    """
    import http.server, os, signal

    if IGNORE_SIGTERM:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    TASK = os.environ["WARREN_TASK_ID"]
    SICK_DIR = SICK_DIR_VALUE

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            sick = SICK_DIR is not None and os.path.exists(os.path.join(SICK_DIR, TASK))
            status, body = (500, b"sick") if self.path == "/health" and sick else (200, TASK.encode())
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    http.server.ThreadingHTTPServer.allow_reuse_address = True
    http.server.ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
    """
)


def task_id_server(port: int, *, sick_dir: Path | None = None, ignore_sigterm: bool = False) -> str:
    """The source of an HTTP server on `port` (every address) that answers with its task's ID; with
    `sick_dir`, its /health fails once a file named after the task is there; with `ignore_sigterm`, a
    stop leaves it answering until it is killed (stop_timeout_s)."""
    return (
        _TASK_ID_SERVER.replace("IGNORE_SIGTERM", repr(ignore_sigterm))
        .replace("SICK_DIR_VALUE", repr(None if sick_dir is None else str(sick_dir)))
        .replace("PORT", str(port))
    )
