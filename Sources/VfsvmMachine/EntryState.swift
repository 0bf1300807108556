import CVfsvmLinux
import VfsvmBoot
import VfsvmKVM

/// The boot vCPU's registers at the loader's entry point: VfsvmBoot's
/// `BootEntry` (segments, control registers, GDT) as KVM's `kvm_sregs` and
/// `kvm_regs`. The control registers are set whole, not OR'd into KVM's
/// reset values (whose CD/NW would leave caching off).
enum EntryState {
    static let eferLongModeActive: UInt64 = 1 << 10  // EFER_LMA
    static let cr0Paging: UInt64 = 1 << 31  // X86_CR0_PG

    static func segment(_ s: SegmentRegister) -> kvm_segment {
        var k = kvm_segment()
        k.base = s.base
        k.limit = s.limit
        k.selector = s.selector
        k.type = s.type
        k.present = s.present ? 1 : 0
        k.dpl = s.dpl
        k.db = s.db ? 1 : 0
        k.s = s.s ? 1 : 0
        k.l = s.l ? 1 : 0
        k.g = s.g ? 1 : 0
        k.avl = s.avl ? 1 : 0
        k.unusable = s.unusable ? 1 : 0
        return k
    }

    static func apply(_ entry: BootEntry, to vcpu: VCPU) throws(KVMError) {
        var sregs = try vcpu.specialRegisters()
        sregs.cs = segment(entry.cs)
        sregs.ds = segment(entry.ds)
        sregs.es = segment(entry.es)
        sregs.fs = segment(entry.fs)
        sregs.gs = segment(entry.gs)
        sregs.ss = segment(entry.ss)
        sregs.tr = segment(entry.tr)
        sregs.ldt = segment(entry.ldt)
        sregs.gdt.base = entry.gdtBase
        sregs.gdt.limit = entry.gdtLimit
        sregs.idt.base = entry.idtBase
        sregs.idt.limit = entry.idtLimit
        sregs.cr0 = entry.cr0
        sregs.cr3 = entry.cr3
        sregs.cr4 = entry.cr4
        sregs.efer = entry.efer
        try vcpu.setSpecialRegisters(sregs)
        var regs = kvm_regs()
        regs.rip = entry.rip
        regs.rsp = entry.rsp
        regs.rsi = entry.rsi
        regs.rbx = entry.rbx
        regs.rflags = entry.rflags
        try vcpu.setRegisters(regs)
    }
}
