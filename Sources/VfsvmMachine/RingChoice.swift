import VfsvmMemory
import VfsvmVirtio

/// Which virtqueue layouts a device offers (`vfsvm run --ring`).
public enum RingChoice: String, Sendable, CaseIterable {
    /// Offer both; the driver chooses (VIRTIO_F_RING_PACKED accepted or not).
    case auto
    /// Offer only the split ring: VIRTIO_F_RING_PACKED is not offered.
    case split
    /// Offer only the packed ring: VIRTIO_F_RING_PACKED is offered and a
    /// driver that does not accept it cannot start the device (the
    /// activation fails, the transport sets DEVICE_NEEDS_RESET).
    case packed
}

/// A device seen through a `RingChoice`: everything passes through except
/// the offered features and the activation check.
public final class RingChoiceDevice: VirtioDevice {
    public let inner: any VirtioDevice
    public let choice: RingChoice

    public init(_ inner: any VirtioDevice, choice: RingChoice) {
        self.inner = inner
        self.choice = choice
    }

    public struct PackedRequired: Error, CustomStringConvertible {
        public var description: String { "--ring packed: the driver did not accept VIRTIO_F_RING_PACKED" }
    }

    public var deviceType: UInt32 { inner.deviceType }
    public var offeredFeatures: VirtioFeatures {
        choice == .split ? inner.offeredFeatures.subtracting(.ringPacked) : inner.offeredFeatures
    }
    public var queueMaxSizes: [UInt16] { inner.queueMaxSizes }
    public func readConfig(offset: Int, into: inout [UInt8]) { inner.readConfig(offset: offset, into: &into) }
    public func writeConfig(offset: Int, bytes: [UInt8]) { inner.writeConfig(offset: offset, bytes: bytes) }

    public func activate(memory: GuestMemory, features: VirtioFeatures, queues: [ActivatedQueue], interrupt: any VirtioInterrupt) throws {
        if choice == .packed && !features.contains(.ringPacked) { throw PackedRequired() }
        try inner.activate(memory: memory, features: features, queues: queues, interrupt: interrupt)
    }

    public func reset() { inner.reset() }
}
