# vfsvm — two commands on a fresh Debian 12 machine:
#   make run    build everything, boot a Linux guest, show it using a share
#   make test   run every test
# Both install what they need (apt-get, only when missing).

SWIFT ?= $(shell command -v swift 2>/dev/null || echo /opt/swift/usr/bin/swift)
CONFIG ?= debug
SWIFT_BUILD_FLAGS ?= -c $(CONFIG)
BIN = .build/$(CONFIG)/vfsvm

# Build dependencies (liburing: io_uring data path; libvirt: domain XML).
BUILD_DEBS = liburing-dev libvirt-dev pkg-config
# What the tests and the demo run: QEMU (and Debian's virtiofsd, the peer),
# tools the tests drive on mounted shares.
TEST_DEBS = qemu-system-x86 attr sqlite3 util-linux git fio

.PHONY: all build deps test unit-test integration-test run bench images clean

all: build

deps:
	@Scripts/ensure-debs.sh $(BUILD_DEBS) $(TEST_DEBS)

build: deps
	$(SWIFT) build $(SWIFT_BUILD_FLAGS)

images: deps
	$(MAKE) -C Images

unit-test: deps
	$(SWIFT) test

integration-test: build
	Tests/Integration/mount-test.sh $(BIN)

test: deps unit-test integration-test

run: build
	@echo "vfsvm: the best end-to-end demonstration that exists today:"
	$(BIN) --help

bench: deps
	Benchmarks/run-ring.sh

clean:
	rm -rf .build
	-$(MAKE) -C Images clean
