"""Under the emulator: a first call builds and starts each function; its process is then
stopped, so that the next call is a cold start (process start, configuration, AWS and Kafka
clients, then the call), and the one after is warm: init ~ cold - warm. Peak memory is the
function process's VmHWM. Then the projector with one batch of 10,000 KMS records."""
import json, os, subprocess, sys, time, urllib.request
port, run = sys.argv[1], sys.argv[2]
def invoke(fn, path):
    data = open(path, "rb").read()
    t = time.monotonic()
    body = urllib.request.urlopen(urllib.request.Request(
        f"http://127.0.0.1:{port}/2015-03-31/functions/{fn}/invocations", data=data, method="POST"), timeout=1800).read()
    return time.monotonic() - t, body.decode()[:300]
def pids(fn):
    return subprocess.run(["pgrep", "-f", f"target/lambda/{fn}/bootstrap|target/release/{fn}$"], capture_output=True, text=True).stdout.split()
def stop(fn):
    for pid in pids(fn):
        subprocess.run(["kill", pid])
    for _ in range(100):
        if not pids(fn):
            return
        time.sleep(0.05)
def peak_kib(fn):
    out = pids(fn)
    best = 0
    for pid in out:
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmHWM:"):
                    best = max(best, int(line.split()[1]))
        except OSError:
            pass
    return best
# The emulator compiles a function on its first invocation: warm that up, then restart it
# is not possible through the API, so the cold start is measured as the first invocation
# after the build minus a warm one (the build itself is excluded by a throwaway call first).
rows = []
for fn, event in [("keywatch-ingest", "eventbridge.json"), ("keywatch-sweeper", "schedule.json"), ("keywatch-projector", "kafka_small.json")]:
    if event == "kafka_small.json":
        k = json.load(open(f"{run}/kafka.json"))
        k["records"]["keywatch-bench-0"] = k["records"]["keywatch-bench-0"][:1]
        json.dump(k, open(f"{run}/kafka_small.json", "w"))
    invoke(fn, f"{run}/{event}")  # builds and starts it
    stop(fn)
    cold, body = invoke(fn, f"{run}/{event}")
    warm, _ = invoke(fn, f"{run}/{event}")
    rows.append((fn, cold, warm, body))
batch, batch_body = invoke("keywatch-projector", f"{run}/kafka.json")
print(f"{'function':<22} {'cold call s':>11} {'warm call s':>11} {'init ~ s':>9} {'peak RSS MiB':>13}")
for fn, cold, warm, body in rows:
    print(f"{fn:<22} {cold:11.3f} {warm:11.3f} {cold - warm:9.3f} {peak_kib(fn)/1024:13.1f}   {body[:70]}")
print(f"keywatch-projector, one batch of 10,000 KMS records: {batch:.1f} s  {batch_body[:160]}")
print(f"keywatch-projector peak RSS after it: {peak_kib('keywatch-projector')/1024:.1f} MiB")
