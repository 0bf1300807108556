import CVfsvmLinux
import VfsvmKVM

/// The boot vCPU's registers at the loader's entry point (`BootEntry`):
/// flat 4 GiB segments from the loader's GDT, and for the 64-bit Linux
/// entry long mode with the loader's identity page tables.
enum EntryState {
    static let codeSelector: UInt16 = 0x10  // __BOOT_CS
    static let dataSelector: UInt16 = 0x18  // __BOOT_DS
    static let tssSelector: UInt16 = 0x20

    static let cr0ProtectionEnable: UInt64 = 1 << 0  // X86_CR0_PE
    static let cr0ExtensionType: UInt64 = 1 << 4  // X86_CR0_ET
    static let cr0Paging: UInt64 = 1 << 31  // X86_CR0_PG
    static let cr4PAE: UInt64 = 1 << 5  // X86_CR4_PAE
    static let eferLongModeEnable: UInt64 = 1 << 8  // EFER_LME
    static let eferLongModeActive: UInt64 = 1 << 10  // EFER_LMA

    static func segment(selector: UInt16, type: UInt8, long: Bool) -> kvm_segment {
        var s = kvm_segment()
        s.base = 0
        s.limit = 0xffff_ffff
        s.selector = selector
        s.type = type
        s.present = 1
        s.dpl = 0
        s.db = long ? 0 : 1
        s.s = 1
        s.l = long ? 1 : 0
        s.g = 1
        return s
    }

    static func apply(_ entry: BootEntry, to vcpu: VCPU) throws(KVMError) {
        var sregs = try vcpu.specialRegisters()
        let long = entry.mode == .linux64
        sregs.cs = segment(selector: codeSelector, type: 0xb, long: long)  // execute/read, accessed
        let data = segment(selector: dataSelector, type: 0x3, long: false)  // read/write, accessed
        sregs.ds = data
        sregs.es = data
        sregs.fs = data
        sregs.gs = data
        sregs.ss = data
        var tr = kvm_segment()
        tr.selector = tssSelector
        tr.limit = 0x67
        tr.type = 0xb  // 32-bit busy TSS
        tr.present = 1
        sregs.tr = tr
        sregs.gdt.base = entry.gdtBase
        sregs.gdt.limit = entry.gdtLimit
        sregs.idt.base = 0
        sregs.idt.limit = 0
        sregs.cr0 = cr0ProtectionEnable | cr0ExtensionType
        sregs.cr4 = 0
        sregs.efer = 0
        if long, let root = entry.pageTableRoot {
            sregs.cr3 = root
            sregs.cr4 = cr4PAE
            sregs.cr0 |= cr0Paging
            sregs.efer = eferLongModeEnable | eferLongModeActive
        }
        try vcpu.setSpecialRegisters(sregs)
        var regs = kvm_regs()
        regs.rip = entry.rip
        regs.rsp = entry.rsp
        regs.rsi = entry.rsi
        regs.rbx = entry.rbx
        regs.rflags = 2  // reserved bit 1; interrupts off
        try vcpu.setRegisters(regs)
    }
}
