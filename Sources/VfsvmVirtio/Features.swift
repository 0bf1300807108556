import CVfsvmLinux

/// Feature bits (virtio 1.2, 2.2 "Feature Bits" and 6 "Reserved Feature
/// Bits"). Device-type bits (0-23) are carried through untouched; the
/// transport-level bits the virtio core understands have names here.
public struct VirtioFeatures: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// VIRTIO_F_INDIRECT_DESC (28): descriptors may point at a table of descriptors.
    public static let indirectDescriptors = bit(Int(VIRTIO_RING_F_INDIRECT_DESC))
    /// VIRTIO_F_EVENT_IDX (29): used_event / avail_event (split) and the
    /// DESC mode of the packed event suppression structures.
    public static let eventIndex = bit(Int(VIRTIO_RING_F_EVENT_IDX))
    /// VIRTIO_F_VERSION_1 (32): a modern (non-legacy) device. Required.
    public static let version1 = bit(Int(VIRTIO_F_VERSION_1))
    /// VIRTIO_F_ACCESS_PLATFORM (33): addresses go through an IOMMU.
    public static let accessPlatform = bit(Int(VIRTIO_F_ACCESS_PLATFORM))
    /// VIRTIO_F_RING_PACKED (34): the packed virtqueue layout.
    public static let ringPacked = bit(Int(VIRTIO_F_RING_PACKED))
    /// VIRTIO_F_IN_ORDER (35): buffers are used in the order they were made available.
    public static let inOrder = bit(Int(VIRTIO_F_IN_ORDER))
    /// VIRTIO_F_NOTIFICATION_DATA (38): the driver passes extra data with a notification.
    public static let notificationData = bit(38)  // not in this machine's linux/virtio_config.h
    /// VIRTIO_F_RING_RESET (40): single queues can be reset.
    public static let ringReset = bit(Int(VIRTIO_F_RING_RESET))

    /// Bit `n` (0...63).
    public static func bit(_ n: Int) -> VirtioFeatures {
        precondition((0..<64).contains(n))
        return VirtioFeatures(rawValue: 1 << UInt64(n))
    }

    /// The 32-bit half the transports expose through a select register
    /// (virtio-pci device_feature_select, virtio-mmio DeviceFeaturesSel):
    /// word 0 is bits 0-31, word 1 bits 32-63, any other word reads 0.
    public func word(_ index: UInt32) -> UInt32 {
        switch index {
        case 0: UInt32(truncatingIfNeeded: rawValue)
        case 1: UInt32(truncatingIfNeeded: rawValue >> 32)
        default: 0
        }
    }

    /// `self` with the 32-bit half `index` replaced by `value`; other words
    /// are ignored (there are no feature bits beyond 63 in virtio 1.2).
    public func replacingWord(_ index: UInt32, with value: UInt32) -> VirtioFeatures {
        switch index {
        case 0: VirtioFeatures(rawValue: (rawValue & 0xffff_ffff_0000_0000) | UInt64(value))
        case 1: VirtioFeatures(rawValue: (rawValue & 0x0000_0000_ffff_ffff) | UInt64(value) << 32)
        default: self
        }
    }

    public var description: String { "0x" + String(rawValue, radix: 16) }
}

/// The device status field (virtio 1.2, 2.1 "Device Status Field").
public struct DeviceStatus: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let acknowledge = DeviceStatus(rawValue: UInt8(VIRTIO_CONFIG_S_ACKNOWLEDGE))
    public static let driver = DeviceStatus(rawValue: UInt8(VIRTIO_CONFIG_S_DRIVER))
    public static let driverOK = DeviceStatus(rawValue: UInt8(VIRTIO_CONFIG_S_DRIVER_OK))
    public static let featuresOK = DeviceStatus(rawValue: UInt8(VIRTIO_CONFIG_S_FEATURES_OK))
    public static let deviceNeedsReset = DeviceStatus(rawValue: UInt8(VIRTIO_CONFIG_S_NEEDS_RESET))
    public static let failed = DeviceStatus(rawValue: UInt8(VIRTIO_CONFIG_S_FAILED))

    public var description: String { "0x" + String(rawValue, radix: 16) }
}

/// What a status write asks of the transport.
public enum StatusChange: Hashable, Sendable {
    /// Nothing to do (bits recorded).
    case none
    /// The driver wrote 0: reset the device and all its queues.
    case reset
    /// DRIVER_OK was set: activate the device with the negotiated features.
    case activate
    /// The driver set FAILED: it gave up on the device; stop processing.
    case failed
}

/// Why a status or feature write was not accepted. The transport logs it;
/// the status register simply does not take the offending bits.
public enum DeviceStateError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The driver tried to clear a bit without a reset (2.1.1: "The driver
    /// MUST NOT clear a device status bit").
    case clearsBits(from: DeviceStatus, to: DeviceStatus)
    /// A bit was set before the bits that must precede it (3.1.1
    /// "Driver Requirements: Device Initialization"), or after FAILED.
    case outOfOrder(from: DeviceStatus, to: DeviceStatus)
    /// FEATURES_OK with features the device cannot accept (2.2.1, 3.1.1):
    /// a bit that was not offered, or VERSION_1 missing (6.1).
    case unacceptableFeatures(acked: VirtioFeatures, offered: VirtioFeatures)
    /// Driver features written outside the DRIVER ... FEATURES_OK window.
    case featuresLocked(status: DeviceStatus)

    public var description: String {
        switch self {
        case let .clearsBits(f, t): "status write \(t) clears bits of \(f) without a reset"
        case let .outOfOrder(f, t): "status write \(t) from \(f) skips a step of device initialization"
        case let .unacceptableFeatures(a, o): "driver acked features \(a) not acceptable for offered \(o)"
        case let .featuresLocked(s): "driver features written in status \(s)"
        }
    }
}

/// The device-status state machine and feature negotiation that every
/// transport shares (virtio-pci, virtio-mmio; vhost-user keeps its own
/// protocol but the same rules). Writes of status go through `writeStatus`,
/// which enforces the initialization order of 3.1.1:
///
///   0 → ACKNOWLEDGE → DRIVER → (features) → FEATURES_OK → DRIVER_OK
///
/// FAILED may be set at any time; DEVICE_NEEDS_RESET is set only by the
/// device (`markNeedsReset`); writing 0 resets everything.
public struct VirtioDeviceState: Hashable, Sendable {
    public let offeredFeatures: VirtioFeatures
    public private(set) var status: DeviceStatus = []
    /// What the driver has written so far (may be unacceptable until
    /// FEATURES_OK is checked).
    public private(set) var driverFeatures: VirtioFeatures = []

    public init(offeredFeatures: VirtioFeatures) {
        self.offeredFeatures = offeredFeatures
    }

    /// The negotiated set: the driver's features once FEATURES_OK was
    /// accepted, empty before.
    public var negotiatedFeatures: VirtioFeatures {
        status.contains(.featuresOK) ? driverFeatures : []
    }

    /// DRIVER_OK is set and the device has not failed or asked for a reset:
    /// queues may be processed (2.1.2: the device MUST NOT consume buffers
    /// or send notifications before DRIVER_OK).
    public var isLive: Bool {
        status.contains(.driverOK) && status.isDisjoint(with: [.failed, .deviceNeedsReset])
    }

    /// True when `features` may be accepted at FEATURES_OK: a subset of the
    /// offer that includes VERSION_1 (this device has no legacy interface).
    public func acceptable(_ features: VirtioFeatures) -> Bool {
        features.isSubset(of: offeredFeatures) && features.contains(.version1)
    }

    /// Writes one 32-bit half of the driver features. Accepted only after
    /// DRIVER and before FEATURES_OK (3.1.1 step 5; 2.2.1: the driver MUST
    /// NOT accept a feature after FEATURES_OK).
    public mutating func writeDriverFeatures(word: UInt32, value: UInt32) throws(DeviceStateError) {
        guard status.contains(.driver), !status.contains(.featuresOK), !status.contains(.failed) else {
            throw .featuresLocked(status: status)
        }
        driverFeatures = driverFeatures.replacingWord(word, with: value)
    }

    /// Sets all driver features at once (vhost-user SET_FEATURES, tests).
    public mutating func writeDriverFeatures(_ features: VirtioFeatures) throws(DeviceStateError) {
        guard status.contains(.driver), !status.contains(.featuresOK), !status.contains(.failed) else {
            throw .featuresLocked(status: status)
        }
        driverFeatures = features
    }

    /// The one entry point for driver writes of the status register.
    ///
    /// - 0 resets (returns `.reset`).
    /// - Clearing a bit otherwise, or setting a bit before its predecessor,
    ///   is refused: the status is unchanged and the error says why.
    /// - FEATURES_OK is only taken if `acceptable(driverFeatures)`; if not,
    ///   the other new bits are kept, FEATURES_OK stays clear (the driver
    ///   reads the status back, 3.1.1 step 6), and the error is thrown.
    /// - Setting DRIVER_OK returns `.activate`; setting FAILED `.failed`.
    @discardableResult
    public mutating func writeStatus(_ raw: UInt8) throws(DeviceStateError) -> StatusChange {
        if raw == 0 {
            reset()
            return .reset
        }
        // DEVICE_NEEDS_RESET belongs to the device: the driver can neither
        // set nor clear it (a driver writing back what it read keeps it).
        var new = DeviceStatus(rawValue: raw)
        new.remove(.deviceNeedsReset)
        let old = status
        let oldDriverBits = old.subtracting(.deviceNeedsReset)
        guard new.isSuperset(of: oldDriverBits) else { throw .clearsBits(from: old, to: new) }
        let added = new.subtracting(oldDriverBits)
        if added.isEmpty { return .none }

        // Each step needs the one before it, in the same write or earlier.
        let order: [(DeviceStatus, DeviceStatus)] = [
            (.driver, .acknowledge), (.featuresOK, .driver), (.driverOK, .featuresOK),
        ]
        for (bit, needs) in order where added.contains(bit) && !new.contains(needs) {
            throw .outOfOrder(from: old, to: new)
        }
        // After FAILED the driver must reset before trying again.
        if old.contains(.failed) { throw .outOfOrder(from: old, to: new) }

        if added.contains(.featuresOK), !acceptable(driverFeatures) {
            // The other bits of the write are kept (so a driver that wrote
            // ACK|DRIVER|FEATURES_OK still sees ACK|DRIVER), FEATURES_OK is not.
            if added.contains(.driverOK) {
                throw .unacceptableFeatures(acked: driverFeatures, offered: offeredFeatures)
            }
            status = new.subtracting(.featuresOK).union(old.intersection(.deviceNeedsReset))
            throw .unacceptableFeatures(acked: driverFeatures, offered: offeredFeatures)
        }
        status = new.union(old.intersection(.deviceNeedsReset))
        if added.contains(.failed) { return .failed }
        if added.contains(.driverOK) { return .activate }
        return .none
    }

    /// The device hit an error it cannot recover from without a reset
    /// (2.1.2: set DEVICE_NEEDS_RESET; the transport then sends a
    /// configuration change notification if DRIVER_OK was set).
    /// Returns true when the bit was newly set.
    @discardableResult
    public mutating func markNeedsReset() -> Bool {
        if status.contains(.deviceNeedsReset) { return false }
        status.insert(.deviceNeedsReset)
        return true
    }

    public mutating func reset() {
        status = []
        driverFeatures = []
    }
}
