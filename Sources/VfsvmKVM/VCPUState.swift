import CVfsvmLinux
import VfsvmSys

/// Register, MSR, CPUID and local APIC state of a vCPU (KVM_GET/SET_*).
/// `kvm_regs`, `kvm_sregs` and `kvm_fpu` are the UAPI structs as Swift
/// imports them.
extension VCPU {
    public func registers() throws(KVMError) -> kvm_regs {
        var regs = kvm_regs()
        try KVM.ioctl(fd, VFSVM_KVM_GET_REGS, "KVM_GET_REGS", struct: &regs)
        return regs
    }

    public func setRegisters(_ regs: kvm_regs) throws(KVMError) {
        var regs = regs
        try KVM.ioctl(fd, VFSVM_KVM_SET_REGS, "KVM_SET_REGS", struct: &regs)
    }

    public func specialRegisters() throws(KVMError) -> kvm_sregs {
        var sregs = kvm_sregs()
        try KVM.ioctl(fd, VFSVM_KVM_GET_SREGS, "KVM_GET_SREGS", struct: &sregs)
        return sregs
    }

    public func setSpecialRegisters(_ sregs: kvm_sregs) throws(KVMError) {
        var sregs = sregs
        try KVM.ioctl(fd, VFSVM_KVM_SET_SREGS, "KVM_SET_SREGS", struct: &sregs)
    }

    public func fpu() throws(KVMError) -> kvm_fpu {
        var f = kvm_fpu()
        try KVM.ioctl(fd, VFSVM_KVM_GET_FPU, "KVM_GET_FPU", struct: &f)
        return f
    }

    /// The x87/SSE state a CPU has after FNINIT and reset: control word
    /// 0x37F (all exceptions masked), MXCSR 0x1F80.
    public func resetFPU() throws(KVMError) {
        var f = kvm_fpu()
        f.fcw = 0x37f
        f.mxcsr = 0x1f80
        try KVM.ioctl(fd, VFSVM_KVM_SET_FPU, "KVM_SET_FPU", struct: &f)
    }

    /// KVM_SET_CPUID2: what CPUID returns inside the guest.
    public func setCPUID(_ table: CPUIDTable) throws(KVMError) {
        _ = try withFlexibleArray(header: KVM.cpuidHeader(table.entries.count), elements: table.entries, count: { _ in 0 }) { raw throws(KVMError) in
            try KVM.ioctl(fd, VFSVM_KVM_SET_CPUID2, "KVM_SET_CPUID2(\(table.entries.count) leaves)", raw)
        }
    }

    /// KVM_SET_MSRS: all of `msrs` or an error naming how many KVM took
    /// (it stops at the first MSR it refuses).
    public func setMSRs(_ msrs: [(index: UInt32, value: UInt64)]) throws(KVMError) {
        var header = kvm_msrs()
        header.nmsrs = UInt32(msrs.count)
        let entries = msrs.map { kvm_msr_entry(index: $0.index, reserved: 0, data: $0.value) }
        var accepted: Int32 = 0
        _ = try withFlexibleArray(header: header, elements: entries, count: { _ in 0 }) { raw throws(KVMError) in
            accepted = try KVM.ioctl(fd, VFSVM_KVM_SET_MSRS, "KVM_SET_MSRS", raw)
        }
        guard Int(accepted) == msrs.count else {
            let refused = Int(accepted) < msrs.count ? " (first refused: MSR 0x\(String(msrs[Int(accepted)].index, radix: 16)))" : ""
            throw .partial(what: "MSRs\(refused)", accepted: Int(accepted), given: msrs.count)
        }
    }

    /// KVM_GET_MSRS for `indices`; KVM stops at the first it cannot read.
    public func msrs(_ indices: [UInt32]) throws(KVMError) -> [UInt32: UInt64] {
        var header = kvm_msrs()
        header.nmsrs = UInt32(indices.count)
        var accepted: Int32 = 0
        let out = try withFlexibleArray(
            header: header, elements: indices.map { kvm_msr_entry(index: $0, reserved: 0, data: 0) },
            count: { _ in UInt32(indices.count) }
        ) { raw throws(KVMError) in
            accepted = try KVM.ioctl(fd, VFSVM_KVM_GET_MSRS, "KVM_GET_MSRS", raw)
        }
        return Dictionary(out.prefix(Int(accepted)).map { ($0.index, $0.data) }, uniquingKeysWith: { a, _ in a })
    }

    /// KVM_GET_LAPIC: the local APIC's 1 KiB register page.
    public func localAPIC() throws(KVMError) -> LocalAPICState {
        var state = kvm_lapic_state()
        try KVM.ioctl(fd, VFSVM_KVM_GET_LAPIC, "KVM_GET_LAPIC", struct: &state)
        return LocalAPICState(state)
    }

    public func setLocalAPIC(_ apic: LocalAPICState) throws(KVMError) {
        var state = apic.raw
        try KVM.ioctl(fd, VFSVM_KVM_SET_LAPIC, "KVM_SET_LAPIC", struct: &state)
    }

    /// KVM_TRANSLATE: the guest-physical address of `linear` through the
    /// vCPU's current page tables (the identity when paging is off), or
    /// nil when it is not mapped.
    public func translate(_ linear: UInt64) throws(KVMError) -> UInt64? {
        var t = kvm_translation()
        t.linear_address = linear
        try KVM.ioctl(fd, VFSVM_KVM_TRANSLATE, "KVM_TRANSLATE", struct: &t)
        return t.valid != 0 ? t.physical_address : nil
    }
}

/// The local APIC register page (struct kvm_lapic_state: 1024 bytes, each
/// 32-bit register at its MMIO offset from 0xFEE00000).
public struct LocalAPICState: Sendable {
    var raw: kvm_lapic_state

    init(_ raw: kvm_lapic_state) { self.raw = raw }

    public static let lvtLINT0: Int = 0x350  // APIC_LVT0
    public static let lvtLINT1: Int = 0x360  // APIC_LVT1
    /// LVT delivery modes (bits 8–10).
    public static let deliveryExtINT: UInt32 = 0b111 << 8  // APIC_MODE_EXTINT
    public static let deliveryNMI: UInt32 = 0b100 << 8  // APIC_MODE_NMI

    public subscript(register offset: Int) -> UInt32 {
        get {
            precondition(offset >= 0 && offset + 4 <= 1024 && offset & 3 == 0, "APIC register offset \(offset)")
            return withUnsafeBytes(of: raw.regs) { $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self) }
        }
        set {
            precondition(offset >= 0 && offset + 4 <= 1024 && offset & 3 == 0, "APIC register offset \(offset)")
            withUnsafeMutableBytes(of: &raw.regs) { $0.storeBytes(of: newValue, toByteOffset: offset, as: UInt32.self) }
        }
    }
}
