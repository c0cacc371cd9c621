#!/usr/bin/env python3
"""An HTTP proxy for fault tests: in front of the moto server, it forwards every request
and answers some DynamoDB requests as DynamoDB does when a table is over its throughput
(HTTP 400, ProvisionedThroughputExceededException), in a fixed pattern so that a run is
repeatable. It also counts requests by operation (X-Amz-Target, or SNS/SQS Action).

It also estimates the DynamoDB capacity units the requests consume (write_units, read_units
in the counts), for the cost model.

Usage: fault_proxy.py --upstream http://127.0.0.1:15000 [--throttle N/M] [--outage A:B]
  --throttle N/M   of every M DynamoDB requests, throttle the first N (default 0/1: none)
  --outage A+S     from the A-th DynamoDB request on, throttle every DynamoDB request
                   for S seconds (a stretch longer than a client's retries)
Prints "listening on PORT" once ready. GET /__proxy/counts returns the counts as JSON.
"""
import argparse
import http.client
import json
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

THROTTLED = json.dumps({
    "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
    "message": "The level of configured provisioned throughput for the table was exceeded.",
}).encode()


class State:
    def __init__(self, upstream, throttle, every, outage):
        self.upstream = urllib.parse.urlsplit(upstream)
        self.throttle, self.every = throttle, every
        self.outage = outage
        self.outage_ends = None
        self.lock = threading.Lock()
        self.dynamodb_seen = 0
        self.counts = {"throttled": 0, "write_units": 0, "read_units": 0}


def write_units(op, body):
    """DynamoDB write capacity units a write request consumes, estimated from its JSON: one
    per started KB of each item put (attribute names and values; the JSON's quotes and type
    tags make it a slight overestimate), one per update or delete, twice that in a transaction."""
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        return 0

    def item(i):
        return max(1, -(-len(json.dumps(i, separators=(",", ":"))) // 1024))

    if op.endswith(".PutItem"):
        return item(request.get("Item", {}))
    if op.endswith(".UpdateItem") or op.endswith(".DeleteItem"):
        return 1
    if op.endswith(".BatchWriteItem"):
        return sum(item(r["PutRequest"]["Item"]) if "PutRequest" in r else 1
                   for rs in request.get("RequestItems", {}).values() for r in rs)
    if op.endswith(".TransactWriteItems"):
        return 2 * sum(item(t["Put"]["Item"]) if "Put" in t else 1 for t in request.get("TransactItems", []))
    return 0


def read_units(op, response):
    """Read capacity units of a read, estimated from the size of its answer (strongly
    consistent: one per started 4 KB; a batch's items are at least one each)."""
    if not any(op.endswith(r) for r in (".GetItem", ".BatchGetItem", ".Query", ".Scan")):
        return 0
    units = max(1, -(-len(response) // 4096))
    if op.endswith(".BatchGetItem"):
        try:
            answered = sum(len(v) for v in json.loads(response).get("Responses", {}).values())
        except ValueError:
            answered = 0
        units = max(units, answered)
    return units


def handler(state):
    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path == "/__proxy/counts":
                with state.lock:
                    body = json.dumps(state.counts).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.forward(b"")

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            self.forward(self.rfile.read(length))

        do_PUT = do_POST
        do_DELETE = do_GET
        do_HEAD = do_GET

        def operation(self, body):
            target = self.headers.get("X-Amz-Target")
            if target:
                return target
            if body.startswith(b"Action=") or b"&Action=" in body:
                return urllib.parse.parse_qs(body.decode("utf-8", "replace")).get("Action", ["?"])[0]
            return f"{self.command} {self.path.split('?')[0]}"

        def forward(self, body):
            op = self.operation(body)
            throttle = False
            with state.lock:
                state.counts[op] = state.counts.get(op, 0) + 1
                if op.startswith("DynamoDB_"):
                    state.counts["write_units"] += write_units(op, body)
                    seen = state.dynamodb_seen
                    start, seconds = state.outage
                    if seconds and seen == start:
                        state.outage_ends = time.monotonic() + seconds
                    in_outage = state.outage_ends is not None and time.monotonic() < state.outage_ends
                    throttle = seen % state.every < state.throttle or in_outage
                    state.dynamodb_seen += 1
                    if throttle:
                        state.counts["throttled"] += 1
            if throttle:
                self.send_response(400)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("x-amzn-ErrorType", "ProvisionedThroughputExceededException")
                self.send_header("Content-Length", str(len(THROTTLED)))
                self.end_headers()
                self.wfile.write(THROTTLED)
                return
            up = http.client.HTTPConnection(state.upstream.hostname, state.upstream.port, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
            up.request(self.command, self.path, body=body or None, headers=headers)
            resp = up.getresponse()
            data = resp.read()
            if op.startswith("DynamoDB_") and resp.status == 200:
                with state.lock:
                    state.counts["read_units"] += read_units(op, data)
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("connection", "keep-alive", "transfer-encoding", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            up.close()

    return Proxy


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--upstream", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--throttle", default="0/1")
    p.add_argument("--outage", default="0+0")
    a = p.parse_args()
    n, m = (int(x) for x in a.throttle.split("/"))
    start, seconds = a.outage.split("+")
    outage = (int(start), float(seconds))
    server = ThreadingHTTPServer(("127.0.0.1", a.port), handler(State(a.upstream, n, m, outage)))
    print(f"listening on {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
