#!/usr/bin/env python3
"""A real HTTP webhook receiver for Kizuna's end-to-end tests.

Every delivery is verified with the Standard Webhooks reference library (PyPI
``standardwebhooks``, installed by deploy/local/prereqs.sh into
$KIZUNA_CACHE_DIR/venv-receivers) on the raw body, and recorded. Each endpoint
``/hooks/<name>`` can be told to answer normally, to fail with a status for a number of
requests (then recover), to fail until told otherwise, to hang, or to answer 410 Gone.

Start: ``python webhook_receiver.py`` binds 127.0.0.1 on a free port and prints one JSON line
``{"port": N}`` on stdout. It stops on SIGTERM or when stdin closes (so it never outlives the
test that started it).

Control (JSON):
- ``POST /control/<name>`` ``{"secrets": ["whsec_…"], "mode": "ok"|"fail"|"hang"|"gone",
  "status": 503, "fail_count": N, "retry_after": S}``: configure an endpoint. With
  ``mode: fail`` and ``fail_count`` the endpoint fails N requests, then answers normally.
- ``POST /control/<name>/release``: answer the requests that hang (with 504) and stop hanging.
- ``GET /control/<name>/requests``: every request received, in arrival order: ``webhook_id``,
  ``timestamp``, ``verified`` (by the reference library), ``verify_error``, ``answered`` (the
  status sent back), ``accepted`` (2xx sent back), ``event`` (the parsed body),
  ``received_at``.
"""

import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

HANG_LIMIT_SECONDS = 300


class Endpoint:
    def __init__(self):
        self.secrets = []
        self.mode = "ok"
        self.status = 503
        self.fail_count = None
        self.retry_after = None
        self.requests = []
        self.release = threading.Event()


ENDPOINTS = {}
LOCK = threading.Lock()


def endpoint(name):
    with LOCK:
        if name not in ENDPOINTS:
            ENDPOINTS[name] = Endpoint()
        return ENDPOINTS[name]


def verify(secrets, body, headers):
    """Returns (verified, error). A delivery passes if any configured secret verifies it."""
    if not secrets:
        return False, "no secret configured for this endpoint"
    last = None
    for secret in secrets:
        try:
            Webhook(secret).verify(body, headers)
            return True, None
        except WebhookVerificationError as e:
            last = str(e)
        except Exception as e:  # a malformed header is a failed verification too
            last = f"{type(e).__name__}: {e}"
    return False, last


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _reply(self, status, payload=None, headers=None):
        body = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if payload is not None:
            self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _body(self):
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self):
        parts = urlsplit(self.path).path.strip("/").split("/")
        if len(parts) == 3 and parts[0] == "control" and parts[2] == "requests":
            ep = endpoint(parts[1])
            with LOCK:
                records = list(ep.requests)
            return self._reply(200, records)
        return self._reply(404, {"error": "unknown path"})

    def do_POST(self):
        parts = urlsplit(self.path).path.strip("/").split("/")
        body = self._body()
        if len(parts) == 2 and parts[0] == "control":
            ep = endpoint(parts[1])
            conf = json.loads(body or b"{}")
            with LOCK:
                if "secrets" in conf:
                    ep.secrets = list(conf["secrets"])
                ep.mode = conf.get("mode", ep.mode)
                ep.status = int(conf.get("status", ep.status))
                ep.fail_count = conf.get("fail_count")
                ep.retry_after = conf.get("retry_after")
                if ep.mode != "hang":
                    ep.release.set()
                else:
                    ep.release.clear()
            return self._reply(200, {"ok": True})
        if len(parts) == 3 and parts[0] == "control" and parts[2] == "release":
            ep = endpoint(parts[1])
            with LOCK:
                ep.mode = "ok"
                ep.release.set()
            return self._reply(200, {"ok": True})
        if len(parts) == 2 and parts[0] == "hooks":
            return self._deliver(endpoint(parts[1]), body)
        return self._reply(404, {"error": "unknown path"})

    def _deliver(self, ep, body):
        headers = {k.lower(): v for k, v in self.headers.items()}
        with LOCK:
            secrets = list(ep.secrets)
        verified, error = verify(secrets, body, headers)
        try:
            event = json.loads(body)
        except ValueError:
            event = None
        record = {
            "webhook_id": headers.get("webhook-id"),
            "timestamp": headers.get("webhook-timestamp"),
            "signature": headers.get("webhook-signature"),
            "content_type": headers.get("content-type"),
            "verified": verified,
            "verify_error": error,
            "event": event,
            "received_at": time.time(),
        }
        with LOCK:
            mode = ep.mode
            status = 204
            extra = {}
            if not verified:
                status = 401
            elif mode == "fail":
                status = ep.status
                if ep.retry_after is not None:
                    extra["retry-after"] = str(ep.retry_after)
                if ep.fail_count is not None:
                    ep.fail_count -= 1
                    if ep.fail_count <= 0:
                        ep.mode = "ok"
                        ep.fail_count = None
            elif mode == "gone":
                status = 410
            elif mode == "hang":
                status = None
            record["answered"] = status
            record["accepted"] = status is not None and 200 <= status < 300
            ep.requests.append(record)
        if status is None:
            ep.release.wait(HANG_LIMIT_SECONDS)
            with LOCK:
                record["answered"] = 504
            status = 504
        try:
            self._reply(status, None, extra)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the sender gave up waiting (a timeout), as it should


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(json.dumps({"port": server.server_address[1]}), flush=True)

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)

    def watch_stdin():
        sys.stdin.read()
        stop()

    threading.Thread(target=watch_stdin, daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
