#!/usr/bin/env bash
# Produce-to-page latency of `keywatch run` (release build) with a real broker (tansu) and
# moto for SNS and SQS, both started here on loopback ports of their own, beside the broker's
# own produce-to-consume latency measured in the same run (crates/keywatch-cli/examples/
# page_latency.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
KAFKA_PORT=${LATENCY_KAFKA_PORT:-19982} MOTO_PORT=${LATENCY_MOTO_PORT:-15982}
RUN=target/bench-latency
source bench/services.sh
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
cargo build -q --release -p keywatch-cli
# Two loads: 50 records of noise per page (about 1,500 records/s here), then 500 (about
# 14,000/s: the run's batches fill up).
for noise in ${NOISE:-50 500}; do
  cargo run -q --release -p keywatch-cli --example page_latency -- \
    127.0.0.1:$KAFKA_PORT http://127.0.0.1:$MOTO_PORT target/release/keywatch "${PAGES:-200}" "$noise" ${RUN_ARGS:-}
done
