import Testing
import VfsvmVirtio

/// Feature negotiation and the device status state machine
/// (virtio 1.2, 2.1 "Device Status Field", 2.2 "Feature Bits", 3.1.1).
@Suite struct FeaturesTests {
    let offered: VirtioFeatures = [.version1, .ringPacked, .eventIndex, .indirectDescriptors, .bit(0)]

    /// Walks ACKNOWLEDGE, DRIVER and the feature write as Linux does (each
    /// status write ORs the new bit into what it read back).
    func initialized(acking features: VirtioFeatures) throws -> VirtioDeviceState {
        var s = VirtioDeviceState(offeredFeatures: offered)
        try s.writeStatus(DeviceStatus.acknowledge.rawValue)
        try s.writeStatus(s.status.union(.driver).rawValue)
        try s.writeDriverFeatures(word: 0, value: features.word(0))
        try s.writeDriverFeatures(word: 1, value: features.word(1))
        return s
    }

    @Test func featureBitsHaveTheirUAPINumbers() {
        // linux/virtio_config.h numbering.
        #expect(VirtioFeatures.indirectDescriptors.rawValue == 1 << 28)
        #expect(VirtioFeatures.eventIndex.rawValue == 1 << 29)
        #expect(VirtioFeatures.version1.rawValue == 1 << 32)
        #expect(VirtioFeatures.accessPlatform.rawValue == 1 << 33)
        #expect(VirtioFeatures.ringPacked.rawValue == 1 << 34)
        #expect(VirtioFeatures.inOrder.rawValue == 1 << 35)
        #expect(VirtioFeatures.notificationData.rawValue == 1 << 38)
        #expect(VirtioFeatures.ringReset.rawValue == 1 << 40)
        #expect(DeviceStatus.failed.rawValue == 0x80 && DeviceStatus.deviceNeedsReset.rawValue == 0x40)
    }

    @Test func featuresSplitIntoThe32BitWordsTransportsSelect() {
        let f: VirtioFeatures = [.version1, .ringPacked, .bit(5)]
        #expect(f.word(0) == 1 << 5)
        #expect(f.word(1) == 0b101)
        #expect(f.word(2) == 0)
        #expect(VirtioFeatures().replacingWord(1, with: 1).replacingWord(0, with: 3) == [.version1, .bit(0), .bit(1)])
        #expect(f.replacingWord(7, with: 0xffff_ffff) == f)
    }

    @Test func negotiationAcceptsSubsetWithVersion1() throws {
        var s = try initialized(acking: [.version1, .eventIndex])
        let change = try s.writeStatus(s.status.union(.featuresOK).rawValue)
        #expect(change == StatusChange.none)
        #expect(s.status == [.acknowledge, .driver, .featuresOK])
        #expect(s.negotiatedFeatures == [.version1, .eventIndex])
        #expect(!s.isLive)
        let change2 = try s.writeStatus(s.status.union(.driverOK).rawValue)
        #expect(change2 == .activate)
        #expect(s.isLive)
        #expect(s.status.rawValue == 0x0f)
    }

    /// 2.2.1: the device MUST NOT accept a bit it did not offer (FEATURES_OK stays clear).
    @Test func unofferedBitFailsFeaturesOK() throws {
        var s = try initialized(acking: [.version1, .ringReset])
        #expect(throws: DeviceStateError.unacceptableFeatures(acked: [.version1, .ringReset], offered: offered)) {
            try s.writeStatus(s.status.union(.featuresOK).rawValue)
        }
        #expect(s.status == [.acknowledge, .driver])
        #expect(s.negotiatedFeatures == [])
        // And DRIVER_OK cannot follow.
        #expect(throws: DeviceStateError.self) { try s.writeStatus(s.status.union([.featuresOK, .driverOK]).rawValue) }
        #expect(!s.isLive)
    }

    /// 6.1: a device without a legacy interface fails FEATURES_OK without VERSION_1.
    @Test func missingVersion1FailsFeaturesOK() throws {
        var s = try initialized(acking: [.eventIndex])
        #expect(throws: DeviceStateError.self) { try s.writeStatus(s.status.union(.featuresOK).rawValue) }
        #expect(!s.status.contains(.featuresOK))
    }

    /// 3.1.1: the steps happen in order.
    @Test func outOfOrderStatusWritesRefused() throws {
        var s = VirtioDeviceState(offeredFeatures: offered)
        #expect(throws: DeviceStateError.outOfOrder(from: [], to: .driver)) { try s.writeStatus(DeviceStatus.driver.rawValue) }
        #expect(s.status == [])
        try s.writeStatus(DeviceStatus([.acknowledge, .driver]).rawValue)   // two steps in one write is fine
        #expect(throws: DeviceStateError.self) { try s.writeStatus(DeviceStatus([.acknowledge, .driver, .driverOK]).rawValue) }
        #expect(s.status == [.acknowledge, .driver])
    }

    /// 2.1.1: the driver MUST NOT clear a status bit (other than by reset).
    @Test func clearingBitsRefused() throws {
        var s = try initialized(acking: [.version1])
        #expect(throws: DeviceStateError.clearsBits(from: [.acknowledge, .driver], to: .acknowledge)) {
            try s.writeStatus(DeviceStatus.acknowledge.rawValue)
        }
        #expect(s.status == [.acknowledge, .driver])
    }

    @Test func featuresLockedOutsideWindow() throws {
        var s = VirtioDeviceState(offeredFeatures: offered)
        #expect(throws: DeviceStateError.featuresLocked(status: [])) { try s.writeDriverFeatures([.version1]) }
        s = try initialized(acking: [.version1])
        try s.writeStatus(s.status.union(.featuresOK).rawValue)
        #expect(throws: DeviceStateError.self) { try s.writeDriverFeatures(word: 0, value: 1) }
        #expect(s.negotiatedFeatures == [.version1])
    }

    @Test func resetClearsEverything() throws {
        var s = try initialized(acking: [.version1])
        try s.writeStatus(s.status.union(.featuresOK).rawValue)
        let change = try s.writeStatus(0)
        #expect(change == .reset)
        #expect(s.status == [] && s.driverFeatures == [] && s.negotiatedFeatures == [])
    }

    /// 2.1.2: NEEDS_RESET is the device's; the driver can't clear it and the device stops.
    @Test func needsResetStaysUntilReset() throws {
        var s = try initialized(acking: [.version1])
        try s.writeStatus(s.status.union(.featuresOK).rawValue)
        try s.writeStatus(s.status.union(.driverOK).rawValue)
        let first = s.markNeedsReset(), second = s.markNeedsReset()
        #expect(first && !second)
        #expect(s.status.rawValue == 0x4f)
        #expect(!s.isLive)
        // Writing back the old value without the bit does not clear it.
        let change = try s.writeStatus(0x0f)
        #expect(change == StatusChange.none)
        #expect(s.status.contains(.deviceNeedsReset))
        try s.writeStatus(0)
        #expect(s.status == [])
    }

    @Test func failedStopsTheSequence() throws {
        var s = try initialized(acking: [.version1])
        let change = try s.writeStatus(s.status.union(.failed).rawValue)
        #expect(change == .failed)
        #expect(throws: DeviceStateError.self) { try s.writeStatus(s.status.union(.featuresOK).rawValue) }
        #expect(s.status == [.acknowledge, .driver, .failed])
    }
}
