# The two commands a newcomer needs: `make demo` and `make test` (see README.md).
SWIFT ?= swift
TURF_DEBUG := .build/debug/turf
TURF_RELEASE := .build/release/turf

.PHONY: deps build release demo test bench fuzz clean

deps:
	@bash scripts/install-deps.sh

build: deps
	$(SWIFT) build --product turf

release: deps
	$(SWIFT) build -c release --product turf

# Installs what is missing, builds, and starts a local match against bots.
demo: release
	$(TURF_RELEASE) demo

# Installs what is missing and runs every test (CI runs exactly this through .ci/run).
test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --parallel --num-workers 2 2>&1 | tee .build/test.log | grep -vE '^(Test Case .* (started|passed)|◇ Test .* started)' ; exit $${PIPESTATUS[0]}

bench: release
	$(TURF_RELEASE) bench replay --json
	$(TURF_RELEASE) bench late-op --json
	$(TURF_RELEASE) bench dht --nodes 10000 --churn 0.2 --json

clean:
	rm -rf .build
