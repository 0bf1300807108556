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

    public var deviceType: UInt32 { inner.deviceType }
    public var offeredFeatures: VirtioFeatures {
        choice == .split ? inner.offeredFeatures.subtracting(.ringPacked) : inner.offeredFeatures
    }
    public var queueMaxSizes: [UInt16] { inner.queueMaxSizes }
    public func readConfig(offset: Int, into: UnsafeMutableRawBufferPointer) { inner.readConfig(offset: offset, into: into) }
    public func writeConfig(offset: Int, bytes: UnsafeRawBufferPointer) { inner.writeConfig(offset: offset, bytes: bytes) }

    public var state: DeviceState { inner.state }

    public func activate(_ context: ActivationContext) throws(DeviceActivationError) {
        if choice == .packed && !context.features.contains(.ringPacked) {
            throw .refused("--ring packed: the driver did not accept VIRTIO_F_RING_PACKED")
        }
        try inner.activate(context)
    }

    public func stopQueue(_ index: Int) -> Virtqueue? { inner.stopQueue(index) }
    public func startQueue(_ queue: ActivatedQueue) throws(DeviceActivationError) { try inner.startQueue(queue) }
    public func replaceMemory(_ memory: GuestMemory) { inner.replaceMemory(memory) }
    public func reset() { inner.reset() }
}
