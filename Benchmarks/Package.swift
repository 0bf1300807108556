// swift-tools-version: 6.1
//
// Ring benchmarks for vfsvm's virtio core, kept out of the main package so
// `swift test` at the top does not build the benchmark framework.
// Run: Benchmarks/run-ring.sh

import PackageDescription

let package = Package(
    name: "vfsvm-benchmarks",
    dependencies: [
        .package(name: "vfsvm", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "RingBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "VfsvmVirtio", package: "vfsvm"),
                .product(name: "VfsvmTestSupport", package: "vfsvm"),
            ],
            path: "Benchmarks/RingBenchmarks",
            plugins: [
                .plugin(name: "BenchmarkPlugin", package: "benchmark"),
            ]
        ),
    ]
)
