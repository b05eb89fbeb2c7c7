# The two commands a newcomer needs: `make demo` and `make test` (see README.md).
SWIFT ?= swift
# bash, for PIPESTATUS in the test recipe.
SHELL := /bin/bash
TURF_DEBUG := .build/debug/turf
TURF_RELEASE := .build/release/turf

.PHONY: deps build release demo test format lint bench fuzz fuzz-build fuzz-merge clean

deps:
	@bash scripts/install-deps.sh

build: deps
	$(SWIFT) build --product turf

release: deps
	$(SWIFT) build -c release --product turf

# Installs what is missing, builds, and starts a local match against bots.
demo: release
	$(TURF_RELEASE) demo

# Installs what is missing and runs every test (CI runs exactly this through .ci/run). A warning from
# Sources/ or Tests/ in the build fails it (scripts/check-warnings.sh; CI builds from scratch, so
# every file is compiled and every warning seen).
# The style is the formatter's (.swift-format: 4 spaces, 120 columns): `make format` applies it,
# `make lint` (part of `make test`) fails when a file does not follow it.
FORMAT_PATHS := Sources Tests Package.swift Fuzz/Sources Fuzz/Package.swift

format:
	$(SWIFT) format format --in-place --recursive --parallel $(FORMAT_PATHS)

lint:
	$(SWIFT) format lint --strict --recursive --parallel $(FORMAT_PATHS)

test: deps lint
	@mkdir -p .build
	$(SWIFT) build --build-tests 2>&1 | tee .build/build.log; exit $${PIPESTATUS[0]}
	@scripts/check-warnings.sh .build/build.log
	$(SWIFT) test --skip-build --parallel --num-workers 2 2>&1 | tee .build/test.log | grep -vE '^(Test Case .* (started|passed)|◇ Test .* started)' ; exit $${PIPESTATUS[0]}

bench: release
	$(TURF_RELEASE) bench replay --json
	$(TURF_RELEASE) bench late-op --json
	$(TURF_RELEASE) bench crypto --json
	$(TURF_RELEASE) bench session --json
	$(TURF_RELEASE) bench flood --json
	$(TURF_RELEASE) bench dht --nodes 10000 --churn 0.2 --json
	$(TURF_RELEASE) bench render --json
	$(TURF_RELEASE) bench netmatch --json

# libFuzzer targets for every parser of untrusted bytes (Fuzz/, a separate package so the game is never
# instrumented). Runs each for FUZZ_SECONDS over the regression corpus in Fuzz/Corpus/; new inputs
# go to .build/fuzz-corpus/, crashes to fuzz-artifacts/. `make fuzz-merge` folds the new inputs
# into the committed corpus, minimised.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := noise transport frames krpc replay map journal
FUZZ_BUILD := --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp

fuzz-build:
	cd Fuzz && $(SWIFT) build $(FUZZ_BUILD)

fuzz: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p .build/fuzz-corpus/$$t fuzz-artifacts/$$t; \
	  echo "== fuzz-$$t for $(FUZZ_SECONDS) s"; \
	  Fuzz/.build/debug/fuzz-$$t -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -print_final_stats=1 \
	    -artifact_prefix=fuzz-artifacts/$$t/ .build/fuzz-corpus/$$t Fuzz/Corpus/$$t; \
	done

fuzz-merge: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
	  Fuzz/.build/debug/fuzz-$$t -merge=1 -rss_limit_mb=4096 Fuzz/Corpus/$$t .build/fuzz-corpus/$$t; \
	done

clean:
	rm -rf .build
