import CVfsvmLinux
import VfsvmMemory

/// Collects and validates the buffers of one chain, for both layouts (the
/// descriptor format is the same 16 bytes; only indirect tables differ).
/// The guest memory is passed to the calls that need it rather than held:
/// a builder is made per chain, and holding it would retain and release
/// the memory object each time.
struct ChainBuilder {
    enum TableFormat { case split, packed }

    let indirectAllowed: Bool
    let indirectLimit: Int
    /// Readable buffers, then writable ones (the order `add` enforces).
    var ranges = ChainRanges()
    var readableCount = 0
    var readableLength = 0
    var total: UInt64 = 0
    var sawWritable = false
    var sawIndirect = false

    init(indirectAllowed: Bool, indirectLimit: Int) {
        self.indirectAllowed = indirectAllowed
        self.indirectLimit = indirectLimit
    }

    mutating func add(address: UInt64, length: UInt32, flags: UInt16) throws(ChainRefusal) {
        if flags & Ring.write != 0 {
            sawWritable = true
        } else if sawWritable {
            throw .readableAfterWritable
        }
        total += UInt64(length)
        guard total <= UInt64(UInt32.max) else { throw .lengthOverflow }
        // Zero-length descriptors: nothing is accessed, so nothing to check
        // or record (the spec sets no minimum length).
        guard length > 0 else { return }
        let range = GuestRange(address: GuestAddress(address), length: length)
        ranges.append(range)
        if flags & Ring.write == 0 {
            readableCount += 1
            readableLength += Int(length)
        }
    }

    /// Checks every buffer against guest memory, once the chain's shape is
    /// known to be sound (so a chain that is both malformed and out of range
    /// reports the structural error).
    func finish(id: UInt16, descriptorCount: UInt16, _ memory: GuestMemory) throws(ChainRefusal) -> DescriptorChain {
        for i in 0..<ranges.count { try check(ranges[i], memory) }
        return DescriptorChain(id: id, descriptorCount: descriptorCount, ranges: ranges, readableCount: readableCount,
                               readableLength: readableLength, writableLength: Int(total) - readableLength)
    }

    private func check(_ range: GuestRange, _ memory: GuestMemory) throws(ChainRefusal) {
        do {
            try memory.checkContiguous(range.address, length: UInt64(range.length))
        } catch .crossesRegion {
            // Backed, just by two adjacent regions (checkContiguous verified
            // every byte before reporting the crossing); views handle that.
        } catch {
            throw .bufferOutOfRange(error)
        }
    }

    /// Expands an indirect descriptor (2.7.5.3 split, 2.8.8 packed). The
    /// descriptor's own WRITE flag is ignored (2.7.5.3.2).
    mutating func indirect(address: UInt64, length: UInt32, flags: UInt16, format: TableFormat,
                           _ memory: GuestMemory) throws(ChainRefusal) {
        guard indirectAllowed else { throw .indirectNotNegotiated }
        guard !sawIndirect else { throw .nestedIndirect }
        guard flags & Ring.next == 0 else { throw .indirectWithNext }
        guard length > 0, length % 16 == 0 else { throw .indirectTableLength(length) }
        let entries = Int(length / 16)
        guard entries <= indirectLimit else { throw .indirectTableTooLarge(entries: entries, limit: indirectLimit) }
        sawIndirect = true
        let base = GuestAddress(address)
        do {
            try memory.checkContiguous(base, length: UInt64(length))
        } catch .crossesRegion {
            // Backed; each entry is loaded (and checked) on its own below.
        } catch {
            throw .indirectTableOutOfRange(error)
        }
        func entryAddress(_ i: Int) -> GuestAddress { base.unchecked(plus: UInt64(i) * 16) }
        switch format {
        case .split:
            // Entries chain through `next` inside the table, starting at 0.
            var index = 0
            var count = 0
            while true {
                guard count < entries else { throw .tooLong(limit: entries) }
                count += 1
                let d: vring_desc
                do { d = try memory.load(vring_desc.self, at: entryAddress(index)) } catch { throw .indirectTableOutOfRange(error) }
                let f = UInt16(littleEndian: d.flags)
                guard f & Ring.indirect == 0 else { throw .nestedIndirect }
                try add(address: UInt64(littleEndian: d.addr), length: UInt32(littleEndian: d.len), flags: f)
                guard f & Ring.next != 0 else { break }
                let next = UInt16(littleEndian: d.next)
                guard Int(next) < entries else { throw .nextOutOfRange(next: next, size: entries) }
                index = Int(next)
            }
        case .packed:
            // 2.8.8: the whole table is one chain, in order; NEXT is implied.
            for i in 0..<entries {
                let d: vring_packed_desc
                do { d = try memory.load(vring_packed_desc.self, at: entryAddress(i)) } catch { throw .indirectTableOutOfRange(error) }
                let f = UInt16(littleEndian: d.flags)
                guard f & Ring.indirect == 0 else { throw .nestedIndirect }
                try add(address: UInt64(littleEndian: d.addr), length: UInt32(littleEndian: d.len), flags: f)
            }
        }
    }
}
