# keywatch — the two commands of the README: `make demo` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
DEMO_DB := target/demo/keywatch.db
DEMO_AS_OF := 2026-11-23T12:00:00Z
CORPUS ?= $(abspath ../shared/cloudtrail-corpus)

.PHONY: demo test lint build bench samples clean

build:
	$(CARGO) build --release --bin keywatch

## Replays the bundled sample data on the embedded store and shows the key that pages.
demo: build
	@rm -rf target/demo && mkdir -p target/demo
	./target/release/keywatch replay --db $(DEMO_DB) --as-of $(DEMO_AS_OF) --quarantine target/demo/rejected.jsonl samples
	@echo
	./target/release/keywatch keys --db $(DEMO_DB)
	@echo
	./target/release/keywatch timeline 1111aaaa-11aa-11aa-11aa-111111111111 --db $(DEMO_DB)

## Everything the tests need is installed here; the corpus tests read ../shared in place.
test: lint
	@test -d "$(CORPUS)" || { echo "error: the CloudTrail corpus is not at $(CORPUS); the corpus tests need it (set CORPUS=…)"; exit 1; }
	KEYWATCH_CORPUS="$(CORPUS)" $(CARGO) test --workspace --all-targets --locked

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

## Generates a corpus of >= 1 million records and measures keywatch beside zcat and DuckDB.
bench: build
	bash bench/run.sh

## Regenerates the sample data (deterministic).
samples:
	python3 scripts/make_samples.py

clean:
	$(CARGO) clean
	rm -rf bench/corpus target/demo
