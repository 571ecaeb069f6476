# A thin wrapper over the CMake build, so that a fresh Debian 12 machine needs only two commands:
#   make serve   build and start cairn serve on 127.0.0.1:8980 (data in ./cairn-data)
#   make test    install what is missing, build, run every test plain and under ASan+UBSan
# `make serve ARGS='--public_port=9000'` passes flags through.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

BUILD_DIR := build
ASAN_DIR := build-asan
JOBS := $(shell nproc 2>/dev/null || echo 2)
ARGS ?=
# Every ctest run also writes its results as JUnit XML in the build folder, where .ci/run looks for
# skipped tests.
CTEST := ctest --output-on-failure --output-junit ctest-junit.xml

# Debian packages the build and the tests need. Installed without recommends, so everything used
# is named: libprotobuf-dev holds the well-known .proto files (google/protobuf/*.proto) that
# protoc-c compiles, which protobuf-compiler only recommends; bazel-bootstrap is the tests' Bazel
# client; python3-grpcio and python3-protobuf drive the tests that need a client other than Bazel;
# libcurl is the object-store client's HTTP and libjson-c-dev reads the cloud APIs' JSON answers;
# libmicrohttpd serves /metrics; ceph-mon, ceph-osd and radosgw are the S3 server the
# external-storage tests start on loopback; openssl (the command) makes and checks the test
# service-account keys of the GCS fixture.
PACKAGES := build-essential cmake pkg-config \
	libgrpc-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler libprotobuf-dev \
	liburing-dev libzstd-dev libssl-dev libcmocka-dev zstd \
	bazel-bootstrap python3 python3-grpcio python3-protobuf \
	curl ca-certificates iproute2 libcurl4-openssl-dev libjson-c-dev libmicrohttpd-dev openssl \
	ceph-mon ceph-osd radosgw

ASAN_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

.PHONY: all deps build serve test test-plain test-asan clean

all: build

# Installs only what is missing; `apt-get update` runs only when something is.
deps:
	@missing=(); \
	for p in $(PACKAGES); do \
		status=$$(dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null || true); \
		[ "$$status" = "install ok installed" ] || missing+=("$$p"); \
	done; \
	if [ $${#missing[@]} -gt 0 ]; then \
		sudo=; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
		echo "make deps: installing $${missing[*]}"; \
		export DEBIAN_FRONTEND=noninteractive; \
		$$sudo apt-get update; \
		$$sudo apt-get install -y --no-install-recommends "$${missing[@]}"; \
	fi

build: deps
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(BUILD_DIR) -j$(JOBS)

serve: build
	exec ./$(BUILD_DIR)/cairn serve $(ARGS)

define RUN_ASAN
	cmake -S . -B $(ASAN_DIR) -DCAIRN_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
	cmake --build $(ASAN_DIR) -j$(JOBS)
	$(ASAN_ENV) $(CTEST) --test-dir $(ASAN_DIR)
endef

# Both runs, one after the other; the first failure stops it.
test: build
	$(CTEST) --test-dir $(BUILD_DIR)
	$(RUN_ASAN)

test-plain: build
	$(CTEST) --test-dir $(BUILD_DIR)

# The whole suite under AddressSanitizer (with leak checking) and UBSan: any report aborts the
# process that made it, so the test that started it fails.
test-asan: deps
	$(RUN_ASAN)

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR)
