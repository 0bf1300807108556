import CVfsvmLinux

/// A CPUID table (`kvm_cpuid_entry2` per leaf/subleaf), as KVM reports it
/// supported and as a vCPU is given it.
public struct CPUIDTable: Sendable {
    public var entries: [kvm_cpuid_entry2]

    public init(entries: [kvm_cpuid_entry2]) { self.entries = entries }

    /// KVM_CPUID_FLAG_SIGNIFCANT_INDEX: the leaf has subleaves (ECX input).
    static let significantIndex: UInt32 = 1

    /// The entry for `function`/`index`, if present.
    public func entry(_ function: UInt32, _ index: UInt32 = 0) -> kvm_cpuid_entry2? {
        entries.first { $0.function == function && ($0.flags & Self.significantIndex == 0 || $0.index == index) }
    }

    /// Leaf 0's vendor is "AuthenticAMD" (EBX, EDX, ECX = "Auth", "enti", "cAMD").
    public var isAMD: Bool {
        guard let e = entry(0) else { return false }
        return e.ebx == 0x6874_7541 && e.edx == 0x6974_6e65 && e.ecx == 0x444d_4163
    }

    mutating func update(_ function: UInt32, _ body: (inout kvm_cpuid_entry2) -> Void) {
        for i in entries.indices where entries[i].function == function { body(&entries[i]) }
    }

    /// What vCPU `index` of `count` sees, built from the supported table:
    ///
    /// - leaf 1: initial APIC ID (EBX[31:24]) = `index`, logical processor
    ///   count (EBX[23:16]) and HTT (EDX[28]) for `count`, CLFLUSH size 64
    ///   bytes (EBX[15:8] = 8), the hypervisor bit (ECX[31]).
    /// - leaf 4: cores per package (EAX[31:26]) = `count` - 1, one thread
    ///   per core sharing each cache.
    /// - leaves 0xB and 0x1F (x2APIC topology): an SMT level of one thread
    ///   and a core level of `count`; EDX = x2APIC ID = `index`.
    /// - leaf 0xA (architectural performance monitoring): zero, no vPMU is offered.
    /// - leaf 6 (thermal and power management): zero, the board has none.
    /// - 0x40000000: the KVM signature "KVMKVMKVM\0\0\0" and the highest
    ///   hypervisor leaf; 0x40000001 keeps KVM's paravirtual feature bits.
    public func forVCPU(index: Int, count: Int) -> CPUIDTable {
        var t = self
        let apicID = UInt32(index)
        let n = UInt32(max(count, 1))
        // Bits of APIC ID space the core level spans (x2APIC shift).
        let coreShift = n <= 1 ? 0 : UInt32(32 - (n - 1).leadingZeroBitCount)
        t.update(1) { e in
            e.ebx = (e.ebx & 0x0000_00ff) | apicID << 24 | min(n, 255) << 16 | 8 << 8
            e.ecx |= 1 << 31
            if n > 1 { e.edx |= 1 << 28 } else { e.edx &= ~(1 << 28) }
        }
        t.update(4) { e in
            e.eax = (e.eax & 0x03ff_ffff) | (n - 1) << 26
            e.eax &= ~(0xfff << 14)  // one thread shares each cache
        }
        for leaf: UInt32 in [0xb, 0x1f] where t.entries.contains(where: { $0.function == leaf }) {
            t.entries.removeAll { $0.function == leaf }
            // Subleaf 0: SMT (type 1), one thread; 1: core (type 2), n cores;
            // 2: invalid (type 0) ends the enumeration.
            let levels: [(shift: UInt32, logical: UInt32, type: UInt32)] = [(0, 1, 1), (coreShift, n, 2), (0, 0, 0)]
            for (sub, level) in levels.enumerated() {
                var e = kvm_cpuid_entry2()
                e.function = leaf
                e.index = UInt32(sub)
                e.flags = Self.significantIndex
                e.eax = level.shift
                e.ebx = level.logical
                e.ecx = UInt32(sub) | level.type << 8
                e.edx = apicID
                t.entries.append(e)
            }
        }
        t.update(0xa) { e in e.eax = 0; e.ebx = 0; e.ecx = 0; e.edx = 0 }
        t.update(6) { e in e.eax = 0; e.ebx = 0; e.ecx = 0; e.edx = 0 }
        if t.entry(0x4000_0000) == nil {
            var e = kvm_cpuid_entry2()
            e.function = 0x4000_0000
            t.entries.append(e)
        }
        t.update(0x4000_0000) { e in
            e.eax = max(e.eax, 0x4000_0001)
            e.ebx = 0x4b4d_564b  // "KVMK"
            e.ecx = 0x564b_4d56  // "VMKV"
            e.edx = 0x0000_004d  // "M\0\0\0"
        }
        return t
    }
}
