import PropertyBased
import Testing
import VfsvmMemory
import VfsvmTestSupport
import VfsvmVirtio

/// A chain as the driver posts it: readable buffer lengths, then writable
/// buffer lengths, direct or through an indirect table.
struct ChainShape: Hashable, Sendable, CustomStringConvertible {
    var readable: [Int]
    var writable: [Int]
    var indirect: Bool
    var descriptors: Int { readable.count + writable.count }
    var description: String { "r\(readable) w\(writable)\(indirect ? " indirect" : "")" }
}

/// What the driver observed for one chain, and what the device saw of it.
struct Observed: Hashable, Sendable {
    var deviceRead: [UInt8]
    var deviceWritable: Int
    var usedLength: UInt32
    var reply: [UInt8]
}

/// 1-8 descriptors, mixed readable/writable (sorted readable first, as the
/// spec requires), lengths 0-40, about a third indirect.
let chainShapes = zip(zip(Gen.bool, Gen.int(in: 0...40)).array(of: 1...8), Gen.bool(0.3)).map { descs, indirect in
    ChainShape(readable: descs.filter { !$0.0 }.map(\.1), writable: descs.filter(\.0).map(\.1), indirect: indirect)
}

/// Plays `chains` through a driver mock and the device queue, `laps` times
/// over, in batches of up to `batch` chains; the device answers each chain
/// with a reply derived from what it read, and completes each batch in
/// reverse order.
func play(_ layout: RingLayout, size: UInt16, chains: [ChainShape], laps: Int, batch: Int,
          features: VirtioFeatures, splitStart: UInt16) throws -> [Observed] {
    let driver = try MockDriver(layout: layout, queueSize: size, features: features, splitStartIndex: splitStart)
    var queue = try driver.makeQueue()
    let memory = driver.memory
    var observed: [Observed] = []
    var pending = Array(repeating: chains, count: laps).flatMap { $0 }[...]
    var serial = 0
    while !pending.isEmpty {
        // Driver: add what fits.
        var posted: [UInt16: (ChainShape, [UInt8])] = [:]
        var added = 0
        while added < batch, let shape = pending.first {
            let indirect = shape.indirect || shape.descriptors > Int(size)
            guard driver.freeDescriptorCount >= (indirect ? 1 : shape.descriptors) else { break }
            pending.removeFirst()
            let readable = shape.readable.map { n in
                defer { serial += 1 }
                return bytes(n, seed: UInt8(truncatingIfNeeded: serial))
            }
            let id = try driver.add(readable: readable, writable: shape.writable.map(UInt32.init), indirect: indirect, publish: false)
            posted[id] = (shape, readable.flatMap { $0 })
            added += 1
        }
        try driver.publish()
        // Device: pop everything, answer, complete in reverse.
        var popped: [(DescriptorChain, [UInt8])] = []
        while let chain = try queue.pop(memory) {
            popped.append((chain, try chain.readableBuffers(memory).bytes(at: 0, count: chain.readableLength)))
        }
        #expect(popped.count == added)
        for (chain, read) in popped.reversed() {
            let replyLength = min(chain.writableLength, read.count + 3)
            let reply = (0..<replyLength).map { UInt8(truncatingIfNeeded: $0 + read.count) }
            try chain.writableBuffers(memory).write(reply, at: 0)
            try queue.pushUsed(id: chain.id, descriptorCount: chain.descriptorCount, length: UInt32(replyLength), memory)
        }
        _ = try queue.needsInterrupt(memory)
        // Driver: read back, in the order the chains were posted.
        var done: [UInt16: MockCompletion] = [:]
        for c in try driver.collect() { done[c.id] = c }
        #expect(done.count == added)
        for (chain, read) in popped {
            let (shape, sent) = try #require(posted[chain.id])
            let c = try #require(done[chain.id])
            #expect(read == sent)
            #expect(chain.writableLength == shape.writable.reduce(0, +))
            observed.append(Observed(deviceRead: read, deviceWritable: chain.writableLength, usedLength: c.length, reply: c.reply))
        }
    }
    #expect(driver.inFlightCount == 0)
    return observed
}

@Suite struct PropertyTests {
    /// Split and packed deliver the same buffers in the same order and the
    /// driver sees the same used lengths and replies, whatever the chain
    /// shapes, sizes, batching and starting index (so split indices cross
    /// 65536 and packed wrap counters flip many times).
    @Test func splitAndPackedDeliverTheSameBuffersAndReplies() async {
        await propertyCheck(count: 60, input: chainShapes.array(of: 1...30), Gen.int(in: 3...5), Gen.int(in: 1...4),
                            Gen.int(in: 1...6), Gen.int(in: 0...65535), Gen.bool) { chains, sizeLog, laps, batch, start, eventIndex in
            let size = UInt16(1 << sizeLog)
            let features: VirtioFeatures = eventIndex ? [.version1, .indirectDescriptors, .eventIndex] : [.version1, .indirectDescriptors]
            let split = try play(.split, size: size, chains: chains, laps: laps, batch: batch, features: features, splitStart: UInt16(start))
            let packed = try play(.packed, size: size, chains: chains, laps: laps, batch: batch, features: features, splitStart: 0)
            #expect(split.count == chains.count * laps)
            #expect(split == packed)
            // The expected answers, independently of either ring.
            let lengths = split.map(\.usedLength)
            let expected = split.map { UInt32(min($0.deviceWritable, $0.deviceRead.count + 3)) }
            #expect(lengths == expected)
        }
    }

    /// Packed rings of any size 1...20 (not only powers of two).
    @Test func packedRingsOfAnySizeDeliverEveryChain() async {
        await propertyCheck(count: 40, input: chainShapes.array(of: 1...20), Gen.int(in: 1...20), Gen.int(in: 1...5)) { chains, size, batch in
            let observed = try play(.packed, size: UInt16(size), chains: chains, laps: 3, batch: batch,
                                    features: [.version1, .indirectDescriptors], splitStart: 0)
            #expect(observed.count == chains.count * 3)
            #expect(observed.map(\.deviceWritable) == Array(repeating: chains.map { $0.writable.reduce(0, +) }, count: 3).flatMap { $0 })
        }
    }
}
