# Thin facade over CMake. `make` builds the release tree, `make test` runs every test (release and
# sanitizer builds), `make deps` installs the Debian packages the build needs, `make fuzz` builds
# the libFuzzer harnesses with clang (build-fuzz/) and `make fuzz-smoke` runs each for a bounded
# time (FUZZ_TIME seconds, default 20; docs/fuzzing.md).
JOBS ?= $(shell nproc)
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_TIME ?= 20

.PHONY: all deps build asan test test-fast bench clean demo fuzz fuzz-smoke

all: build

deps:
	./scripts/deps.sh

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

asan:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DBITLLM_SANITIZE=ON >/dev/null
	cmake --build $(ASAN_BUILD) -j $(JOBS)

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# Release tests, then the sanitizer pass (BITLLM_TEST_QUICK=1 sizes, so the whole suite stays
# within a few minutes on two cores) whatever the release pass gave; one summary line for both,
# non-zero exit if either failed (scripts/test.sh).
test:
	JOBS=$(JOBS) BUILD=$(BUILD) ASAN_BUILD=$(ASAN_BUILD) ./scripts/test.sh

fuzz:
	cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Release \
	  -DBITLLM_FUZZ=ON >/dev/null
	cmake --build $(FUZZ_BUILD) -j $(JOBS)

fuzz-smoke: fuzz
	FUZZ_BUILD=$(FUZZ_BUILD) ./fuzz/run.sh $(FUZZ_TIME)

demo: build
	./scripts/demo.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
