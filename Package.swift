// swift-tools-version: 6.1
//
// vfsvm: a virtual machine monitor in one Swift process, built to share host
// directories with Linux guests over virtio-fs.
//
// One target per layer; a target imports only the layers below it
// (see ../shared/DESIGN.md and README.md, "Layout").

import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

// Release builds of the one binary: the Swift runtime and Foundation linked
// statically (one image instead of ten shared objects, each with its own
// relocations and fault-around of touched text), linked by lld with packed
// relative relocations (DT_RELR: ~1 MB of .rela.dyn becomes 8 KB that the
// loader reads at every start), without -static-stdlib's -export-dynamic
// (it puts every symbol of the binary in .dynsym, 530 KB that each
// library's symbol lookups at start-up walk; nothing here dlopens Swift code
// that would need them, and the shared-runtime build never exported them).
// The functions `serve` runs are placed together at the start of .text
// (Scripts/vfsvm.order, written by Scripts/link-order.sh from a callgrind
// run): the kernel maps 64 KiB around each faulting page, so scattered they
// kept 6.3 MB of the 10 MB .text resident, together 4.5 MB (a stale order
// costs only that gain; the linker skips names it no longer has). Debug
// builds and tests link as before. Measured: peak RSS of `vfsvm serve`
// under bench-backend 26.2 -> 23.0 (static, lld, RELR) -> 22.6 (no export)
// -> 20.7 MiB (order).
let releaseLink: [LinkerSetting] = [
    .unsafeFlags(["-static-stdlib", "-l_FoundationCShims", "-l_FoundationCollections",
                  "-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs",
                  "-Xlinker", "--no-export-dynamic",
                  "-Xlinker", "--symbol-ordering-file=\(Context.packageDirectory)/Scripts/vfsvm.order",
                  "-Xlinker", "--no-warn-symbol-ordering"], .when(configuration: .release)),
]

let package = Package(
    name: "vfsvm",
    products: [
        .executable(name: "vfsvm", targets: ["vfsvm"]),
        .library(name: "VfsvmVirtio", targets: ["VfsvmVirtio"]),
        .library(name: "VfsvmTestSupport", targets: ["VfsvmTestSupport"]),
        .library(name: "VfsvmFUSE", targets: ["VfsvmFUSE"]),
        .library(name: "VfsvmPassthroughFS", targets: ["VfsvmPassthroughFS"]),

        .library(name: "VfsvmVhostUser", targets: ["VfsvmVhostUser"]),
        // For the fuzz targets (Fuzz/, a package of its own).
        .library(name: "VfsvmSys", targets: ["VfsvmSys"]),
        .library(name: "VfsvmMemory", targets: ["VfsvmMemory"]),
        .library(name: "VfsvmVirtioFS", targets: ["VfsvmVirtioFS"]),
        .library(name: "VfsvmVirtioBlk", targets: ["VfsvmVirtioBlk"]),
        .library(name: "VfsvmTransport", targets: ["VfsvmTransport"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.0"),
    ],
    targets: [
        // Listed bottom-up: each target depends only on targets above it and
        // declares every module its files import.

        // C shim: kernel UAPI headers, ioctl numbers and macros as constants
        // and inline functions, ring-index atomics, file-system calls.
        .target(name: "CVfsvmLinux"),

        // io_uring (liburing) glue, linked only into what does file I/O
        // through io_uring.
        .target(name: "CVfsvmURing", linkerSettings: [.linkedLibrary("uring")]),

        // fds, Errno, ioctl, mmap, eventfd, epoll, memfd.
        .target(name: "VfsvmSys", dependencies: ["CVfsvmLinux"], swiftSettings: strict),

        // GuestAddress, GuestMemory, memfd-backed regions, bounds-checked
        // access, scatter-gather views, ring atomics.
        .target(name: "VfsvmMemory", dependencies: ["VfsvmSys", "CVfsvmLinux"], swiftSettings: strict),

        // Features, device status, split and packed virtqueues, chains,
        // notification suppression.
        .target(name: "VfsvmVirtio", dependencies: ["VfsvmMemory", "VfsvmSys", "CVfsvmLinux"], swiftSettings: strict),

        // FUSE wire protocol and opcode dispatch to a FileSystem protocol:
        // pure bytes in, bytes out.
        .target(name: "VfsvmFUSE", dependencies: ["VfsvmMemory", "VfsvmSys", "CVfsvmLinux"], swiftSettings: strict),

        // The FileSystem over a host directory, with confinement; its I/O
        // engines (io_uring, preadv/pwritev).
        .target(name: "VfsvmPassthroughFS", dependencies: ["VfsvmFUSE", "VfsvmMemory", "VfsvmSys", "CVfsvmLinux", "CVfsvmURing"], swiftSettings: strict),

        // The virtio-fs device: FUSE requests from virtqueues.
        .target(name: "VfsvmVirtioFS", dependencies: ["VfsvmVirtio", "VfsvmFUSE", "VfsvmMemory", "VfsvmSys"], swiftSettings: strict),

        // The virtio-blk device: a raw image file, O_DIRECT where the host
        // file system allows it, I/O through io_uring.
        .target(name: "VfsvmVirtioBlk", dependencies: ["VfsvmVirtio", "VfsvmMemory", "VfsvmSys", "CVfsvmLinux", "CVfsvmURing"], swiftSettings: strict),

        // Transports: the virtio-mmio and virtio-pci register files.
        .target(name: "VfsvmTransport", dependencies: ["VfsvmVirtio", "VfsvmMemory", "VfsvmSys", "CVfsvmLinux"], swiftSettings: strict),

        // vhost-user back-end protocol: serves virtqueues to QEMU /
        // cloud-hypervisor / libvirt over a unix socket with fd passing.
        .target(name: "VfsvmVhostUser", dependencies: ["VfsvmVirtio", "VfsvmMemory", "VfsvmSys", "CVfsvmLinux"], swiftSettings: strict),

        // x86 boot: bzImage and PVH ELF loading, boot_params/hvm_start_info,
        // e820, page tables, ACPI and MP tables. Writes GuestMemory only (no KVM).
        .target(name: "VfsvmBoot", dependencies: ["VfsvmMemory", "VfsvmSys"], swiftSettings: strict),

        // /dev/kvm: VM, vCPUs, kvm_run exits, memory slots, irqfd,
        // ioeventfd, GSI routing. The only place above guest memory that
        // touches kvm_run.
        .target(name: "VfsvmKVM", dependencies: ["VfsvmMemory", "VfsvmSys", "CVfsvmLinux"], swiftSettings: strict),

        // The x86 board: builds and runs the VM (memory, vCPU threads,
        // UART, i8042, RTC, debug-exit, ACPI PM, PCI host bridge, virtio
        // transports wired to ioeventfds and irqfds).
        .target(name: "VfsvmMachine", dependencies: ["VfsvmKVM", "VfsvmBoot", "VfsvmTransport", "VfsvmVirtio", "VfsvmMemory", "VfsvmSys", "CVfsvmLinux"], swiftSettings: strict),

        // The FUSE core served on the host through /dev/fuse (`vfsvm mount`).
        .target(name: "VfsvmHostFUSE", dependencies: ["VfsvmFUSE", "VfsvmMemory", "VfsvmSys", "CVfsvmLinux", "CVfsvmURing"], swiftSettings: strict),

        // Shares, VM configuration, virtiofsd-compatible options.
        .target(name: "VfsvmConfig", swiftSettings: strict),

        // libvirt (libvirt-dev) and libxml2 (libxml2-dev), found with pkg-config.
        .systemLibrary(name: "CLibvirt", pkgConfig: "libvirt", providers: [.apt(["libvirt-dev"])]),
        .systemLibrary(name: "CLibXML2", pkgConfig: "libxml-2.0", providers: [.apt(["libxml2-dev"])]),

        // libvirt domain XML: validated against libvirt's RelaxNG schema,
        // mapped onto a plain description of a vfsvm VM, and written back.
        .target(name: "VfsvmDomain", dependencies: ["VfsvmConfig", "CLibvirt", "CLibXML2", "CVfsvmLinux"], swiftSettings: strict),

        // Driver-side queue mocks and recording interrupt sinks for tests
        // and benchmarks.
        .target(name: "VfsvmTestSupport", dependencies: ["VfsvmVirtio", "VfsvmMemory"], swiftSettings: strict),

        // A vhost-user front-end for tests and bench-backend: messages, fds,
        // memfd guest RAM.
        .target(name: "VfsvmVhostUserTestSupport", dependencies: ["VfsvmVhostUser", "VfsvmVirtio", "VfsvmMemory", "VfsvmSys"], swiftSettings: strict),

        // A FUSE client for tests: builds requests, decodes replies.
        .target(name: "VfsvmFUSETestSupport", dependencies: ["VfsvmFUSE", "VfsvmMemory"], swiftSettings: strict),

        // The file server one share gets (passthrough file system, I/O
        // engine, FUSE server options) and its seccomp filter: what `serve`,
        // `mount` and `run` build, and vfsvm-fuse-sweep drives.
        .target(name: "VfsvmFileServer", dependencies: ["VfsvmConfig", "VfsvmFUSE", "VfsvmPassthroughFS", "VfsvmHostFUSE", "VfsvmSys"],
                swiftSettings: strict),

        // The command line.
        .executableTarget(
            name: "vfsvm",
            dependencies: [
                "VfsvmFileServer", "VfsvmVirtio", "VfsvmConfig", "VfsvmFUSE", "VfsvmPassthroughFS", "VfsvmHostFUSE", "VfsvmSys",
                "VfsvmVirtioFS", "VfsvmVirtioBlk", "VfsvmVhostUser", "VfsvmMemory", "VfsvmMachine", "VfsvmKVM", "VfsvmBoot", "VfsvmDomain",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict,
            linkerSettings: releaseLink
        ),

        // A loop of FUSE requests for instruction counts under callgrind.
        .executableTarget(
            name: "fuse-request-loop",
            dependencies: ["VfsvmFUSE", "VfsvmPassthroughFS", "VfsvmFUSETestSupport", "VfsvmMemory", "VfsvmSys"],
            swiftSettings: strict
        ),

        // The device side of `vfsvm serve` below the kick (ring, queue
        // runner, virtio-fs handler, FUSE, passthrough), for callgrind.
        .executableTarget(
            name: "ring-request-loop",
            dependencies: ["VfsvmVirtio", "VfsvmVirtioFS", "VfsvmTestSupport", "VfsvmFUSE", "VfsvmPassthroughFS",
                           "VfsvmFUSETestSupport", "VfsvmMemory", "VfsvmSys"],
            swiftSettings: strict
        ),

        // A vhost-user-fs front-end load generator: drives `vfsvm serve`
        // and virtiofsd with FUSE requests (make bench-backend).
        .executableTarget(
            name: "bench-backend",
            dependencies: ["VfsvmVhostUserTestSupport", "VfsvmVhostUser", "VfsvmTestSupport", "VfsvmFUSETestSupport", "VfsvmFUSE",
                           "VfsvmVirtio", "VfsvmMemory", "VfsvmSys", "CVfsvmLinux",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Benchmarks/BenchBackend",
            swiftSettings: strict
        ),

        .testTarget(name: "VfsvmSysTests", dependencies: ["VfsvmSys"], swiftSettings: strict),
        .testTarget(name: "VfsvmMemoryTests", dependencies: ["VfsvmMemory"], swiftSettings: strict),
        .testTarget(
            name: "VfsvmVirtioTests",
            dependencies: [
                "VfsvmVirtio", "VfsvmTestSupport", "VfsvmMemory", "VfsvmSys",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            swiftSettings: strict
        ),
        .testTarget(name: "VfsvmFUSETests", dependencies: ["VfsvmFUSE", "VfsvmFUSETestSupport", "VfsvmTestSupport", "VfsvmMemory", "VfsvmSys", "CVfsvmLinux"], swiftSettings: strict),
        // Installs the seccomp filter and makes one system call, for
        // VfsvmSandboxTests (not a product; `swift build` builds it).
        .executableTarget(name: "vfsvm-seccomp-probe", dependencies: ["VfsvmSys", "VfsvmConfig", "CVfsvmLinux", "CVfsvmURing"], path: "Tests/SeccompProbe",
                          swiftSettings: strict),
        // Builds the file server as `vfsvm serve` does, installs its
        // seccomp filter as serve does, then sends every FUSE request, for
        // VfsvmSandboxTests (not a product).
        .executableTarget(name: "vfsvm-fuse-sweep",
                          dependencies: ["VfsvmFileServer", "VfsvmFUSETestSupport", "VfsvmFUSE", "VfsvmConfig", "VfsvmMemory", "VfsvmSys", "CVfsvmLinux"],
                          path: "Tests/FUSESweepProbe", swiftSettings: strict),
        // Runs the built `vfsvm serve` (and a probe) and checks its sandbox
        // from outside: held fds, /proc/<pid>/status, seccomp.
        .testTarget(name: "VfsvmSandboxTests", dependencies: ["VfsvmSys", "CVfsvmLinux", "CVfsvmURing"], swiftSettings: strict),
        .testTarget(
            name: "VfsvmPassthroughFSTests",
            dependencies: ["VfsvmPassthroughFS", "VfsvmFUSE", "VfsvmHostFUSE", "VfsvmFUSETestSupport", "VfsvmTestSupport", "VfsvmMemory", "VfsvmSys", "CVfsvmLinux"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "VfsvmVirtioFSTests",
            dependencies: ["VfsvmVirtioFS", "VfsvmTestSupport", "VfsvmFUSETestSupport", "VfsvmPassthroughFS", "VfsvmFUSE", "VfsvmVirtio",
                           "VfsvmMemory", "VfsvmSys"],
            swiftSettings: strict
        ),
        // Writes and flushes through a virtio-blk device, then waits to be
        // killed, for VfsvmVirtioBlkTests; or serves one over vhost-user for
        // Tests/Integration/blk-test.sh (not a product).
        .executableTarget(name: "vfsvm-blk-probe", dependencies: ["VfsvmVirtioBlk", "VfsvmVhostUser", "VfsvmConfig", "VfsvmTestSupport", "VfsvmVirtio",
                                                            "VfsvmMemory", "VfsvmSys"],
                          path: "Tests/BlkProbe", swiftSettings: strict),
        .testTarget(
            name: "VfsvmVirtioBlkTests",
            dependencies: ["VfsvmVirtioBlk", "VfsvmTestSupport", "VfsvmVirtio", "VfsvmMemory", "VfsvmSys", "CVfsvmLinux"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "VfsvmTransportTests",
            dependencies: ["VfsvmTransport", "VfsvmVirtioFS", "VfsvmPassthroughFS", "VfsvmFUSE", "VfsvmFUSETestSupport", "VfsvmTestSupport",
                           "VfsvmVirtio", "VfsvmMemory", "VfsvmSys"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "VfsvmVhostUserTests",
            dependencies: ["VfsvmVhostUser", "VfsvmVirtioFS", "VfsvmVirtioBlk", "VfsvmPassthroughFS", "VfsvmFUSE", "VfsvmFUSETestSupport",
                           "VfsvmTestSupport", "VfsvmVhostUserTestSupport", "VfsvmVirtio", "VfsvmMemory", "VfsvmSys", "CVfsvmLinux"],
            swiftSettings: strict
        ),
        // Runs bench-backend against a child `vfsvm serve` (both built
        // executables) for a few requests.
        .testTarget(name: "BenchBackendSmokeTests", dependencies: ["VfsvmSys"], swiftSettings: strict),
        .testTarget(name: "VfsvmConfigTests", dependencies: ["VfsvmConfig", "VfsvmFileServer", "VfsvmFUSE", "VfsvmFUSETestSupport"], swiftSettings: strict),
        // The command line's pure parts (QEMU's argv, serve's argv, checks
        // of paths and options), through @testable import of the executable.
        .testTarget(name: "VfsvmCommandTests", dependencies: ["vfsvm", "VfsvmConfig", "VfsvmSys"], swiftSettings: strict),
        .testTarget(
            name: "VfsvmDomainTests",
            dependencies: ["VfsvmDomain", "VfsvmConfig", .product(name: "PropertyBased", package: "swift-property-based")],
            resources: [.copy("Fixtures")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "VfsvmBootTests",
            dependencies: ["VfsvmBoot", "VfsvmMemory", "VfsvmTestSupport", .product(name: "PropertyBased", package: "swift-property-based")],
            swiftSettings: strict
        ),
        .testTarget(name: "VfsvmKVMTests", dependencies: ["VfsvmKVM", "VfsvmMemory", "VfsvmSys", "CVfsvmLinux"], swiftSettings: strict),
        .testTarget(name: "VfsvmMachineTests", dependencies: ["VfsvmMachine", "VfsvmBoot", "VfsvmKVM", "VfsvmTransport", "VfsvmVirtioBlk", "VfsvmMemory", "VfsvmSys", "VfsvmTestSupport"], swiftSettings: strict),
    ]
)
