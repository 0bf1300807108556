// Virtqueue throughput: descriptor chains popped and completed per second,
// split vs packed, with/without EVENT_IDX, with/without indirect tables,
// 1- and 3-descriptor chains. The driver mock keeps the ring full: when the
// device finds it empty, the driver takes the used chains back and posts
// them again (`MockDriver.recycle`), as a busy guest would.

import Benchmark
import VfsvmMemory
import VfsvmTestSupport
import VfsvmVirtio

/// One ring and its driver, shared by the iterations of one benchmark.
final class RingState: @unchecked Sendable {
    // @unchecked: used by one benchmark at a time, on one thread.
    let driver: MockDriver
    var queue: Virtqueue
    var memory: GuestMemory { driver.memory }

    /// A ring of `size` descriptors holding `chains` chains (default: as
    /// many as fit).
    init(layout: RingLayout, eventIndex: Bool, indirect: Bool, descriptors: Int, size: UInt16 = 256, chains: Int? = nil) throws {
        var features: VirtioFeatures = [.version1, .indirectDescriptors]
        if eventIndex { features.insert(.eventIndex) }
        driver = try MockDriver(layout: layout, queueSize: size, features: features)
        queue = try driver.makeQueue()
        let perChain = indirect ? 1 : descriptors
        for _ in 0..<(chains ?? Int(size) / perChain) {
            if descriptors == 1 {
                try driver.add(readable: [[UInt8](repeating: 1, count: 64)], writable: [], indirect: indirect, publish: false)
            } else {
                // A FUSE-like request: header, argument, reply buffer.
                try driver.add(readable: [[UInt8](repeating: 1, count: 40), [UInt8](repeating: 2, count: 24)],
                               writable: [128], indirect: indirect, publish: false)
            }
        }
        try driver.publish()
    }

    /// Pops one chain (refilling the ring when it runs dry), completes it.
    @inline(__always)
    func step() throws {
        var chain = try queue.pop(memory)
        if chain == nil {
            _ = try queue.needsInterrupt(memory)
            try driver.recycle()
            chain = try queue.pop(memory)
        }
        guard let c = chain else { throw BenchmarkRingError.ringEmptyAfterRefill }
        blackHole(c.readableLength)
        try queue.pushUsed(id: c.id, descriptorCount: c.descriptorCount, length: 0, memory)
    }

    /// Device only: pops and completes every chain on the ring; returns how many.
    @inline(__always)
    func drainAll() throws -> Int {
        var n = 0
        while let c = try queue.pop(memory) {
            blackHole(c.readableLength)
            try queue.pushUsed(id: c.id, descriptorCount: c.descriptorCount, length: 0, memory)
            n += 1
        }
        _ = try queue.needsInterrupt(memory)
        return n
    }
}

enum BenchmarkRingError: Error { case ringEmptyAfterRefill, wrongChainCount(Int) }

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.throughput, .wallClock],
        scalingFactor: .kilo,
        maxDuration: .seconds(2),
        maxIterations: 100_000
    )
    for layout in RingLayout.allCases {
        for eventIndex in [false, true] {
            for indirect in [false, true] {
                for descriptors in [1, 3] {
                    if indirect && descriptors == 1 { continue }   // an indirect table of one entry is not a case worth timing
                    let name = "\(layout) \(descriptors)-desc\(indirect ? " indirect" : "")\(eventIndex ? " event-idx" : "")"
                    let state: RingState
                    do {
                        state = try RingState(layout: layout, eventIndex: eventIndex, indirect: indirect, descriptors: descriptors)
                    } catch {
                        print("cannot set up \(name): \(error)")
                        continue
                    }
                    // Round trip: device pop + complete, driver refill included.
                    Benchmark(name + " round-trip") { benchmark in
                        for _ in benchmark.scaledIterations {
                            try state.step()
                        }
                    }
                    // Device only: 1000 chains posted outside the measurement,
                    // then timed while the device drains them (so with the
                    // kilo scaling factor the throughput is chains/s).
                    let perChain = indirect ? 1 : descriptors
                    let size = UInt16(1 << (Int.bitWidth - (1000 * perChain - 1).leadingZeroBitCount))
                    let full: RingState
                    do {
                        full = try RingState(layout: layout, eventIndex: eventIndex, indirect: indirect,
                                             descriptors: descriptors, size: size, chains: 1000)
                    } catch {
                        print("cannot set up \(name) device-only: \(error)")
                        continue
                    }
                    Benchmark(name + " device-only") { benchmark in
                        if !(try full.queue.hasAvailable(full.memory)) { try full.driver.recycle() }
                        benchmark.startMeasurement()
                        let n = try full.drainAll()
                        benchmark.stopMeasurement()
                        guard n == 1000 else { throw BenchmarkRingError.wrongChainCount(n) }
                    }
                }
            }
        }
    }
}
