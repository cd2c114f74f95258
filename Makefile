# Makefile - a thin wrapper over meson/ninja. See README.md.
BUILD ?= build
ASAN_BUILD ?= build-asan
LISTEN ?= 127.0.0.1:8080
DATA ?= ./data
MESON_OPTS ?=

.PHONY: all deps build run test test-fast asan bench clean

all: build

deps:
	@tools/install-deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD) --buildtype=debugoptimized $(MESON_OPTS)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

run: build
	./$(BUILD)/yingyun serve --listen $(LISTEN) --data $(DATA)

# every test suite; prints "N passed, N failed" last
test: build
	@tools/run-tests.sh $(BUILD)

test-fast: build
	meson test -C $(BUILD) --suite unit --print-errorlogs

# Yingyun against Orthanc and nginx (docs/performance.md); BENCH_ARGS=--quick: short run
bench: build
	bench/run $(BENCH_ARGS)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
