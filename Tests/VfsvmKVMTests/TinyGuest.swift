import CVfsvmLinux
import Glibc
import Synchronization
import VfsvmKVM
import VfsvmMemory
import VfsvmSys

/// A VM with 64 KiB of RAM at 0 and one vCPU in real mode at 0x1000,
/// running a few hand-assembled instructions. Guest-physical 0x20000 and
/// up is unbacked, so accesses there are MMIO exits.
struct TinyGuest {
    static let codeAddress: UInt64 = 0x1000
    static let mmioBase: UInt64 = 0x20000

    let kvm: KVM
    let vm: VirtualMachine
    let memory: GuestMemory
    let vcpu: VCPU

    init(code: [UInt8], irqchip: Bool = false) throws {
        kvm = try KVM()
        vm = try kvm.createVM()
        try vm.setTSSAddress(0xfffb_d000)
        try vm.setIdentityMapAddress(0xfffb_c000)
        if irqchip { try vm.createIRQChip() }
        memory = try GuestMemory.anonymous(size: 0x10000)
        try vm.map(memory)
        try memory.writeBytes(code, at: GuestAddress(Self.codeAddress))
        vcpu = try vm.createVCPU(id: 0)
        var sregs = try vcpu.specialRegisters()
        sregs.cs.base = 0
        sregs.cs.selector = 0
        try vcpu.setSpecialRegisters(sregs)
        var regs = kvm_regs()
        regs.rip = Self.codeAddress
        regs.rflags = 2  // bit 1 is reserved and always set
        try vcpu.setRegisters(regs)
    }

    /// Runs until an exit `stop` accepts, with a watchdog that kicks the
    /// vCPU after `seconds` (so a broken test fails instead of hanging);
    /// returns every exit seen, the last one included.
    func run(seconds: Double = 20, until stop: (VCPUExit) -> Bool) throws -> [VCPUExit] {
        let done = Atomic<Bool>(false)
        let vcpu = self.vcpu
        vcpu.enterThread()
        defer { vcpu.leaveThread() }
        let watchdog = try OSThread(name: "kvm-watchdog") {
            var waited = 0.0
            while !done.load(ordering: .acquiring) && waited < seconds {
                usleep(10_000)
                waited += 0.01
            }
            if !done.load(ordering: .acquiring) { vcpu.kick() }
        }
        defer {
            done.store(true, ordering: .releasing)
            watchdog.join()
        }
        var exits: [VCPUExit] = []
        while true {
            let exit = try vcpu.run()
            exits.append(exit)
            if stop(exit) || exit == .interrupted || exits.count > 1000 { return exits }
        }
    }
}
