#!/usr/bin/env python3
"""A small customer-tier HTTP service for the async-enrichment example.

    tier_service.py [--port 0] [--latency-ms 20] [--jitter-ms 0] [--mode ok]

GET /customers/<id> answers {"customer_id": <id>, "tier": <tier>} after the
injected latency (latency + a uniform random jitter, per request). The tier of
c-<k> is "gold" when k % 10 == 0, else "silver" when k % 3 == 0, else
"bronze": deterministic, so results can be checked.

--mode garbage answers 200 with a body that is not JSON; --mode error answers
500. The first line printed is "listening on 127.0.0.1:<port>" (the port
chosen when --port is 0). HTTP/1.1 with keep-alive, one thread per
connection. Stops on SIGTERM/SIGINT; loopback only.
"""
import argparse
import http.server
import json
import random
import signal
import socket
import sys
import time


def tier(customer):
    try:
        k = int(customer.split("-", 1)[1])
    except (IndexError, ValueError):
        return None
    if k % 10 == 0:
        return "gold"
    return "silver" if k % 3 == 0 else "bronze"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--jitter-ms", type=float, default=0.0)
    ap.add_argument("--mode", choices=["ok", "garbage", "error"], default="ok")
    args = ap.parse_args()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            # Headers and body go out in two writes: without this, Nagle's
            # algorithm holds the body until the client's delayed ACK (40 ms).
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_GET(self):
            delay = args.latency_ms + random.uniform(0, args.jitter_ms)
            if delay > 0:
                time.sleep(delay / 1000.0)
            prefix = "/customers/"
            customer = self.path[len(prefix):] if self.path.startswith(prefix) else ""
            t = tier(customer)
            if args.mode == "error":
                self.reply(500, b'{"error":"internal"}')
            elif args.mode == "garbage":
                self.reply(200, b"<html>tier service</html>")
            elif t is None:
                self.reply(404, b'{"error":"no such customer"}')
            else:
                body = json.dumps({"customer_id": customer, "tier": t}).encode()
                self.reply(200, body)

        def reply(self, status, body):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    class Server(http.server.ThreadingHTTPServer):
        # The default listen backlog of 5 drops the SYNs of a burst of
        # clients (an enricher opens up to `capacity` connections at once),
        # which then wait a second or more to retry.
        request_queue_size = 1024

        def handle_error(self, request, client_address):
            # A client that went away (a killed job) is no news.
            pass

    server = Server(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass


if __name__ == "__main__":
    main()
