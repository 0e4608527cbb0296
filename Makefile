# Thin facade over CMake. `make` builds the release tree, `make test` runs every test (release and
# sanitizer builds), `make deps` installs the Debian packages the build needs.
JOBS ?= $(shell nproc)
BUILD ?= build
ASAN_BUILD ?= build-asan

.PHONY: all deps build asan test test-fast bench clean demo

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

demo: build
	./scripts/demo.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
