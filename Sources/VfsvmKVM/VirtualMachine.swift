import CVfsvmLinux
import Glibc
import Synchronization
import VfsvmMemory
import VfsvmSys

/// A KVM virtual machine (the fd KVM_CREATE_VM returned): memory slots,
/// the in-kernel interrupt controllers and PIT, GSI routing, irqfds and
/// ioeventfds. vCPUs are created from it.
///
/// Guest memory handed to `map(_:)` is kept alive for as long as the VM,
/// since KVM holds the host addresses of its mappings.
public final class VirtualMachine: Sendable {
    public let kvm: KVM
    let fd: FileDescriptor
    private let state = Mutex(Registered())

    /// What KVM holds references to: memory it maps, eventfds it signals
    /// or waits on. Kept alive as long as the VM.
    private struct Registered {
        var memory: [GuestMemory] = []
        var nextSlot: UInt32 = 0
        var eventFDs: [EventFD] = []
        var windows: [SharedMemoryWindow] = []
    }

    init(kvm: KVM, fd: FileDescriptor) {
        self.kvm = kvm
        self.fd = fd
    }

    /// KVM_SET_TSS_ADDR: three pages of guest-physical address space KVM
    /// uses for the real-mode TSS on Intel (must not overlap RAM the guest
    /// uses or any MMIO).
    public func setTSSAddress(_ address: UInt64) throws(KVMError) {
        try KVM.ioctl(fd, VFSVM_KVM_SET_TSS_ADDR, "KVM_SET_TSS_ADDR", value: UInt(address))
    }

    /// KVM_SET_IDENTITY_MAP_ADDR: one page for the EPT identity map used
    /// while the guest runs in real mode on Intel.
    public func setIdentityMapAddress(_ address: UInt64) throws(KVMError) {
        var a = address
        try KVM.ioctl(fd, VFSVM_KVM_SET_IDENTITY_MAP_ADDR, "KVM_SET_IDENTITY_MAP_ADDR", struct: &a)
    }

    /// KVM_CREATE_IRQCHIP: the in-kernel PIC pair, IOAPIC (24 pins) and a
    /// local APIC per vCPU, with KVM's default routing (GSI n → PIC pin n
    /// for n < 16 and IOAPIC pin n for n < 24). Call before creating vCPUs.
    public func createIRQChip() throws(KVMError) {
        try KVM.ioctl(fd, VFSVM_KVM_CREATE_IRQCHIP, "KVM_CREATE_IRQCHIP", value: 0)
    }

    /// KVM_CREATE_PIT2: the in-kernel i8254 on ports 0x40–0x43 (and the
    /// speaker gate on 0x61), its output on GSI 0.
    public func createPIT2() throws(KVMError) {
        var config = kvm_pit_config()
        try KVM.ioctl(fd, VFSVM_KVM_CREATE_PIT2, "KVM_CREATE_PIT2", struct: &config)
    }

    // MARK: - Memory

    /// One KVM memory slot per region of `memory` (KVM_SET_USER_MEMORY_REGION),
    /// at the region's guest-physical address, backed by its mapping.
    public func map(_ memory: GuestMemory) throws(KVMError) {
        for region in memory.regions {
            let slot = state.withLock { s in defer { s.nextSlot += 1 }; return s.nextSlot }
            var r = kvm_userspace_memory_region(
                slot: slot, flags: 0, guest_phys_addr: region.start.rawValue, memory_size: region.size,
                userspace_addr: UInt64(UInt(bitPattern: region.mapping.base)))
            try KVM.ioctl(fd, VFSVM_KVM_SET_USER_MEMORY_REGION, "KVM_SET_USER_MEMORY_REGION(slot \(slot) at \(region.start))", struct: &r)
        }
        state.withLock { $0.memory.append(memory) }
    }

    /// A slot number of its own for memory that comes and goes (a
    /// shared-memory BAR the guest moves).
    public func allocateSlot() -> UInt32 {
        state.withLock { s in defer { s.nextSlot += 1 }; return s.nextSlot }
    }

    /// Puts `window` in memory slot `slot` at `guestAddress`
    /// (KVM_SET_USER_MEMORY_REGION); the VM keeps the window alive for as
    /// long as it exists, since KVM may touch its pages until the VM is
    /// closed.
    public func mapWindow(_ window: SharedMemoryWindow, slot: UInt32, at guestAddress: UInt64) throws(KVMError) {
        var r = kvm_userspace_memory_region(
            slot: slot, flags: 0, guest_phys_addr: guestAddress, memory_size: window.size, userspace_addr: window.hostAddress)
        try KVM.ioctl(fd, VFSVM_KVM_SET_USER_MEMORY_REGION,
                      "KVM_SET_USER_MEMORY_REGION(slot \(slot) at 0x\(String(guestAddress, radix: 16)), \(window.size) bytes)", struct: &r)
        state.withLock { s in if !s.windows.contains(where: { $0 === window }) { s.windows.append(window) } }
    }

    /// Deletes memory slot `slot` (a zero-sized region).
    public func unmapSlot(_ slot: UInt32) throws(KVMError) {
        var r = kvm_userspace_memory_region(slot: slot, flags: 0, guest_phys_addr: 0, memory_size: 0, userspace_addr: 0)
        try KVM.ioctl(fd, VFSVM_KVM_SET_USER_MEMORY_REGION, "KVM_SET_USER_MEMORY_REGION(delete slot \(slot))", struct: &r)
    }

    // MARK: - Interrupts

    /// KVM_IRQ_LINE: drives GSI `gsi` high or low (for edge-triggered lines
    /// a high-then-low pulse).
    public func setIRQLine(gsi: UInt32, high: Bool) throws(KVMError) {
        var level = kvm_irq_level()
        level.irq = gsi
        level.level = high ? 1 : 0
        try KVM.ioctl(fd, VFSVM_KVM_IRQ_LINE, "KVM_IRQ_LINE(\(gsi))", struct: &level)
    }

    /// KVM_IRQFD: a write to `eventfd` injects GSI `gsi` inside the kernel,
    /// without a userspace exit. With `resample`, the line is level
    /// triggered: KVM keeps it asserted until the guest EOIs it, then
    /// signals `resample` so the device can re-assert if still pending
    /// (KVM_IRQFD_FLAG_RESAMPLE; needs KVM_CAP_IRQFD_RESAMPLE).
    public func registerIRQFD(_ eventfd: EventFD, gsi: UInt32, resample: EventFD? = nil) throws(KVMError) {
        var request = kvm_irqfd()
        request.fd = UInt32(bitPattern: eventfd.fd.rawValue)
        request.gsi = gsi
        if let resample {
            try kvm.require(.irqfdResample)
            request.flags = VFSVM_KVM_IRQFD_FLAG_RESAMPLE
            request.resamplefd = UInt32(bitPattern: resample.fd.rawValue)
        }
        try KVM.ioctl(fd, VFSVM_KVM_IRQFD, "KVM_IRQFD(gsi \(gsi))", struct: &request)
        state.withLock { s in
            s.eventFDs.append(eventfd)
            if let resample { s.eventFDs.append(resample) }
        }
    }

    /// Undoes `registerIRQFD` (KVM_IRQFD_FLAG_DEASSIGN).
    public func unregisterIRQFD(_ eventfd: EventFD, gsi: UInt32) throws(KVMError) {
        var request = kvm_irqfd()
        request.fd = UInt32(bitPattern: eventfd.fd.rawValue)
        request.gsi = gsi
        request.flags = VFSVM_KVM_IRQFD_FLAG_DEASSIGN
        try KVM.ioctl(fd, VFSVM_KVM_IRQFD, "KVM_IRQFD(deassign gsi \(gsi))", struct: &request)
    }

    /// KVM_SET_GSI_ROUTING: replaces the whole routing table. Pass the
    /// irqchip routes too (`GSIRoute.defaultIRQChipRoutes`), or the legacy
    /// lines stop working.
    public func setGSIRouting(_ routes: [GSIRoute]) throws(KVMError) {
        var header = kvm_irq_routing()
        header.nr = UInt32(routes.count)
        _ = try withFlexibleArray(header: header, elements: routes.map(\.entry), count: { _ in 0 }) { raw throws(KVMError) in
            try KVM.ioctl(fd, VFSVM_KVM_SET_GSI_ROUTING, "KVM_SET_GSI_ROUTING(\(routes.count) routes)", raw)
        }
    }

    /// KVM_SIGNAL_MSI: delivers one message-signalled interrupt directly.
    /// Returns false when the guest has blocked it (KVM returns 0).
    @discardableResult
    public func signalMSI(address: UInt64, data: UInt32) throws(KVMError) -> Bool {
        var msi = kvm_msi()
        msi.address_lo = UInt32(truncatingIfNeeded: address)
        msi.address_hi = UInt32(truncatingIfNeeded: address >> 32)
        msi.data = data
        return try KVM.ioctl(fd, VFSVM_KVM_SIGNAL_MSI, "KVM_SIGNAL_MSI", struct: &msi) > 0
    }

    // MARK: - Notifications

    /// KVM_IOEVENTFD: a guest write of `length` bytes (1, 2, 4 or 8) to
    /// `address` (an MMIO address, or an I/O port when `pio`) signals
    /// `eventfd` inside the kernel and completes without an exit. With
    /// `dataMatch`, only writes of that value do
    /// (KVM_IOEVENTFD_FLAG_DATAMATCH); others exit to userspace as usual.
    public func registerIOEventFD(_ eventfd: EventFD, address: UInt64, length: Int, dataMatch: UInt64? = nil, pio: Bool = false) throws(KVMError) {
        guard [0, 1, 2, 4, 8].contains(length) else { throw .invalidArgument("ioeventfd length must be 0, 1, 2, 4 or 8, got \(length)") }
        if length == 0 { try kvm.require(.ioeventfdAnyLength) }
        var request = kvm_ioeventfd()
        request.addr = address
        request.len = UInt32(length)
        request.fd = eventfd.fd.rawValue
        if let dataMatch {
            request.datamatch = dataMatch
            request.flags |= VFSVM_KVM_IOEVENTFD_FLAG_DATAMATCH
        }
        if pio { request.flags |= VFSVM_KVM_IOEVENTFD_FLAG_PIO }
        let name = "KVM_IOEVENTFD(\(pio ? "port" : "mmio") 0x\(String(address, radix: 16)))"
        try KVM.ioctl(fd, VFSVM_KVM_IOEVENTFD, name, struct: &request)
        state.withLock { $0.eventFDs.append(eventfd) }
    }

    /// Undoes `registerIOEventFD` (KVM_IOEVENTFD_FLAG_DEASSIGN): the same
    /// eventfd, address, length, data match and space must be given.
    public func unregisterIOEventFD(_ eventfd: EventFD, address: UInt64, length: Int, dataMatch: UInt64? = nil, pio: Bool = false) throws(KVMError) {
        var request = kvm_ioeventfd()
        request.addr = address
        request.len = UInt32(length)
        request.fd = eventfd.fd.rawValue
        request.flags = VFSVM_KVM_IOEVENTFD_FLAG_DEASSIGN
        if let dataMatch {
            request.datamatch = dataMatch
            request.flags |= VFSVM_KVM_IOEVENTFD_FLAG_DATAMATCH
        }
        if pio { request.flags |= VFSVM_KVM_IOEVENTFD_FLAG_PIO }
        try KVM.ioctl(fd, VFSVM_KVM_IOEVENTFD, "KVM_IOEVENTFD(deassign 0x\(String(address, radix: 16)))", struct: &request)
    }

    // MARK: - vCPUs

    /// KVM_CREATE_VCPU with APIC ID `id`, and its `kvm_run` mapping.
    public func createVCPU(id: Int) throws(KVMError) -> VCPU {
        let raw = try KVM.ioctl(fd, VFSVM_KVM_CREATE_VCPU, "KVM_CREATE_VCPU(\(id))", value: UInt(id))
        return try VCPU(vm: self, id: id, fd: FileDescriptor(owning: raw))
    }
}

/// One entry of the GSI routing table (struct kvm_irq_routing_entry).
public enum GSIRoute: Hashable, Sendable {
    /// KVM_IRQ_ROUTING_IRQCHIP: GSI → a pin of the PIC master (chip 0),
    /// PIC slave (1) or IOAPIC (2).
    case irqchip(gsi: UInt32, chip: UInt32, pin: UInt32)
    /// KVM_IRQ_ROUTING_MSI: GSI → an MSI message (an MSI-X table entry's
    /// address and data).
    case msi(gsi: UInt32, address: UInt64, data: UInt32)

    public static let picMaster: UInt32 = 0  // KVM_IRQCHIP_PIC_MASTER
    public static let picSlave: UInt32 = 1  // KVM_IRQCHIP_PIC_SLAVE
    public static let ioapic: UInt32 = 2  // KVM_IRQCHIP_IOAPIC
    public static let ioapicPins: UInt32 = 24

    /// The table KVM_CREATE_IRQCHIP installs: GSI 0–15 to the PIC pair and
    /// the IOAPIC, 16–23 to the IOAPIC alone.
    public static var defaultIRQChipRoutes: [GSIRoute] {
        var routes: [GSIRoute] = []
        for gsi in UInt32(0)..<ioapicPins {
            if gsi < 16 { routes.append(.irqchip(gsi: gsi, chip: gsi < 8 ? picMaster : picSlave, pin: gsi % 8)) }
            routes.append(.irqchip(gsi: gsi, chip: ioapic, pin: gsi))
        }
        return routes
    }

    var entry: kvm_irq_routing_entry {
        var e = kvm_irq_routing_entry()
        switch self {
        case let .irqchip(gsi, chip, pin):
            e.gsi = gsi
            e.type = UInt32(KVM_IRQ_ROUTING_IRQCHIP)
            e.u.irqchip.irqchip = chip
            e.u.irqchip.pin = pin
        case let .msi(gsi, address, data):
            e.gsi = gsi
            e.type = UInt32(KVM_IRQ_ROUTING_MSI)
            e.u.msi.address_lo = UInt32(truncatingIfNeeded: address)
            e.u.msi.address_hi = UInt32(truncatingIfNeeded: address >> 32)
            e.u.msi.data = data
        }
        return e
    }
}
