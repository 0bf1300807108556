/// A kernel file, identified: a Linux bzImage (x86 boot protocol) or an ELF
/// with a PVH entry note. `identify` reads only headers; `loadKernel` does
/// the rest.
public enum KernelImage: Sendable, Equatable, CustomStringConvertible {
    case bzImage(BzImageHeader)
    /// An ELF32 or ELF64 executable with XEN_ELFNOTE_PHYS32_ENTRY.
    case pvh(entry: UInt32, elfClass: Int)

    /// What `bytes` are, or why they are not a kernel vfsvm can boot:
    /// a bzImage older than boot protocol 2.06, an ELF without the PVH
    /// note, a corrupt ELF, anything else.
    public static func identify(_ bytes: [UInt8]) throws(BootError) -> KernelImage {
        if ELFFile.isELF(bytes) {
            let elf = try ELFFile(bytes)
            return .pvh(entry: try PVHImage.entry(of: elf, bytes), elfClass: elf.elfClass.rawValue)
        }
        return .bzImage(try BzImageHeader(bytes))
    }

    public var description: String {
        switch self {
        case let .bzImage(h): "bzImage, boot protocol \(h.version >> 8).\(h.version & 0xFF < 10 ? "0" : "")\(h.version & 0xFF)"
        case let .pvh(entry, c): "ELF\(c) with PVH entry \(hex(entry))"
        }
    }
}

/// The setup header of a bzImage (Documentation/arch/x86/boot.rst, "The
/// Real-Mode Kernel Header"): offsets are from the start of the image, and
/// the same offsets hold the header inside `struct boot_params`.
public struct BzImageHeader: Sendable, Equatable {
    // Field offsets (boot.rst, "Details of Header Fields").
    static let setupSectsOffset = 0x1F1
    static let bootFlagOffset = 0x1FE
    static let jumpOffset = 0x200
    static let headerMagicOffset = 0x202
    static let versionOffset = 0x206
    static let typeOfLoaderOffset = 0x210
    static let loadflagsOffset = 0x211
    static let ramdiskImageOffset = 0x218
    static let ramdiskSizeOffset = 0x21C
    static let heapEndPtrOffset = 0x224
    static let cmdLinePtrOffset = 0x228
    static let initrdAddrMaxOffset = 0x22C
    static let kernelAlignmentOffset = 0x230
    static let relocatableOffset = 0x234
    static let xloadflagsOffset = 0x236
    static let cmdlineSizeOffset = 0x238
    static let prefAddressOffset = 0x258
    static let initSizeOffset = 0x260

    /// loadflags bits.
    static let LOADED_HIGH: UInt8 = 0x01
    static let CAN_USE_HEAP: UInt8 = 0x80
    /// xloadflags bit: the kernel has the 64-bit entry at load address + 0x200.
    static let XLF_KERNEL_64: UInt16 = 0x01

    /// Boot protocol version (0x020F = 2.15).
    public let version: UInt16
    /// 512-byte sectors of real-mode setup code after the boot sector (0 means 4).
    public let setupSects: Int
    public let loadflags: UInt8
    public let xloadflags: UInt16
    /// The highest address the initrd may occupy (inclusive).
    public let initrdAddrMax: UInt32
    public let kernelAlignment: UInt32
    public let relocatable: Bool
    /// Longest command line without its NUL.
    public let cmdlineSize: UInt32
    /// Where a relocatable kernel prefers to be loaded (2.10+).
    public let prefAddress: UInt64
    /// Bytes the kernel needs from its runtime start address before it
    /// reads the memory map (2.10+).
    public let initSize: UInt32
    /// Length of the header to copy into boot_params: from 0x1F1 to
    /// 0x202 + the jump's offset byte at 0x201 (boot.rst, "the end of the
    /// setup header can be calculated as follows: 0x0202 + byte value at 0x0201").
    public let headerLength: Int
    /// File offset of the protected-mode kernel.
    public let kernelOffset: Int

    public init(_ bytes: [UInt8]) throws(BootError) {
        let count = UInt64(bytes.count)
        guard count >= 0x206,
              readLE(UInt32.self, bytes, at: UInt64(Self.headerMagicOffset)) == 0x5372_6448,   // "HdrS"
              readLE(UInt16.self, bytes, at: UInt64(Self.bootFlagOffset)) == 0xAA55 else {
            throw .unknownKernelFormat
        }
        // Everything up to init_size (0x264) exists in any 2.10+ header;
        // older images are refused below before a late field is read.
        version = readLE(UInt16.self, bytes, at: UInt64(Self.versionOffset)) ?? 0
        guard version >= 0x0206 else { throw .bootProtocolTooOld(version: version) }
        guard count >= 0x264 else { throw .truncated(what: "the setup header", need: 0x264, have: count) }
        let sects = Int(bytes[Self.setupSectsOffset])
        setupSects = sects == 0 ? 4 : sects
        loadflags = bytes[Self.loadflagsOffset]
        xloadflags = version >= 0x020C ? readLE(UInt16.self, bytes, at: UInt64(Self.xloadflagsOffset))! : 0
        initrdAddrMax = readLE(UInt32.self, bytes, at: UInt64(Self.initrdAddrMaxOffset))!
        kernelAlignment = readLE(UInt32.self, bytes, at: UInt64(Self.kernelAlignmentOffset))!
        relocatable = bytes[Self.relocatableOffset] != 0
        cmdlineSize = readLE(UInt32.self, bytes, at: UInt64(Self.cmdlineSizeOffset))!
        prefAddress = version >= 0x020A ? readLE(UInt64.self, bytes, at: UInt64(Self.prefAddressOffset))! : 0x10_0000
        initSize = version >= 0x020A ? readLE(UInt32.self, bytes, at: UInt64(Self.initSizeOffset))! : 0
        headerLength = 0x202 + Int(bytes[0x201]) - Self.setupSectsOffset
        kernelOffset = (setupSects + 1) * 512
        guard UInt64(Self.setupSectsOffset + headerLength) <= count else {
            throw .truncated(what: "the setup header (to \(hex(Self.setupSectsOffset + headerLength)))",
                             need: UInt64(Self.setupSectsOffset + headerLength), have: count)
        }
        guard UInt64(kernelOffset) < count else {
            throw .truncated(what: "the protected-mode kernel after \(setupSects) setup sectors",
                             need: UInt64(kernelOffset) + 1, have: count)
        }
    }

    /// Checks what the 64-bit entry needs: protocol 2.12 with XLF_KERNEL_64,
    /// and a bzImage (LOADED_HIGH), not a zImage.
    func check64BitEntry() throws(BootError) {
        guard version >= 0x020C, xloadflags & Self.XLF_KERNEL_64 != 0 else {
            throw .no64BitEntry(version: version, xloadflags: xloadflags)
        }
        guard loadflags & Self.LOADED_HIGH != 0 else { throw .notLoadedHigh }
    }
}

/// PVH entry checks shared by `identify` and the loader.
enum PVHImage {
    /// The entry from the PVH note, which must be a 32-bit address inside a
    /// PT_LOAD segment (it is where the vCPU starts).
    static func entry(of elf: ELFFile, _ bytes: [UInt8]) throws(BootError) -> UInt32 {
        guard let entry = try elf.pvhEntry(bytes) else { throw .noPVHEntry(elfClass: elf.elfClass.rawValue) }
        let inside = elf.loadSegments.contains { s in
            entry >= s.segment.physicalAddress && entry - s.segment.physicalAddress < s.segment.memorySize
        }
        guard entry <= UInt64(UInt32.max), inside else { throw .badPVHEntry(entry) }
        return UInt32(entry)
    }
}
