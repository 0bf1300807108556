/// The vCPU state Linux (and any other boot-protocol guest) expects at its
/// entry point that the boot protocol itself does not set: MSRs, the FPU
/// and the local APIC's LINT pins.
extension VCPU {
    // MSR numbers (arch/x86/include/asm/msr-index.h).
    public static let msrSysenterCS: UInt32 = 0x174  // MSR_IA32_SYSENTER_CS
    public static let msrSysenterESP: UInt32 = 0x175  // MSR_IA32_SYSENTER_ESP
    public static let msrSysenterEIP: UInt32 = 0x176  // MSR_IA32_SYSENTER_EIP
    public static let msrSTAR: UInt32 = 0xc000_0081  // MSR_STAR
    public static let msrLSTAR: UInt32 = 0xc000_0082  // MSR_LSTAR
    public static let msrCSTAR: UInt32 = 0xc000_0083  // MSR_CSTAR
    public static let msrSyscallMask: UInt32 = 0xc000_0084  // MSR_SYSCALL_MASK (SFMASK)
    public static let msrKernelGSBase: UInt32 = 0xc000_0102  // MSR_KERNEL_GS_BASE
    public static let msrTSC: UInt32 = 0x10  // MSR_IA32_TSC
    public static let msrMiscEnable: UInt32 = 0x1a0  // MSR_IA32_MISC_ENABLE
    public static let msrMTRRDefType: UInt32 = 0x2ff  // MSR_MTRRdefType
    public static let msrAMDHWCR: UInt32 = 0xc001_0015  // MSR_K7_HWCR
    /// HWCR TscFreqSel (bit 24): the TSC counts at the P0 frequency, as
    /// AMD firmware sets it; without it Linux logs a firmware bug.
    public static let hwcrTSCFrequencySelect: UInt64 = 1 << 24

    /// MISC_ENABLE bit 0, fast string operations (MSR_IA32_MISC_ENABLE_FAST_STRING):
    /// Linux warns and slows `rep movs` without it.
    public static let miscEnableFastStrings: UInt64 = 1
    /// MTRRs enabled (bit 11) with write-back (6) as the default type, as
    /// firmware leaves them: without it Linux maps all RAM uncached.
    public static let mtrrDefaultWriteBack: UInt64 = 1 << 11 | 6

    /// The MSRs set before the first instruction: the SYSENTER and SYSCALL
    /// MSRs and KERNEL_GS_BASE zero, the TSC at zero, fast strings on,
    /// MTRRs enabled with write-back default.
    public static var bootMSRs: [(index: UInt32, value: UInt64)] {
        [
            (msrSysenterCS, 0), (msrSysenterESP, 0), (msrSysenterEIP, 0),
            (msrSTAR, 0), (msrLSTAR, 0), (msrCSTAR, 0), (msrSyscallMask, 0), (msrKernelGSBase, 0),
            (msrTSC, 0), (msrMiscEnable, miscEnableFastStrings), (msrMTRRDefType, mtrrDefaultWriteBack),
        ]
    }

    /// LINT0 in ExtINT mode (the PIC's output reaches the BSP as on a PC)
    /// and LINT1 as NMI, the wiring the MP table and MADT describe.
    public func configureLINTs() throws(KVMError) {
        var apic = try localAPIC()
        for (register, mode) in [(LocalAPICState.lvtLINT0, LocalAPICState.deliveryExtINT), (LocalAPICState.lvtLINT1, LocalAPICState.deliveryNMI)] {
            // Keep the mask and trigger bits; replace the delivery mode (bits 8-10).
            apic[register: register] = apic[register: register] & ~(0b111 << 8) | mode
        }
        try setLocalAPIC(apic)
    }

    /// CPUID for vCPU `id` of `count`, boot MSRs, reset FPU and the LINT
    /// pins: everything but the registers of the entry point.
    public func configureForBoot(cpuid supported: CPUIDTable, count: Int) throws(KVMError) {
        try setCPUID(supported.forVCPU(index: id, count: count))
        try setMSRs(Self.bootMSRs)
        if supported.isAMD {
            // Best effort: KVM before 5.x refuses bits it does not model.
            try? setMSRs([(Self.msrAMDHWCR, Self.hwcrTSCFrequencySelect)])
        }
        try resetFPU()
        try configureLINTs()
    }
}
