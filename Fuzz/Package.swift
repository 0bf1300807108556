// swift-tools-version: 6.1
//
// Coverage-guided fuzz targets (libFuzzer) for the parsers that take guest
// and frontend bytes. A package of its own, like Benchmarks/: the targets
// have no main (libFuzzer provides it), need -sanitize=fuzzer to link, and
// must not slow down `swift build` / `swift test` of the product. They use
// the root package's library products only (public entry points), so they
// keep compiling while internals change. Build and run: Fuzz/fuzz.sh.

import PackageDescription

let vfsvm = "vfsvm"

let package = Package(
    name: "vfsvm-fuzz",
    dependencies: [
        .package(name: vfsvm, path: ".."),
    ],
    targets: [
        .target(name: "CFuzzSupport"),
        // Input readers, the input formats (shared with the seed generator),
        // guest RAM layouts, invariant checks.
        .target(name: "FuzzSupport", dependencies: [
            .product(name: "VfsvmMemory", package: vfsvm),
            .product(name: "VfsvmVirtio", package: vfsvm),
        ]),
        .executableTarget(name: "fuzz-virtqueue", dependencies: [
            "FuzzSupport",
            .product(name: "VfsvmMemory", package: vfsvm),
            .product(name: "VfsvmVirtio", package: vfsvm),
            .product(name: "VfsvmTestSupport", package: vfsvm),
        ], path: "Sources/FuzzVirtqueue"),
        .executableTarget(name: "fuzz-fuse", dependencies: [
            "FuzzSupport", "CFuzzSupport",
            .product(name: "VfsvmFUSE", package: vfsvm),
            .product(name: "VfsvmPassthroughFS", package: vfsvm),
            .product(name: "VfsvmMemory", package: vfsvm),
            .product(name: "VfsvmSys", package: vfsvm),
        ], path: "Sources/FuzzFUSE"),
        .executableTarget(name: "fuzz-vhost-user", dependencies: [
            "FuzzSupport",
            .product(name: "VfsvmVhostUser", package: vfsvm),
            .product(name: "VfsvmVirtio", package: vfsvm),
            .product(name: "VfsvmMemory", package: vfsvm),
            .product(name: "VfsvmSys", package: vfsvm),
        ], path: "Sources/FuzzVhostUser"),
        .executableTarget(name: "fuzz-virtio-mmio", dependencies: [
            "FuzzSupport",
            .product(name: "VfsvmTransport", package: vfsvm),
            .product(name: "VfsvmTestSupport", package: vfsvm),
            .product(name: "VfsvmVirtio", package: vfsvm),
            .product(name: "VfsvmMemory", package: vfsvm),
            .product(name: "VfsvmSys", package: vfsvm),
        ], path: "Sources/FuzzVirtioMMIO"),
        .executableTarget(name: "fuzz-virtio-pci", dependencies: [
            "FuzzSupport",
            .product(name: "VfsvmTransport", package: vfsvm),
            .product(name: "VfsvmTestSupport", package: vfsvm),
            .product(name: "VfsvmVirtio", package: vfsvm),
            .product(name: "VfsvmMemory", package: vfsvm),
            .product(name: "VfsvmSys", package: vfsvm),
        ], path: "Sources/FuzzVirtioPCI"),
    ]
)
