/// The register-file target's input: guest RAM contents (chunks, as
/// `VirtqueueFuzzCase`) and a sequence of register accesses a vCPU makes.
///
///     u8   bits 0-1 guest RAM layout, bits 2-7 transport (0 virtio-mmio;
///          the virtio-pci register file will take 1)
///     u8   chunk count, chunks: u16 RAM offset, u8 length, bytes
///     accesses: u8 kind (bit 0 write; bits 1-2 width 4, 1, 2 or 8 bytes),
///          u16 offset, and for a write the value (u64, width bytes used)
public struct RegisterFuzzCase {
    public struct Access: Equatable {
        public var write: Bool
        public var width: Int
        public var offset: UInt16
        public var value: UInt64
        public init(write: Bool, width: Int = 4, offset: UInt16, value: UInt64 = 0) {
            self.write = write; self.width = width; self.offset = offset; self.value = value
        }
        public var bytes: [UInt8] { (0..<width).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) } }
    }

    public var layout: UInt8 = 0
    public var transport: UInt8 = 0
    public var chunks: [(offset: UInt16, bytes: [UInt8])] = []
    public var accesses: [Access] = []

    public init() {}

    public init(_ input: inout FuzzInput) {
        let head = input.u8()
        layout = head & 3
        transport = head >> 2
        let count = Int(input.u8())
        for _ in 0..<count where !input.isAtEnd {
            let offset = input.u16()
            chunks.append((offset, input.take(Int(input.u8()))))
        }
        while !input.isAtEnd && accesses.count < 512 {
            let kind = input.u8()
            let width = [4, 1, 2, 8][Int(kind >> 1 & 3)]
            let offset = input.u16()
            accesses.append(Access(write: kind & 1 != 0, width: width, offset: offset, value: kind & 1 != 0 ? input.u64() : 0))
        }
    }

    public var encoded: [UInt8] {
        var w = FuzzInputWriter()
        w.u8(layout & 3 | transport << 2)
        w.u8(UInt8(min(chunks.count, 255)))
        for (offset, bytes) in chunks.prefix(255) {
            w.u16(offset)
            w.u8(UInt8(bytes.count))
            w.append(bytes)
        }
        for a in accesses {
            let widthCode: UInt8 = switch a.width { case 1: 1; case 2: 2; case 8: 3; default: 0 }
            w.u8((a.write ? 1 : 0) | widthCode << 1)
            w.u16(a.offset)
            if a.write { w.u64(a.value) }
        }
        return w.bytes
    }
}
