// libFuzzer target: descriptor chains on split and packed rings over guest
// memory the input fills (VirtqueueFuzzCase). Entry points: Virtqueue
// activate / hasAvailable / pop / pushUsed / needsInterrupt /
// enableNotifications with a GuestMemory, as the queue runner calls them.
//
// Invariants checked on every input:
// - nothing crashes or traps (overflow, out-of-bounds: ASan and Swift);
// - every chain popped lies in guest memory, its id and descriptor count
//   are in range, its lengths add up, and it can be completed;
// - a refused chain can be completed too (length 0); any other error is
//   fatal and well-formed (the queue is then abandoned, as the device does);
// - hasAvailable() == false means pop() returns nil;
// - with the three ring areas apart, one pass pops at most queue-size
//   chains (no livelock without the driver doing something).
import FuzzSupport
import VfsvmMemory
import VfsvmVirtio

@_cdecl("LLVMFuzzerInitialize")
public func fuzzVirtqueueInitialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> Int32 {
    writeSeedsIfAsked(VirtqueueSeeds.all)
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzVirtqueue(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    runVirtqueueCase(VirtqueueFuzzCase(&input))
    return 0
}

func runVirtqueueCase(_ c: VirtqueueFuzzCase) {
    let memory: GuestMemory
    do { memory = try GuestRAM.memory(layout: c.layout, chunks: c.first) } catch {
        fatalError("fuzz setup: \(error)")
    }
    var features: VirtioFeatures = [.version1]
    if c.packed { features.insert(.ringPacked) }
    if c.eventIndex { features.insert(.eventIndex) }
    if c.indirect { features.insert(.indirectDescriptors) }
    var q = Virtqueue(maxSize: 256)
    q.size = c.size
    q.descriptorTable = GuestAddress(UInt64(c.descriptorTable))
    q.driverArea = GuestAddress(UInt64(c.driverArea))
    q.deviceArea = GuestAddress(UInt64(c.deviceArea))
    q.ready = true
    q.availState = c.availState
    q.usedState = c.usedState
    do {
        try q.activate(memory: memory, features: features)
    } catch {
        invariant(error.isFatal && !error.description.isEmpty, "activation error must be fatal and say why: \(error)")
        return
    }
    if c.adoptUsedIndex && !c.packed {
        do { try q.adoptUsedIndexFromRing(memory) } catch { return }
    }
    let apart = areasApart(c)
    guard drain(&q, memory, areasApart: apart) else { return }
    do { try GuestRAM.write(c.second, into: memory) } catch { fatalError("fuzz setup: \(error)") }
    _ = drain(&q, memory, areasApart: apart && c.second.isEmpty)
}

/// One pass of the device: pop and complete until the ring is empty, a
/// fatal error, or a budget well above what a sane ring allows. False after
/// a fatal error.
func drain(_ q: inout Virtqueue, _ memory: GuestMemory, areasApart: Bool) -> Bool {
    let size = Int(q.size)
    var pops = 0
    do {
        while pops < 4 * size + 8 {
            let had = try q.hasAvailable(memory)
            let chain: DescriptorChain?
            do {
                chain = try q.pop(memory)
            } catch let error where !error.isFatal {
                guard case let .refusedChain(refused) = error else {
                    invariant(false, "a non-fatal pop error is a refused chain: \(error)")
                    return false
                }
                invariant(Int(refused.id) < size && Int(refused.descriptorCount) <= size,
                          "refused chain \(refused) out of range for size \(size)")
                invariant(!refused.description.isEmpty, "refusal says why")
                do { try q.pushUsed(id: refused.id, descriptorCount: max(refused.descriptorCount, 1), length: 0, memory) } catch {
                    invariant(false, "a refused chain must be completable: \(error)")
                }
                pops += 1
                continue
            }
            guard let chain else { break }
            invariant(had, "pop returned a chain although hasAvailable said none")
            check(chain, q, memory)
            do {
                try q.pushUsed(id: chain.id, descriptorCount: chain.descriptorCount, length: UInt32(min(chain.writableLength, 1 << 20)), memory)
            } catch {
                invariant(false, "a popped chain must be completable: \(error)")
            }
            pops += 1
        }
        _ = try q.needsInterrupt(memory)
        _ = try q.enableNotifications(memory)
    } catch {
        invariant(error.isFatal && !error.description.isEmpty, "fatal queue error is well-formed: \(error)")
        return false
    }
    if areasApart {
        invariant(pops <= size, "\(pops) chains popped in one pass from a ring of \(size) with no driver activity")
    }
    return true
}

func check(_ chain: DescriptorChain, _ q: Virtqueue, _ memory: GuestMemory) {
    let size = Int(q.size)
    invariant(Int(chain.id) < size, "chain id \(chain.id) ≥ size \(size)")
    invariant(chain.descriptorCount >= 1 && Int(chain.descriptorCount) <= size, "descriptor count \(chain.descriptorCount)")
    var readable = 0, writable = 0
    for r in chain.readable {
        invariant((try? memory.checkRange(r.address, length: UInt64(r.length))) != nil, "readable \(r) outside memory")
        readable += Int(r.length)
    }
    for r in chain.writable {
        invariant((try? memory.checkRange(r.address, length: UInt64(r.length))) != nil, "writable \(r) outside memory")
        writable += Int(r.length)
    }
    invariant(readable == chain.readableLength && writable == chain.writableLength, "lengths do not add up")
    invariant(chain.readable.count + chain.writable.count <= size + q.indirectEntryLimit, "more buffers than descriptors allowed")
}

/// Whether descriptor table, driver area and device area are disjoint
/// (then the device's own writes cannot publish new buffers).
func areasApart(_ c: VirtqueueFuzzCase) -> Bool {
    let n = UInt64(c.size)
    let driverLength: UInt64 = c.packed ? 4 : 6 + 2 * n
    let deviceLength: UInt64 = c.packed ? 4 : 6 + 8 * n
    let areas: [Range<UInt64>] = [
        UInt64(c.descriptorTable)..<UInt64(c.descriptorTable) + 16 * n,
        UInt64(c.driverArea)..<UInt64(c.driverArea) + driverLength,
        UInt64(c.deviceArea)..<UInt64(c.deviceArea) + deviceLength,
    ]
    return !areas[0].overlaps(areas[1]) && !areas[0].overlaps(areas[2]) && !areas[1].overlaps(areas[2])
}
