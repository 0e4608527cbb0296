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

# The sanitizer pass runs the same tests with BITLLM_TEST_QUICK=1 (smaller sizes where a test
# offers them) so that the whole suite stays within a few minutes on two cores.
test: build asan
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	cd $(ASAN_BUILD) && BITLLM_TEST_QUICK=1 ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j $(JOBS)

demo: build
	./scripts/demo.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
