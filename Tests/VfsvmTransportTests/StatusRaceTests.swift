import Dispatch
import Foundation
import Glibc
import Testing
import VfsvmMemory
import VfsvmTestSupport
import VfsvmVirtio
@testable import VfsvmTransport

/// A ReversingDevice whose first activation stops inside `activate` until
/// the test opens the gate: the window in which a second vCPU writes the
/// status register.
final class GatedDevice: VirtioDevice, @unchecked Sendable {
    let inner = ReversingDevice(queues: 1, queueSize: 16)
    let entered = DispatchSemaphore(value: 0)
    let gate = DispatchSemaphore(value: 0)

    var deviceType: UInt32 { inner.deviceType }
    var offeredFeatures: VirtioFeatures { inner.offeredFeatures }
    var queueMaxSizes: [UInt16] { inner.queueMaxSizes }
    func readConfig(offset: Int, into: UnsafeMutableRawBufferPointer) { inner.readConfig(offset: offset, into: into) }
    func writeConfig(offset: Int, bytes: UnsafeRawBufferPointer) {}
    var state: DeviceState { inner.state }
    func activate(_ context: ActivationContext) throws(DeviceActivationError) {
        entered.signal()
        gate.wait()
        try inner.activate(context)
    }
    func stopQueue(_ index: Int) -> Virtqueue? { inner.stopQueue(index) }
    func startQueue(_ queue: ActivatedQueue) throws(DeviceActivationError) { try inner.startQueue(queue) }
    func replaceMemory(_ memory: GuestMemory) { inner.replaceMemory(memory) }
    func reset() { inner.reset() }
}

@Suite struct StatusRaceTests {
    /// Attack: vCPU A writes DRIVER_OK; while the device is being started,
    /// vCPU B resets it (status 0). The reset must win as the driver sees
    /// it: status 0 and no device running queues behind the driver's back
    /// (before the fix the reset ran first and the late start left the
    /// device active on a reset transport).
    @Test func aResetRacingDriverOKLeavesTheDeviceStopped() throws {
        let memory = try GuestMemory.anonymous(size: 1 << 20)
        let device = GatedDevice()
        let transport = try VirtioMMIOTransport(device: device, memory: memory, line: CountingLine())
        let driver = try MockDriver(memory: memory, layout: .split, queueSize: 16, features: [.version1],
                                    ringBase: GuestAddress(0x1000), arena: (1 << 19)..<(1 << 20))
        for s: UInt32 in [0, 1, 3] { transport.write32(0x070, s) }
        transport.write32(0x024, 1)
        transport.write32(0x020, VirtioFeatures.version1.word(1))
        transport.write32(0x070, 11)
        transport.write32(0x030, 0)
        transport.write32(0x038, 16)
        transport.write32(0x080, UInt32(driver.descriptorTable.rawValue))
        transport.write32(0x090, UInt32(driver.driverArea.rawValue))
        transport.write32(0x0a0, UInt32(driver.deviceArea.rawValue))
        transport.write32(0x044, 1)

        let done = DispatchSemaphore(value: 0)
        Thread { transport.write32(0x070, 15); done.signal() }.start()   // vCPU A: DRIVER_OK
        device.entered.wait()
        Thread { transport.write32(0x070, 0); done.signal() }.start()    // vCPU B: reset
        usleep(200_000)        // B has done its reset by now, unless it waits for A
        device.gate.signal()
        done.wait()
        done.wait()

        #expect(transport.read32(0x070) == 0, "the status reads back as reset")
        #expect(device.state == .inactive, "no queue runs on a reset device")
        device.reset()
    }
}
