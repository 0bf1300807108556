/// A small ACPI Machine Language encoder for the DSDT (ACPI 6.4, 20.2
/// "AML Grammar Definition"; opcodes in 20.3 "AML Byte Stream Byte Values").
/// Terms are values; `encoded` gives their bytes. Names and IDs come from
/// vfsvm's own code, so a malformed one is a programming error
/// (precondition), not a runtime condition.
indirect enum AML: Equatable, Sendable {
    /// An integer, in the shortest encoding (ZeroOp, OneOp, Byte/Word/DWord/QWordConst).
    case integer(UInt64)
    /// A NUL-terminated ASCII string (StringPrefix).
    case string(String)
    /// A compressed EISA ID such as "PNP0A03", as iasl's EISAID() macro makes it.
    case eisaID(String)
    /// DefName: Name(name, value).
    case name(String, AML)
    /// DefScope: Scope(path) { terms }.
    case scope(String, [AML])
    /// DefDevice: Device(name) { terms }.
    case device(String, [AML])
    /// DefMethod: Method(name, args, NotSerialized/Serialized) { terms }.
    case method(String, arguments: Int, serialized: Bool, [AML])
    /// DefReturn: Return(value).
    case `return`(AML)
    /// DefPackage: Package() { elements } (at most 255).
    case package([AML])
    /// DefBuffer: Buffer() { bytes }.
    case buffer([UInt8])
    /// ResourceTemplate() { descriptors }: a buffer ending with an EndTag.
    case resourceTemplate([ResourceDescriptor])

    // Opcodes (ACPI 6.4, 20.3).
    static let zeroOp: UInt8 = 0x00, oneOp: UInt8 = 0x01
    static let nameOp: UInt8 = 0x08, bytePrefix: UInt8 = 0x0A, wordPrefix: UInt8 = 0x0B
    static let dwordPrefix: UInt8 = 0x0C, stringPrefix: UInt8 = 0x0D, qwordPrefix: UInt8 = 0x0E
    static let scopeOp: UInt8 = 0x10, bufferOp: UInt8 = 0x11, packageOp: UInt8 = 0x12, methodOp: UInt8 = 0x14
    static let extOpPrefix: UInt8 = 0x5B, deviceOp: UInt8 = 0x82, returnOp: UInt8 = 0xA4
    static let rootChar: UInt8 = 0x5C, parentPrefix: UInt8 = 0x5E
    static let dualNamePrefix: UInt8 = 0x2E, multiNamePrefix: UInt8 = 0x2F

    var encoded: [UInt8] {
        switch self {
        case let .integer(v):
            var w = ByteWriter()
            switch v {
            case 0: w.append(Self.zeroOp)
            case 1: w.append(Self.oneOp)
            case ...0xFF: w.append(Self.bytePrefix); w.append(UInt8(v))
            case ...0xFFFF: w.append(Self.wordPrefix); w.append(UInt16(v))
            case ...0xFFFF_FFFF: w.append(Self.dwordPrefix); w.append(UInt32(v))
            default: w.append(Self.qwordPrefix); w.append(v)
            }
            return w.bytes
        case let .string(s):
            precondition(s.utf8.allSatisfy { $0 >= 0x01 && $0 <= 0x7F }, "AML strings are ASCII without NUL")
            return [Self.stringPrefix] + Array(s.utf8) + [0]
        case let .eisaID(id):
            return AML.integer(UInt64(Self.compressedEISAID(id))).encoded
        case let .name(n, value):
            return [Self.nameOp] + Self.nameString(n) + value.encoded
        case let .scope(path, terms):
            return [Self.scopeOp] + Self.package(Self.nameString(path) + terms.flatMap(\.encoded))
        case let .device(n, terms):
            return [Self.extOpPrefix, Self.deviceOp] + Self.package(Self.nameString(n) + terms.flatMap(\.encoded))
        case let .method(n, arguments, serialized, terms):
            precondition((0...7).contains(arguments))
            // MethodFlags: ArgCount (bits 0-2), SerializeFlag (bit 3), SyncLevel 0.
            let flags = UInt8(arguments) | (serialized ? 0x08 : 0)
            return [Self.methodOp] + Self.package(Self.nameString(n) + [flags] + terms.flatMap(\.encoded))
        case let .return(value):
            return [Self.returnOp] + value.encoded
        case let .package(elements):
            precondition(elements.count <= 255, "Package holds at most 255 elements (VarPackage not needed here)")
            return [Self.packageOp] + Self.package([UInt8(elements.count)] + elements.flatMap(\.encoded))
        case let .buffer(bytes):
            return [Self.bufferOp] + Self.package(AML.integer(UInt64(bytes.count)).encoded + bytes)
        case let .resourceTemplate(descriptors):
            return AML.buffer(descriptors.flatMap(\.encoded) + ResourceDescriptor.endTag).encoded
        }
    }

    /// PkgLength followed by `body` (ACPI 6.4, 20.2.4). The length counts
    /// itself: one byte up to 63, else a lead byte with the count of
    /// following bytes in bits 7-6 and the low nibble in bits 3-0.
    static func package(_ body: [UInt8]) -> [UInt8] {
        let oneByte = body.count + 1
        if oneByte < 0x40 { return [UInt8(oneByte)] + body }
        for extra in 1...3 {
            let total = body.count + 1 + extra
            guard total < 1 << (4 + 8 * extra) else { continue }
            var lead = [UInt8(extra << 6) | UInt8(total & 0xF)]
            for i in 0..<extra { lead.append(UInt8(truncatingIfNeeded: total >> (4 + 8 * i))) }
            return lead + body
        }
        preconditionFailure("AML package of \(body.count) bytes exceeds PkgLength's 2^28")
    }

    /// A NameString: optional "\" or "^" prefixes, then dot-separated
    /// segments of up to four characters, padded with "_" (ACPI 6.4, 20.2.2).
    static func nameString(_ path: String) -> [UInt8] {
        var bytes = Array(path.utf8)
        var prefix: [UInt8] = []
        if bytes.first == rootChar { prefix = [rootChar]; bytes.removeFirst() }
        while bytes.first == parentPrefix { prefix.append(parentPrefix); bytes.removeFirst() }
        let segments = bytes.split(separator: 0x2E, omittingEmptySubsequences: false).map { Array($0) }
        if bytes.isEmpty { return prefix + [0x00] }      // NullName
        let encoded = segments.flatMap(nameSeg)
        switch segments.count {
        case 1: return prefix + encoded
        case 2: return prefix + [dualNamePrefix] + encoded
        default: return prefix + [multiNamePrefix, UInt8(segments.count)] + encoded
        }
    }

    private static func nameSeg(_ seg: [UInt8]) -> [UInt8] {
        func lead(_ c: UInt8) -> Bool { (0x41...0x5A).contains(c) || c == 0x5F }
        precondition((1...4).contains(seg.count) && lead(seg[0]) && seg.allSatisfy { lead($0) || (0x30...0x39).contains($0) },
                     "bad AML name segment \(String(decoding: seg, as: UTF8.self))")
        return seg + [UInt8](repeating: 0x5F, count: 4 - seg.count)
    }

    /// EISAID("PNP0A03") → 0x030AD041: three letters of five bits each
    /// (A = 1) and four hex digits, stored so the bytes read 41 D0 0A 03.
    static func compressedEISAID(_ id: String) -> UInt32 {
        let c = Array(id.utf8)
        precondition(c.count == 7 && c[0..<3].allSatisfy { (0x41...0x5A).contains($0) }, "bad EISA ID \(id)")
        let hexDigits = c[3...].map { ch -> UInt32 in
            switch ch {
            case 0x30...0x39: UInt32(ch - 0x30)
            case 0x41...0x46: UInt32(ch - 0x41 + 10)
            default: preconditionFailure("bad EISA ID \(id)")
            }
        }
        let letters = (UInt32(c[0] - 0x40) << 10) | (UInt32(c[1] - 0x40) << 5) | UInt32(c[2] - 0x40)
        let product = hexDigits.reduce(0) { $0 << 4 | $1 }
        let bigEndian = letters << 16 | product
        return bigEndian.byteSwapped
    }
}

/// Resource descriptors for _CRS (ACPI 6.4, 6.4 "Resource Data Types for
/// ACPI"): small items have a one-byte tag with the length in bits 2-0,
/// large items a tag byte and a 16-bit length.
enum ResourceDescriptor: Equatable, Sendable {
    /// Memory32Fixed(ReadWrite/ReadOnly, base, length) — 6.4.3.4.
    case memory32Fixed(base: UInt32, length: UInt32, writable: Bool)
    /// IO(Decode16, min, max, alignment, length) — 6.4.2.5.
    case io(minimum: UInt16, maximum: UInt16, alignment: UInt8, length: UInt8)
    /// Interrupt(ResourceConsumer, Edge/Level, ActiveHigh/ActiveLow,
    /// Exclusive/Shared) { GSIs } — the extended interrupt descriptor, 6.4.3.6.
    case interrupt(gsis: [UInt32], edge: Bool, activeLow: Bool, shared: Bool)
    /// WordBusNumber(ResourceProducer, MinFixed, MaxFixed, PosDecode, ...) — 6.4.3.5.3.
    case wordBusNumber(minimum: UInt16, maximum: UInt16)
    /// WordIO(ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, ...).
    case wordIO(minimum: UInt16, maximum: UInt16)
    /// DWordMemory(ResourceProducer, PosDecode, MinFixed, MaxFixed, ..., ReadWrite, ...) — 6.4.3.5.2.
    case dwordMemory(minimum: UInt32, maximum: UInt32, prefetchable: Bool)
    /// QWordMemory(ResourceProducer, PosDecode, MinFixed, MaxFixed, ..., ReadWrite, ...) — 6.4.3.5.1.
    case qwordMemory(minimum: UInt64, maximum: UInt64, prefetchable: Bool)

    /// End Tag (6.4.2.9) with checksum 0 ("treated as if the checksum operation succeeded").
    static let endTag: [UInt8] = [0x79, 0x00]

    // Address space resource types and flags (6.4.3.5, Table 6.50/6.51).
    private static let memoryRange: UInt8 = 0, ioRange: UInt8 = 1, busRange: UInt8 = 2
    /// General flags: _MAF | _MIF, positive decode, producer (bit 0 clear).
    private static let fixedProducer: UInt8 = 0x0C

    var encoded: [UInt8] {
        var w = ByteWriter()
        switch self {
        case let .memory32Fixed(base, length, writable):
            w.append(UInt8(0x86)); w.append(UInt16(9))           // large item 0x06, length 9
            w.append(UInt8(writable ? 1 : 0))                     // information: _RW
            w.append(base); w.append(length)                      // _BAS, _LEN
        case let .io(minimum, maximum, alignment, length):
            w.append(UInt8(0x47))                                 // small item 0x08, length 7
            w.append(UInt8(1))                                    // information: 16-bit decode (_DEC)
            w.append(minimum); w.append(maximum)                  // _MIN, _MAX
            w.append(alignment); w.append(length)                 // _ALN, _LEN
        case let .interrupt(gsis, edge, activeLow, shared):
            precondition((1...255).contains(gsis.count))
            w.append(UInt8(0x89)); w.append(UInt16(2 + 4 * gsis.count))   // large item 0x09
            // Flags: consumer (bit 0), _HE edge (bit 1), _LL active-low (bit 2), _SHR (bit 3).
            w.append(UInt8(1) | (edge ? 2 : 0) | (activeLow ? 4 : 0) | (shared ? 8 : 0))
            w.append(UInt8(gsis.count))
            for g in gsis { w.append(g) }
        case let .wordBusNumber(minimum, maximum):
            Self.word(&w, type: Self.busRange, specific: 0, minimum: minimum, maximum: maximum)
        case let .wordIO(minimum, maximum):
            // Type-specific: _RNG = 3 (ISA and non-ISA ranges).
            Self.word(&w, type: Self.ioRange, specific: 3, minimum: minimum, maximum: maximum)
        case let .dwordMemory(minimum, maximum, prefetchable):
            w.append(UInt8(0x87)); w.append(UInt16(23))          // large item 0x07, length 23
            w.append(Self.memoryRange); w.append(Self.fixedProducer); w.append(Self.memoryFlags(prefetchable))
            w.append(UInt32(0)); w.append(minimum); w.append(maximum)   // _GRA, _MIN, _MAX
            w.append(UInt32(0)); w.append(maximum - minimum &+ 1)       // _TRA, _LEN
        case let .qwordMemory(minimum, maximum, prefetchable):
            w.append(UInt8(0x8A)); w.append(UInt16(43))          // large item 0x0A, length 43
            w.append(Self.memoryRange); w.append(Self.fixedProducer); w.append(Self.memoryFlags(prefetchable))
            w.append(UInt64(0)); w.append(minimum); w.append(maximum)
            w.append(UInt64(0)); w.append(maximum - minimum &+ 1)
        }
        return w.bytes
    }

    /// Memory type-specific flags: _RW (bit 0) and _MEM in bits 2-1:
    /// 0 non-cacheable, 3 prefetchable.
    private static func memoryFlags(_ prefetchable: Bool) -> UInt8 { prefetchable ? 0x07 : 0x01 }

    private static func word(_ w: inout ByteWriter, type: UInt8, specific: UInt8, minimum: UInt16, maximum: UInt16) {
        w.append(UInt8(0x88)); w.append(UInt16(13))              // large item 0x08, length 13
        w.append(type); w.append(fixedProducer); w.append(specific)
        w.append(UInt16(0)); w.append(minimum); w.append(maximum)    // _GRA, _MIN, _MAX
        w.append(UInt16(0)); w.append(maximum - minimum &+ 1)        // _TRA, _LEN
    }
}
