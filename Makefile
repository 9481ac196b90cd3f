# The two README commands. CMake does the real work; this file only orders the steps.
#   make demo   install deps, build, provision a sample fleet end to end
#   make check  install deps, build, run every test (CTest), then again under ASan+UBSan
#   make bench  build optimised, run the benchmarks in bench/
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: deps build build-asan check check-asan demo bench clean device-size rehearse fuzz install deb check-idf

deps:
	@sh scripts/install-deps

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

build-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DFK_SANITIZE=ON >/dev/null
	cmake --build $(ASAN_BUILD) -j $(JOBS)

# The layering and import-cycle checks first (seconds, and a violation is a design error, not
# a test failure);
# then CTest in both trees, each followed by the list of tests that did not run and why.
check: build build-asan
	python3 scripts/check-layers
	python3 scripts/check-cycles $(BUILD)
	sh scripts/run-ctest $(BUILD) -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 sh scripts/run-ctest $(ASAN_BUILD) -j $(JOBS)

demo: build
	sh scripts/demo $(BUILD)

bench: deps
	cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build build-bench -j $(JOBS)
	sh bench/run build-bench

# A rotation rehearsal: staging server, simulated fleet with faults, pass/fail gates.
#   make rehearse DEVICES=1000 FAULTS=5
DEVICES ?= 200
FAULTS ?= 5
rehearse: build
	sh scripts/rehearse --devices $(DEVICES) --faults $(FAULTS) --build $(BUILD)

# The fuzz campaign: every tests/fuzz harness under libFuzzer + ASan + UBSan for FUZZ_SECONDS
# each; coverage-increasing inputs are merged into tests/fuzz/corpus (commit them).
#   make fuzz FUZZ_SECONDS=60 [FUZZ_TARGETS="csv slip"]
FUZZ_SECONDS ?= 30
fuzz:
	@sh scripts/install-deps clang libclang-rt-14-dev
	CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DFK_FUZZ=ON >/dev/null
	cmake --build build-fuzz -j $(JOBS)
	FUZZ_SECONDS=$(FUZZ_SECONDS) sh scripts/fuzz build-fuzz

# Compile device/src for the ESP32-C3 core (rv32imc, picolibc) and print its size.
device-size: deps
	sh scripts/device-size

# Install the programs, their man pages, the docs and the systemd unit (docs/install.md).
#   make install [PREFIX=/usr/local] [DESTDIR=/tmp/stage]
PREFIX ?= /usr/local
install: build
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix $(PREFIX)

# A Debian package built with dpkg-deb (scripts/mkdeb); its path is printed.
deb: build
	sh scripts/mkdeb $(BUILD)

# The ESP-IDF component compiled against a real ESP-IDF tree: IDF_PATH=/path/to/esp-idf.
check-idf: deps
	sh scripts/check-idf

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-bench build-fuzz
