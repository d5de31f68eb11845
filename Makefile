# Genetika: `make run` takes a fresh machine to a running pipeline, `make test` to a passing
# test suite. Both install what they need first (scripts/install-deps.sh, idempotent).
SHELL := /bin/bash
CONFIG ?= config.json
SWIFT_BUILD_FLAGS ?=
GENETIKA := .build/debug/genetika

.PHONY: all deps build release test check-imports test-release run e2e broker-start broker-stop clean help bench bench-xlsx scale-out compose-check compose-smoke faults chaos

all: build

help:
	@echo "make deps          install Debian packages, librdkafka >= 2.1 and the Tansu broker"
	@echo "make build         build genetika (debug)"
	@echo "make test          deps + check-imports (Package.swift = the imports) + swift test (tests start their own broker)"
	@echo "make test-release  the xlsx reader's tests on a release build (its only unsafe compiler flag applies there)"
	@echo "make run           deps + local broker + genetika run --config $(CONFIG)"
	@echo "make e2e           the whole pipeline against a fresh broker, checked end to end"
	@echo "make scale-out     two processes sharing the groups and PostgreSQL; one is killed mid-stream"
	@echo "make faults        inject faults (broker loss, corrupt file, full disk, ...) and check the outcome"
	@echo "make chaos         random faults across 3 members in network namespaces, then a checker (CHAOS_SECONDS, CHAOS_SEED)"
	@echo "make compose-check validate compose.yaml (docker-compose config) and what a stack relies on"
	@echo "make compose-smoke run the Dockerfile-built binary with compose's environment against a local broker"
	@echo "make bench         the whole pipeline against the Python design and kcat (docs/benchmarks.md)"
	@echo "make bench-xlsx    the xlsx reader against python-calamine and openpyxl"
	@echo "make broker-start  start a local broker on 127.0.0.1:9092 with Genetika's topics"
	@echo "make broker-stop   stop it"
	@echo "make clean         remove build output and local state"

deps:
	@scripts/install-deps.sh

build: deps
	swift build $(SWIFT_BUILD_FLAGS)

release: deps
	swift build -c release $(SWIFT_BUILD_FLAGS)

test: deps check-imports
	swift test $(SWIFT_BUILD_FLAGS)

# Package.swift's dependencies equal each target's imports (scripts/check_imports.py).
check-imports:
	@python3 scripts/check_imports.py

# GenetikaXlsx is built with -enforce-exclusivity=unchecked in release builds only: its tests
# run on that build too, so the flag can never hide a bug the debug tests would not see.
test-release: deps
	swift test -c release --filter XlsxTests $(SWIFT_BUILD_FLAGS)

broker-start: deps
	@scripts/broker.sh start

broker-stop:
	@scripts/broker.sh stop

run: build broker-start
	$(GENETIKA) run --config $(CONFIG)

clean:
	rm -rf .build state out .broker

bench: deps
	@scripts/bench.sh

bench-xlsx: deps
	@scripts/bench-xlsx.sh

e2e: deps
	@scripts/e2e.sh

scale-out: deps
	@scripts/scale-out.sh

faults: build
	@python3 scripts/faults.py .build/debug/genetika

# Validates compose.yaml with Debian's docker-compose (v1), installed if missing, with and
# without the postgres profile, and checks its guarantees; no Docker engine is needed.
compose-check:
	@command -v docker-compose >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; }
	@python3 -c 'import yaml' 2>/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-yaml >/dev/null; }
	@python3 scripts/compose_check.py

# The Dockerfile's build command, then the compose service's environment and command.
compose-smoke: deps compose-check
	swift build -c release --static-swift-stdlib --product genetika
	@python3 scripts/compose_smoke.py "$$(swift build -c release --show-bin-path)/genetika"

# A randomized fault schedule (nemesis) against 3 members in network namespaces, a durable
# broker and PostgreSQL, then a checker (scripts/chaos.py). CHAOS_SECONDS (300), CHAOS_SEED.
chaos: build
	@command -v nft >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables >/dev/null; }
	@python3 -c 'import moto.server' 2>/dev/null || pip install -q 'moto[server]'
	@python3 scripts/chaos.py .build/debug/genetika
