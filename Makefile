# vfsvm — two commands on a fresh Debian 12 machine (as root):
#   make run    build everything, boot a Linux guest, show it using a share
#   make test   run every test
# Both install what they need (apt-get, only when missing).

SWIFT ?= $(shell command -v swift 2>/dev/null || echo /opt/swift/usr/bin/swift)
CONFIG ?= debug
BIN = .build/$(CONFIG)/vfsvm

# Build dependencies (liburing: io_uring data path; libvirt: domain XML).
BUILD_DEBS = liburing-dev libvirt-dev pkg-config
# What the tests, the demo and the benchmarks run: QEMU (which ships Debian's
# virtiofsd, the peer), the programs the tests drive on mounted shares, and
# iasl (acpica-tools), which decompiles vfsvm's ACPI tables in the unit tests,
# gcc/binutils for the freestanding test guests, and debootstrap + e2fsprogs
# for the guest's Debian root file system (Images/).
TEST_DEBS = qemu-system-x86 attr sqlite3 util-linux git fio python3 procps acpica-tools \
            gcc binutils debootstrap e2fsprogs

.PHONY: all build deps test unit-test mount-test uring-lock-test boot-test rootfs-test blk-test run-test libvirt-test vmm-test domain-test guests fuzz fuzz-test images run run-serve bench bench-vmm bench-ring bench-mount bench-serve bench-backend callgrind-backend bench-run nightly clean

all: build

deps:
	@Scripts/ensure-debs.sh $(BUILD_DEBS) $(TEST_DEBS)

build: deps
	$(SWIFT) build -c $(CONFIG)

images: deps
	$(MAKE) -C Images

# Unit tests: every layer without a VM (Swift Testing). Serial: some tests
# spawn processes (QEMU, python), and a child between fork and exec holds
# copies of every fd, keeping another test's OFD locks alive for a moment.
# The whole suite takes seconds either way. The boot loader's tests load
# Debian's kernel from Images/out, hence `images`; RunSandboxTests run the
# freestanding events guest under `vfsvm run`, hence `guests`.
unit-test: deps images guests
	$(SWIFT) test --no-parallel

# vfsvm mount on the host, real programs on the mount.
mount-test: build
	Tests/Integration/mount-test.sh $(BIN)

uring-lock-test: build
	Tests/Integration/uring-lock-test.sh $(BIN)

# Real Linux guests under QEMU mounting vfsvm serve shares.
boot-test: build images
	Tests/Integration/boot-test.sh $(BIN)

# The Debian root file system of Images/ as the guest's root: root=/dev/vda
# on QEMU's virtio-blk and rootfstype=virtiofs over vfsvm serve (about 50 s).
rootfs-test: build images
	Tests/Integration/rootfs-test.sh $(BIN)

# Linux's virtio_blk driver (QEMU TCG, vhost-user-blk-pci) against vfsvm's
# virtio-blk device: root=/dev/vda read-write and read-only, MQ, GET_ID,
# FLUSH, DISCARD.
blk-test: build images
	Tests/Integration/blk-test.sh .build/$(CONFIG)/vfsvm-blk-probe

# `vfsvm run` with the Images Linux guest on the path --accel auto measures
# (tcg here): shares + the guest workload, the root disk, --rootfs, panic,
# SIGINT, --timeout, QEMU killed, refusals (about 75 s here).
run-test: build images guests
	Tests/Integration/run-test.sh $(BIN) $(GUESTS_OUT)

# libvirt 9.0 (a private libvirtd, QEMU driver only) starts vfsvm as the
# domain's virtiofs daemon; installs libvirt-daemon-system, libvirt-clients
# and tini when missing.
libvirt-test: build images
	Tests/Integration/libvirt-test.sh $(BIN)

# Freestanding test guests (Tests/Guests: PVH ELFs built with the host gcc,
# no libc) booted by vfsvm's own KVM VMM.
GUESTS_OUT = .build/guests
guests: deps
	$(MAKE) -C Tests/Guests OUT=$(CURDIR)/$(GUESTS_OUT)

# vfsvm run under /dev/kvm with the freestanding guests: exit statuses,
# console, errors before start.
vmm-test: build guests
	Tests/Integration/vmm-test.sh $(BIN) $(GUESTS_OUT)

# vfsvm run --domain: the Configs/domain-*.xml examples booted under
# /dev/kvm with the freestanding guests, the --print-domain-xml round trip,
# and the refusals (unsupported elements, invalid XML, conflicting options).
domain-test: build guests images
	Tests/Integration/domain-test.sh $(BIN) $(GUESTS_OUT)

# Coverage-guided fuzzing (Fuzz/fuzz.sh: libFuzzer + AddressSanitizer, a
# package of its own built into .build-fuzz): each target, one at a time,
# for FUZZ_SECONDS; `make test` gives each 30 seconds.
FUZZ_SECONDS ?= 600
fuzz: deps
	Fuzz/fuzz.sh build
	Fuzz/fuzz.sh run $(FUZZ_SECONDS)

fuzz-test: deps
	Fuzz/fuzz.sh build
	Fuzz/fuzz.sh run 30

test: unit-test fuzz-test vmm-test domain-test mount-test uring-lock-test boot-test rootfs-test blk-test run-test libvirt-test

# The demonstration: `vfsvm run` boots the Images Linux guest with a demo
# share (the accelerator chosen by measurement); the guest lists, reads and
# writes it and the host sees the guest's file.
run: build images
	VFSVM_BIN=$(CURDIR)/$(BIN) Scripts/demo-run.sh

# The earlier demonstration: QEMU started by hand (boot-qemu.sh) with
# `vfsvm serve` as the vhost-user-fs backend.
run-serve: build images
	VFSVM_BACKEND=vfsvm VFSVM_BIN=$(CURDIR)/$(BIN) VFSVM_PACKED=on Scripts/demo-virtiofsd.sh

bench: bench-ring bench-mount bench-serve bench-vmm bench-backend

bench-ring: deps
	Benchmarks/run-ring.sh

bench-mount: deps
	$(SWIFT) build -c release
	Benchmarks/bench-mount.sh .build/release/vfsvm

# vfsvm run vs QEMU microvm on the freestanding guests: start-up, FUSE
# round trips.
bench-vmm: deps
	$(SWIFT) build -c release
	$(MAKE) -C Tests/Guests OUT=$(CURDIR)/$(GUESTS_OUT)
	Benchmarks/bench-vmm.sh .build/release/vfsvm $(GUESTS_OUT)

# The nightly matrix (first version): vfsvm run with the Images guest,
# ring × request queues × cache, the workload + manifest per cell, the
# rootfs boots; PASS/FAIL per case and a JUnit XML report
# (NIGHTLY_JUNIT=FILE, default nightly-junit.xml). Not part of `make test`.
nightly: build images
	Tests/Integration/nightly.sh $(BIN)

# vfsvm run vs the same QEMU + vfsvm serve started by hand: start to the
# guest's end marker, and the guest workload (ratios).
bench-run: build images
	Benchmarks/bench-run.sh $(BIN)

bench-serve: deps images
	$(SWIFT) build -c release
	Benchmarks/bench-serve.sh .build/release/vfsvm

# The backends' own CPU per FUSE request, vfsvm serve vs virtiofsd, driven
# over vhost-user by Benchmarks/BenchBackend (no guest). BENCH_ARGS, e.g.
# "--quick", "--rounds 5 --in-flight 8" or "--scaling" (4 queues vs 1).
bench-backend: deps
	$(SWIFT) build -c release --product vfsvm
	$(SWIFT) build -c release --product bench-backend
	Benchmarks/bench-backend.sh $(BENCH_ARGS) .build/release/vfsvm .build/release/bench-backend

# The same, counted in instructions per request (user space) by callgrind,
# for both backends: Benchmarks/callgrind-backend.sh. CALLGRIND_ARGS, e.g.
# "--ops getattr,read-4k --in-flight 1".
callgrind-backend: deps
	@Scripts/ensure-debs.sh valgrind
	$(SWIFT) build -c release --product vfsvm
	$(SWIFT) build -c release --product bench-backend
	Benchmarks/callgrind-backend.sh $(CALLGRIND_ARGS) .build/release/vfsvm .build/release/bench-backend

clean:
	rm -rf .build .build-fuzz
	-$(MAKE) -C Images clean
