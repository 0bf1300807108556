import Glibc
import Testing
import VfsvmMemory
import VfsvmTestSupport
import VfsvmVirtio

/// A driver mock and the device-side queue on the same ring.
struct Harness {
    let driver: MockDriver
    var queue: Virtqueue
    var memory: GuestMemory { driver.memory }

    init(_ layout: RingLayout, size: UInt16 = 8, features: VirtioFeatures = [.version1, .indirectDescriptors],
         splitStartIndex: UInt16 = 0, memorySize: Int = 4 << 20) throws {
        driver = try MockDriver(layout: layout, queueSize: size, features: features, memorySize: memorySize,
                                splitStartIndex: splitStartIndex)
        queue = try driver.makeQueue()
    }

    /// Pops one chain, expecting one.
    mutating func popOne(sourceLocation: SourceLocation = #_sourceLocation) throws -> DescriptorChain {
        let chain = try queue.pop(memory)
        return try #require(chain, sourceLocation: sourceLocation)
    }

    /// Writes `reply` into the chain's writable buffers and completes it.
    mutating func complete(_ chain: DescriptorChain, reply: [UInt8]) throws {
        try chain.writableBuffers(memory).write(reply, at: 0)
        try queue.pushUsed(id: chain.id, descriptorCount: chain.descriptorCount, length: UInt32(reply.count), memory)
    }

    /// Pops expecting a refused chain and returns the refusal.
    mutating func popRefused(sourceLocation: SourceLocation = #_sourceLocation) throws -> RefusedChain? {
        do {
            let chain = try queue.pop(memory)
            Issue.record("expected a refused chain, popped \(String(describing: chain))", sourceLocation: sourceLocation)
            return nil
        } catch let .refusedChain(r) {
            return r
        }
    }

    /// Pops expecting a fatal error and returns it.
    mutating func popFatal(sourceLocation: SourceLocation = #_sourceLocation) -> VirtqueueError? {
        do {
            let chain = try queue.pop(memory)
            Issue.record("expected a fatal error, popped \(String(describing: chain))", sourceLocation: sourceLocation)
            return nil
        } catch {
            #expect(error.isFatal, sourceLocation: sourceLocation)
            return error
        }
    }
}

func bytes(_ count: Int, seed: UInt8) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ Int(seed)) }
}

/// Polls `collect()` until `count` completions arrived or 5 s passed.
func collect(_ driver: MockDriver, count: Int) throws -> [MockCompletion] {
    var got: [MockCompletion] = []
    for _ in 0..<500 where got.count < count {
        got += try driver.collect()
        if got.count < count { usleep(10_000) }
    }
    return got
}
