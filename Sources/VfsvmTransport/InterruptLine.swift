import VfsvmSys

/// An interrupt the transport raises toward the guest: a KVM irqfd on a
/// GSI (virtio-mmio's line, virtio-pci's INTx), a recording sink in tests.
public protocol InterruptLine: Sendable {
    func trigger() throws
}

/// An `InterruptLine` that signals an eventfd: what a VMM registers with
/// KVM as an irqfd (KVM_IRQFD) on the device's GSI, so raising the line
/// never leaves the kernel.
public final class EventFDInterruptLine: InterruptLine {
    public let eventfd: EventFD

    public init() throws(SystemError) {
        eventfd = try EventFD(nonBlocking: true)
    }

    public func trigger() throws {
        try eventfd.signal()
    }
}
