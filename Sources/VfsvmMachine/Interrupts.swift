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

/// Hands out IOAPIC pins for devices: 5, 6, 7, 9, 10, 11, then 16–23
/// (0–2 are the PIT and cascade, 3/4 the serial ports, 8 the RTC, 12–15
/// the PS/2 mouse, FPU and IDE channels a guest may still assume).
struct GSIAllocator {
    private var free: [UInt32] = [5, 6, 7, 9, 10, 11] + Array(16...23)

    mutating func next() throws(MachineError) -> UInt32 {
        guard !free.isEmpty else { throw .outOfInterrupts }
        return free.removeFirst()
    }
}
