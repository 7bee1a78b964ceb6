#!/usr/bin/env python3
"""A webhook receiver for Kiln's HTTP tests, on 127.0.0.1 only (Python's standard library).

    http_server.py --record FILE [--key-file FILE] [--tls-cert CERT --tls-key KEY]

Starts two servers and prints their ports on one line, `MAIN OTHER`, then serves until killed.
Every request either server receives is appended to FILE as one JSON object per line:
`{"server": "main"|"other", "method", "path", "headers": {lowercase: value}, "body",
"signature": "valid"|"invalid"|"missing"|"no-key"}`. The signature is checked here, with
Python's own hmac, against `X-Kiln-Signature-256: sha256=<hex>` (or the header named by the
`X-Test-Signature-Header` request header) and the key in --key-file: an implementation
independent of Kiln's.

Routes of the main server (the other one answers 200 to everything, so that a test can tell
whether it was contacted at all):
  /hook               200 {"ok": true, "url": "https://notebooks.example.com/ready"}
  /status/NNN         answers NNN
  /redirect/same      307 to /hook on this server
  /redirect/other     302 to http://127.0.0.1:OTHER/stolen
  /redirect/downgrade 302 to http://127.0.0.1:MAIN/hook (meant for the TLS server)
  /redirect/loop      302 to itself
  /big?bytes=N        N bytes of `x`
  /slow?ms=N          answers after N ms
  /flaky?fail=N       500 for the first N requests to this path, then 200
"""

import argparse
import hashlib
import hmac
import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

LOCK = threading.Lock()
COUNTS = {}


def make_handler(name, record, key, ports):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def handle_any(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            header_name = headers.get("x-test-signature-header", "X-Kiln-Signature-256").lower()
            given = headers.get(header_name)
            if key is None:
                signature = "no-key"
            elif given is None:
                signature = "missing"
            else:
                expected = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
                signature = "valid" if hmac.compare_digest(expected, given) else "invalid"
            entry = {
                "server": name,
                "method": self.command,
                "path": self.path,
                "headers": headers,
                "body": body.decode("utf-8", "replace"),
                "signature": signature,
            }
            with LOCK:
                with open(record, "a", encoding="utf-8") as f:
                    f.write(json.dumps(entry) + "\n")
            if name == "other":
                return self.answer(200, b"the other server\n")
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            path = url.path
            if path == "/hook":
                return self.answer(
                    200,
                    json.dumps({"ok": True, "url": "https://notebooks.example.com/ready"}).encode(),
                    "application/json",
                )
            if path.startswith("/status/"):
                code = int(path.rsplit("/", 1)[1])
                return self.answer(code, f"status {code} from the test server\n".encode())
            if path == "/redirect/same":
                return self.answer(307, b"", location="/hook")
            if path == "/redirect/other":
                return self.answer(302, b"", location=f"http://127.0.0.1:{ports['other']}/stolen")
            if path == "/redirect/downgrade":
                return self.answer(302, b"", location=f"http://127.0.0.1:{ports['main']}/hook")
            if path == "/redirect/loop":
                return self.answer(302, b"", location="/redirect/loop")
            if path == "/big":
                return self.answer(200, b"x" * int(query.get("bytes", ["0"])[0]))
            if path == "/slow":
                time.sleep(int(query.get("ms", ["0"])[0]) / 1000)
                return self.answer(200, b"slow\n")
            if path == "/flaky":
                with LOCK:
                    COUNTS[path] = COUNTS.get(path, 0) + 1
                    n = COUNTS[path]
                if n <= int(query.get("fail", ["1"])[0]):
                    return self.answer(500, f"failure {n}\n".encode())
                return self.answer(200, f"ok after {n}\n".encode())
            return self.answer(404, b"no such route\n")

        def answer(self, code, body, content_type="text/plain", location=None):
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if location is not None:
                self.send_header("Location", location)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = handle_any

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that refuses our TLS certificate is what some tests want; stay quiet.
        pass


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--record", required=True)
    p.add_argument("--key-file")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    args = p.parse_args()
    key = open(args.key_file, "rb").read().strip() if args.key_file else None
    ports = {}
    main_server = Server(("127.0.0.1", 0), make_handler("main", args.record, key, ports))
    other_server = Server(("127.0.0.1", 0), make_handler("other", args.record, key, ports))
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        main_server.socket = ctx.wrap_socket(main_server.socket, server_side=True)
    ports["main"] = main_server.server_address[1]
    ports["other"] = other_server.server_address[1]
    for s in (main_server, other_server):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print(f"{ports['main']} {ports['other']}", flush=True)
    # Exit when the test that started us goes away (its end of our stdin closes).
    sys.stdin.read()


if __name__ == "__main__":
    main()
