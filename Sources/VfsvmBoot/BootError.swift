import VfsvmMemory

/// Why a kernel could not be loaded or the firmware tables not written.
/// `description` is one sentence a user can act on.
public enum BootError: Error, Hashable, Sendable, CustomStringConvertible {
    // The image
    /// Neither a bzImage nor an ELF file.
    case unknownKernelFormat
    /// Fewer bytes than the named structure needs.
    case truncated(what: String, need: UInt64, have: UInt64)
    /// A bzImage whose boot protocol predates 2.06 (no `cmdline_size`).
    case bootProtocolTooOld(version: UInt16)
    /// A bzImage without the 64-bit entry (protocol < 2.12 or no XLF_KERNEL_64).
    case no64BitEntry(version: UInt16, xloadflags: UInt16)
    /// A zImage (LOADED_HIGH clear): its kernel would load at 0x10000.
    case notLoadedHigh
    /// A malformed ELF header or program header.
    case badELF(String)
    /// An ELF without XEN_ELFNOTE_PHYS32_ENTRY.
    case noPVHEntry(elfClass: Int)
    /// A PVH entry note whose value is not a usable 32-bit address.
    case badPVHEntry(UInt64)

    // Fitting it into the guest
    /// Memory below the loader's minimum.
    case memoryTooSmall(memory: UInt64, minimum: UInt64)
    /// The kernel needs `[start, end)` below 4 GiB and the RAM there ends at `ramTop`.
    case kernelDoesNotFit(memory: UInt64, start: UInt64, end: UInt64, ramTop: UInt64)
    /// A non-relocatable bzImage that would run below 1 MiB, over the boot structures.
    case kernelBelow1MiB(UInt64)
    /// A PVH segment outside RAM, or below 1 MiB where the boot structures live.
    case segmentOutsideRAM(index: Int, start: UInt64, end: UInt64)
    case cmdlineTooLong(length: Int, maximum: Int)
    case cmdlineHasNUL(offset: Int)
    /// No room for the initrd between the kernel's end and the highest address allowed.
    case initrdDoesNotFit(size: UInt64, lowest: UInt64, highest: UInt64)

    // Firmware tables
    case tooManyCPUs(Int, maximum: Int)
    case badDeviceConfig(String)
    case tablesTooLarge(what: String, size: Int, room: Int)

    /// A guest memory write failed (the caller's memory does not back the
    /// layout's ranges).
    case guestMemory(GuestMemoryError)

    public var description: String {
        switch self {
        case .unknownKernelFormat:
            "kernel image: neither a bzImage (no \"HdrS\" setup header at 0x202) nor an ELF file"
        case let .truncated(what, need, have):
            "kernel image: \(what) needs \(need) bytes but the file has \(have)"
        case let .bootProtocolTooOld(v):
            "kernel image: boot protocol \(protocolText(v)) is older than 2.06, the oldest vfsvm loads"
        case let .no64BitEntry(v, x):
            "kernel image: no 64-bit entry point (boot protocol \(protocolText(v)), xloadflags \(hex(x)); vfsvm needs protocol 2.12 with XLF_KERNEL_64)"
        case .notLoadedHigh:
            "kernel image: a zImage (LOADED_HIGH clear in loadflags); only bzImage kernels are supported"
        case let .badELF(why):
            "kernel image: malformed ELF file: \(why)"
        case let .noPVHEntry(c):
            "kernel image: ELF\(c) file without a PVH entry (Xen ELF note 18, XEN_ELFNOTE_PHYS32_ENTRY); vfsvm boots ELF kernels only through PVH"
        case let .badPVHEntry(e):
            "kernel image: PVH entry point \(hex(e)) does not lie in a loaded segment below 4 GiB"
        case let .memoryTooSmall(m, min):
            "memory \(sizeText(m)) is too small: vfsvm needs at least \(sizeText(min))"
        case let .kernelDoesNotFit(m, start, end, top):
            "memory \(sizeText(m)) is too small for this kernel: it needs \(hex(start))-\(hex(end)) (\(sizeText(end - start))) and RAM below 4 GiB ends at \(hex(top))"
        case let .kernelBelow1MiB(a):
            "kernel image: the kernel runs at \(hex(a)), below 1 MiB where the boot structures live"
        case let .segmentOutsideRAM(i, start, end):
            "kernel image: ELF segment \(i) at \(hex(start))-\(hex(end)) is not in RAM at or above 1 MiB"
        case let .cmdlineTooLong(l, max):
            "kernel command line is \(l) bytes; this kernel takes at most \(max)"
        case let .cmdlineHasNUL(o):
            "kernel command line contains a NUL byte at offset \(o)"
        case let .initrdDoesNotFit(size, low, high):
            "initrd of \(sizeText(size)) does not fit in guest RAM between the kernel's end \(hex(low)) and \(hex(high)); give the guest more memory"
        case let .tooManyCPUs(n, max):
            "\(n) vCPUs requested; the MADT and MP table describe at most \(max)"
        case let .badDeviceConfig(why):
            "firmware tables: \(why)"
        case let .tablesTooLarge(what, size, room):
            "firmware tables: the \(what) take \(size) bytes but only \(room) are set aside"
        case let .guestMemory(e):
            "guest memory does not hold the boot layout: \(e)"
        }
    }
}

private func protocolText(_ v: UInt16) -> String { "\(v >> 8).\(String(format2: v & 0xFF))" }

private extension String {
    /// Two-digit minor version ("2.06"), as boot.rst writes them.
    init(format2 value: UInt16) { self = value < 10 ? "0\(value)" : "\(value)" }
}

/// Runs a guest memory access, turning its error into `BootError.guestMemory`.
func guest<T>(_ body: () throws(GuestMemoryError) -> T) throws(BootError) -> T {
    do { return try body() } catch { throw .guestMemory(error) }
}
