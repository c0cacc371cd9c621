#!/usr/bin/env bash
# make bench-lambda: each function's cold start (init) and peak memory under a Lambda Runtime
# API (bench/lambda_measure.py; release builds), and the projector's time for one batch of
# 10,000 KMS records, against tansu and moto started here on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
KAFKA_PORT=19992 MOTO_PORT=15900 TOPIC=keywatch-bench
RUN=target/bench-lambda
source bench/services.sh
export AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
cargo build --release -p keywatch-ingest -p keywatch-projector -p keywatch-sweeper -p keywatch-cli 2>&1 | tail -1
python3 bench/lambda_setup.py "$MOTO_PORT" "$RUN"
export KEYWATCH_KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT KEYWATCH_KAFKA_TOPIC=$TOPIC
export KEYWATCH_TABLE=keywatch-bench KEYWATCH_SNS_TOPIC_ARN=arn:aws:sns:us-east-1:123456789012:keywatch-bench
python3 bench/lambda_measure.py "$RUN"
# The projector's use case without the network: CPU per 10,000-record batch, with the
# services stopped so that they take no CPU from it.
stop_bench_services
cargo run -q --release -p keywatch-pipeline --example batch_cpu -- "$RUN/records.jsonl" 10000
