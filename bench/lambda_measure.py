"""Runs each function's release binary under a minimal Lambda Runtime API (the interface
AWS's runtime and the emulators implement: GET .../invocation/next, POST .../response).

- init: from process start to its first GET .../next, which is what AWS reports as Init
  Duration (configuration, AWS SDK and Kafka clients), in the measured run and as the
  median of further cold starts;
- each call: from handing out the event to receiving the response;
- peak memory: the process's maximum resident set (VmHWM) after its calls.
The projector gets one small batch, then one batch of 10,000 KMS records; its DynamoDB
requests and estimated capacity units for that batch are counted at a proxy before moto."""
import http.server, json, os, subprocess, sys, threading, time, uuid

run = sys.argv[1]
events, results, lock = [], [], threading.Condition()


class RuntimeApi(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):  # .../runtime/invocation/next
        with lock:
            # The generation of the server that took the request, not the current one: a
            # request of a function already stopped must never take the next one's event.
            generation = self.server.generation
            if state["generation"] != generation:
                return
            if "first_next" not in state:
                state["first_next"] = time.monotonic()
                lock.notify_all()
            while not events and state["generation"] == generation:
                lock.wait()
            if state["generation"] != generation:
                return  # a request of a function already stopped: leave the event alone
            event = events.pop(0)
        state["sent"] = time.monotonic()
        body = event.encode()
        self.send_response(200)
        self.send_header("Lambda-Runtime-Aws-Request-Id", str(uuid.uuid4()))
        self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 900_000))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:bench")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except ConnectionError:
            pass  # the function was stopped while waiting for its next event

    def do_POST(self):  # .../response or .../error
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        self.send_response(202)
        self.end_headers()
        with lock:
            results.append((time.monotonic() - state["sent"], self.path.rsplit("/", 1)[-1], body))
            lock.notify_all()


state = {"generation": 0}


def measure(fn, payloads, env_extra=None, after_call=None):
    with lock:
        generation = state.get("generation", 0) + 1
        state.clear()
        state["generation"] = generation
        events.clear()
        results.clear()
        lock.notify_all()
    # A Runtime API server of this function's own (a request the previous function left in
    # flight goes to the previous server, and finds its generation over).
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RuntimeApi)
    server.generation = generation
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api = f"127.0.0.1:{server.server_address[1]}"
    env = dict(os.environ, AWS_LAMBDA_RUNTIME_API=api, AWS_LAMBDA_FUNCTION_NAME=fn,
               AWS_LAMBDA_FUNCTION_MEMORY_SIZE="1024", AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
               AWS_LAMBDA_LOG_FORMAT="JSON", AWS_LAMBDA_LOG_LEVEL="WARN", **(env_extra or {}))
    start = time.monotonic()
    p = subprocess.Popen([f"target/release/{fn}"], env=env, stdout=subprocess.DEVNULL, stderr=open(f"{run}/{fn}.log", "w"))
    if not payloads:  # a cold start alone: until the first GET .../next
        deadline = time.monotonic() + 30
        with lock:
            while "first_next" not in state and p.poll() is None and time.monotonic() < deadline:
                lock.wait(0.05)
    for n, payload in enumerate(payloads, start=1):
        with lock:
            events.append(payload)
            lock.notify_all()
            while len(results) < n and p.poll() is None:
                lock.wait(1)
        if after_call:
            after_call(n)
    peak = 0
    for line in open(f"/proc/{p.pid}/status"):
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1])
    p.terminate()
    p.wait()
    server.shutdown()
    server.server_close()
    init = state.get("first_next", start) - start
    return init, list(results), peak


def read(name):
    return open(f"{run}/{name}").read()


small = json.loads(read("kafka.json"))
small["records"]["keywatch-bench-0"] = small["records"]["keywatch-bench-0"][:1]
rows = [
    ("keywatch-ingest", [read("eventbridge.json"), read("eventbridge.json")]),
    ("keywatch-sweeper", [read("schedule.json"), read("schedule.json")]),
    ("keywatch-projector", [json.dumps(small), read("kafka.json")]),
]
# The projector talks to moto through the counting proxy (scripts/fault_proxy.py, no faults):
# its DynamoDB requests and estimated capacity units for the 10,000-record batch.
proxy = subprocess.Popen([sys.executable, "scripts/fault_proxy.py", "--upstream", os.environ["AWS_ENDPOINT_URL"]],
                         stdout=subprocess.PIPE, text=True)
proxy_url = "http://127.0.0.1:" + proxy.stdout.readline().split()[-1]
snapshots = []


def proxy_counts(_n):
    import urllib.request
    snapshots.append(json.loads(urllib.request.urlopen(proxy_url + "/__proxy/counts").read()))


print(f"{'function':<20} {'init s':>7} {'first call s':>12} {'second call s':>13} {'peak RSS MiB':>12}  second response")
for fn, payloads in rows:
    counting = fn == "keywatch-projector"
    init, res, peak = measure(fn, payloads, {"AWS_ENDPOINT_URL": proxy_url} if counting else None,
                              proxy_counts if counting else None)
    calls = [f"{d:.3f}" if kind == "response" else f"ERR {d:.3f}" for d, kind, _ in res]
    while len(calls) < 2:
        calls.append("-")
    last = res[-1][2][:110] if res else "(no response)"
    print(f"{fn:<20} {init:7.3f} {calls[0]:>12} {calls[1]:>13} {peak / 1024:12.1f}  {last}")
print("(the projector's second call is one batch of 10,000 KMS records, against moto's DynamoDB and SNS)")
# One start is noisy on a shared 2-core machine (9 to 73 ms across sessions for the same
# binaries): each function is started COLD_STARTS more times, and the aim is held against
# the median.
COLD_STARTS = 9
for fn, _ in rows:
    inits = sorted(measure(fn, [])[0] for _ in range(COLD_STARTS))
    median = inits[len(inits) // 2]
    print(f"{fn} init over {COLD_STARTS} cold starts: median {median * 1000:.1f} ms "
          f"(min {inits[0] * 1000:.1f}, max {inits[-1] * 1000:.1f}), aim <= 30 ms: "
          f"{'met' if median <= 0.030 else 'not met'}")
proxy.terminate()
if len(snapshots) == 2:
    before, after = snapshots
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    ops = {k.split(".")[-1]: v for k, v in delta.items() if k.startswith("DynamoDB_") and v}
    requests = sum(ops.values())
    print(f"projector, one batch of 10,000 KMS records: {requests} DynamoDB requests "
          f"({', '.join(f'{k} {v}' for k, v in sorted(ops.items()))}), aim <= 100: {requests / 100:.1f}x the aim; "
          f"~{delta.get('write_units', 0)} write and ~{delta.get('read_units', 0)} read capacity units; "
          f"SNS Publish {delta.get('Publish', 0)}, PublishBatch {delta.get('PublishBatch', 0)}, "
          f"CloudWatch PutMetricData {delta.get('PutMetricData', 0)}")
