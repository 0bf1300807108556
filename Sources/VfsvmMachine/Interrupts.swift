import VfsvmKVM
import VfsvmSys
import VfsvmTransport

/// An edge-triggered line into the in-kernel IOAPIC: an irqfd on one GSI.
/// `trigger()` is one eventfd write; KVM injects the edge without an exit.
final class GSILine: InterruptLine {
    let gsi: UInt32
    private let eventfd: EventFD

    init(vm: VirtualMachine, gsi: UInt32) throws {
        self.gsi = gsi
        eventfd = try EventFD(nonBlocking: true)
        try vm.registerIRQFD(eventfd, gsi: gsi)
    }

    func trigger() throws { try eventfd.signal() }
}

/// Hands out IOAPIC pins for devices: 5, 6, 7, 10, 11, then 16–23
/// (0–2 are the PIT and cascade, 3/4 the serial ports, 8 the RTC, 9 the
/// ACPI SCI, 12–15 the PS/2 mouse, FPU and IDE channels a guest may still
/// assume).
struct GSIAllocator {
    private var free: [UInt32] = [5, 6, 7, 10, 11] + Array(16...23)

    mutating func next() throws(MachineError) -> UInt32 {
        guard !free.isEmpty else { throw .outOfInterrupts }
        return free.removeFirst()
    }
}

extension Board {
    /// The GSI routing of a PC (as QEMU's `kvm_pc_setup_irq_routing`):
    /// ISA IRQs 0–15 to the PIC pair except the cascade (2), and every
    /// IOAPIC pin to itself except that GSI 0, the PIT, goes to pin 2, as
    /// the MADT's interrupt source override and the MP table say. KVM's
    /// own default sends GSI 0 to pin 0, where Linux does not look.
    /// MSI routes are appended to this table whenever it is set.
    static var irqchipRoutes: [GSIRoute] {
        var routes: [GSIRoute] = []
        for irq in UInt32(0)..<16 where irq != 2 {
            routes.append(.irqchip(gsi: irq, chip: irq < 8 ? GSIRoute.picMaster : GSIRoute.picSlave, pin: irq % 8))
        }
        for gsi in UInt32(0)..<GSIRoute.ioapicPins where gsi != 2 {
            routes.append(.irqchip(gsi: gsi, chip: GSIRoute.ioapic, pin: gsi == 0 ? 2 : gsi))
        }
        return routes
    }
}
