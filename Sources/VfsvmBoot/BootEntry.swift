import VfsvmMemory

/// A segment register with its hidden part, shaped like KVM's
/// `struct kvm_segment` (linux/kvm.h) so the VMM copies it field by field
/// into `kvm_sregs`. `limit` is the byte-granular limit (0xFFFF_FFFF for a
/// flat 4 GiB segment), as KVM wants it, not the 20-bit descriptor field.
public struct SegmentRegister: Sendable, Equatable {
    public var base: UInt64
    public var limit: UInt32
    public var selector: UInt16
    /// Descriptor type (Intel SDM Vol. 3A, 3.4.5.1): 0xB = code
    /// execute/read accessed, 0x3 = data read/write accessed; with `s` clear,
    /// 0xB = busy 32/64-bit TSS, 0x2 = LDT.
    public var type: UInt8
    public var present: Bool
    public var dpl: UInt8
    /// Default operation size 32-bit (D/B).
    public var db: Bool
    /// Code or data (not a system segment).
    public var s: Bool
    /// 64-bit code segment (L).
    public var l: Bool
    /// 4 KiB granularity (G).
    public var g: Bool
    public var avl: Bool
    public var unusable: Bool

    /// Flat 4 GiB code, 64-bit (long mode) or 32-bit (protected mode).
    static func flatCode(selector: UInt16, longMode: Bool) -> SegmentRegister {
        SegmentRegister(base: 0, limit: 0xFFFF_FFFF, selector: selector, type: 0xB, present: true, dpl: 0,
                        db: !longMode, s: true, l: longMode, g: true, avl: false, unusable: false)
    }

    /// Flat 4 GiB read/write data.
    static func flatData(selector: UInt16) -> SegmentRegister {
        SegmentRegister(base: 0, limit: 0xFFFF_FFFF, selector: selector, type: 0x3, present: true, dpl: 0,
                        db: true, s: true, l: false, g: true, avl: false, unusable: false)
    }

    /// A busy TSS at 0 of 0x68 bytes: VMX entry needs a usable TR (Intel
    /// SDM Vol. 3C, 27.3.1.2), and the PVH ABI asks for "a 32-bit TSS with
    /// base 0 and limit 0x67". Nothing switches tasks, so its contents do
    /// not matter.
    static func taskState(selector: UInt16) -> SegmentRegister {
        SegmentRegister(base: 0, limit: 0x67, selector: selector, type: 0xB, present: true, dpl: 0,
                        db: false, s: false, l: false, g: false, avl: false, unusable: false)
    }

    /// No LDT.
    static let noLDT = SegmentRegister(base: 0, limit: 0, selector: 0, type: 0x2, present: false, dpl: 0,
                                       db: false, s: false, l: false, g: false, avl: false, unusable: true)

    /// The 8-byte GDT descriptor (Intel SDM Vol. 3A, Figure 3-8). A TSS in
    /// long mode takes 16 bytes; the upper 8 (base 63:32) are zero here.
    var descriptor: UInt64 {
        let rawLimit = UInt64(g ? limit >> 12 : limit) & 0xF_FFFF
        var d = rawLimit & 0xFFFF
        d |= (base & 0xFF_FFFF) << 16
        d |= UInt64(type & 0xF) << 40
        d |= (s ? 1 : 0) << 44
        d |= UInt64(dpl & 3) << 45
        d |= (present ? 1 : 0) << 47
        d |= (rawLimit >> 16) << 48
        d |= (avl ? 1 : 0) << 52
        d |= (l ? 1 : 0) << 53
        d |= (db ? 1 : 0) << 54
        d |= (g ? 1 : 0) << 55
        d |= ((base >> 24) & 0xFF) << 56
        return d
    }
}

/// What the loader left for the boot vCPU: the mode it starts in and every
/// register the VMM sets before the first KVM_RUN. Set the control
/// registers as whole values (not OR'd into KVM's reset values: CD/NW from
/// reset would leave caching off). Application processors are not touched:
/// they wait for INIT/SIPI in the in-kernel LAPIC.
///
/// - `.linux64` (Linux 64-bit boot protocol, boot.rst "64-bit Boot
///   Protocol"): long mode, paging on through identity tables covering 4 GiB,
///   CS = 0x10 (`__BOOT_CS`), DS/ES/SS = 0x18 (`__BOOT_DS`), interrupts off,
///   rip = load address + 0x200, rsi = boot_params.
/// - `.pvh32` (Xen PVH ABI, docs/misc/pvh.pandoc): 32-bit protected mode,
///   paging off, flat CS/DS/ES/SS, a TSS in TR, interrupts off,
///   rip = the PVH note's entry, ebx = hvm_start_info.
public struct BootEntry: Sendable, Equatable {
    public enum Mode: Sendable, Equatable {
        case linux64
        case pvh32
    }

    public var mode: Mode
    public var rip: UInt64
    public var rsp: UInt64
    public var rsi: UInt64
    public var rbx: UInt64
    /// Bit 1 is reserved and reads as one; IF, TF, VM clear.
    public var rflags: UInt64 = 0x2

    /// CR0: PE | ET, plus PG in long mode.
    public var cr0: UInt64
    /// Page table root (PML4), 0 with paging off.
    public var cr3: UInt64
    /// CR4: PAE in long mode, 0 otherwise.
    public var cr4: UInt64
    /// IA32_EFER: LME | LMA in long mode, 0 otherwise.
    public var efer: UInt64

    public var gdtBase: UInt64
    public var gdtLimit: UInt16
    /// No IDT: the kernel loads its own before it enables interrupts; an
    /// exception before that is a triple fault (KVM_EXIT_SHUTDOWN).
    public var idtBase: UInt64 = 0
    public var idtLimit: UInt16 = 0

    public var cs: SegmentRegister
    public var ds: SegmentRegister
    public var es: SegmentRegister
    public var fs: SegmentRegister
    public var gs: SegmentRegister
    public var ss: SegmentRegister
    public var tr: SegmentRegister
    public var ldt: SegmentRegister

    /// cr3 when paging is on.
    public var pageTableRoot: UInt64? { cr0 & Self.CR0_PG != 0 ? cr3 : nil }

    static let CR0_PE: UInt64 = 1 << 0
    static let CR0_ET: UInt64 = 1 << 4
    static let CR0_PG: UInt64 = 1 << 31
    static let CR4_PAE: UInt64 = 1 << 5
    static let EFER_LME: UInt64 = 1 << 8
    static let EFER_LMA: UInt64 = 1 << 10

    /// GDT selectors shared by both modes.
    static let codeSelector: UInt16 = 0x10
    static let dataSelector: UInt16 = 0x18
    static let tssSelector: UInt16 = 0x20
    /// null, null, code, data, TSS (16 bytes: a long-mode system descriptor).
    static let gdtSize = 6 * 8

    init(mode: Mode, rip: UInt64, rsi: UInt64, rbx: UInt64) {
        let longMode = mode == .linux64
        self.mode = mode
        self.rip = rip
        self.rsp = X86Layout.bootStackTop
        self.rsi = rsi
        self.rbx = rbx
        cr0 = Self.CR0_PE | Self.CR0_ET | (longMode ? Self.CR0_PG : 0)
        cr3 = longMode ? X86Layout.pageTables : 0
        cr4 = longMode ? Self.CR4_PAE : 0
        efer = longMode ? Self.EFER_LME | Self.EFER_LMA : 0
        gdtBase = X86Layout.gdt
        gdtLimit = UInt16(Self.gdtSize - 1)
        cs = .flatCode(selector: Self.codeSelector, longMode: longMode)
        let data = SegmentRegister.flatData(selector: Self.dataSelector)
        (ds, es, fs, gs, ss) = (data, data, data, data, data)
        tr = .taskState(selector: Self.tssSelector)
        ldt = .noLDT
    }

    /// The GDT these segments come from, as bytes.
    var gdtBytes: [UInt8] {
        var w = ByteWriter()
        w.append(UInt64(0))                 // 0x00 null
        w.append(UInt64(0))                 // 0x08 unused
        w.append(cs.descriptor)             // 0x10 __BOOT_CS
        w.append(ds.descriptor)             // 0x18 __BOOT_DS
        w.append(tr.descriptor)             // 0x20 TSS, low half
        w.append(UInt64(0))                 // 0x28 TSS, high half (base 63:32)
        return w.bytes
    }

    /// Writes the GDT at `X86Layout.gdt` and, in long mode, the identity
    /// page tables at `X86Layout.pageTables`.
    func writeTables(into memory: GuestMemory) throws(BootError) {
        let gdt = gdtBytes
        try guest { () throws(GuestMemoryError) in try memory.writeBytes(gdt, at: GuestAddress(X86Layout.gdt)) }
        if mode == .linux64 {
            let tables = Self.identityPageTables()
            try guest { () throws(GuestMemoryError) in try memory.writeBytes(tables, at: GuestAddress(X86Layout.pageTables)) }
        }
    }

    /// PML4, PDPT and four page directories mapping [0, 4 GiB) to itself
    /// with 2 MiB pages (Intel SDM Vol. 3A, 4.5: present | writable, PS in
    /// the PDEs). 1 GiB pages would need CPUID.80000001H:EDX.Page1GB.
    static func identityPageTables() -> [UInt8] {
        let base = X86Layout.pageTables
        let present: UInt64 = 0x1, writable: UInt64 = 0x2, pageSize: UInt64 = 0x80
        var w = ByteWriter()
        w.append((base + 0x1000) | present | writable)           // PML4[0] → PDPT
        w.append([UInt8](repeating: 0, count: 4096 - 8))
        for i: UInt64 in 0..<4 {                                  // PDPT[0..3] → PD0..PD3
            w.append((base + 0x2000 + i * 0x1000) | present | writable)
        }
        w.append([UInt8](repeating: 0, count: 4096 - 32))
        for i: UInt64 in 0..<(4 * 512) {                          // PDs: 2048 × 2 MiB
            w.append((i << 21) | present | writable | pageSize)
        }
        return w.bytes
    }
}
