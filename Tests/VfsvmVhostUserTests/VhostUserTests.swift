import Glibc
import Synchronization
import Testing
import VfsvmMemory
import VfsvmSys
import VfsvmVhostUserTestSupport
import VfsvmVirtio
@testable import VfsvmVhostUser

private let protocolBit = VirtioFeatures.vhostUserProtocolFeatures
private let version1 = VirtioFeatures.version1

/// Guest RAM layout used by the ring tests: one 128 KiB memfd shared as two
/// regions with different guest, front-end and file offsets.
private let regionA = VhostUserMemoryRegion(guestAddress: 0x0, size: 0x10000, userAddress: 0x7f00_0000_0000, mmapOffset: 0)
private let regionB = VhostUserMemoryRegion(guestAddress: 0x10_0000, size: 0x10000, userAddress: 0x7f00_1000_0000,
                                            mmapOffset: 0x10000)

/// Sets queue `index` up completely except for the enable.
private func setUpRing(_ f: MockFrontend, ram: SharedRAM, index: UInt32 = 1, size: UInt32 = 256, base: UInt32 = 7,
                       kick: EventFD, call: EventFD) throws {
    #expect(try f.acked(.setMemTable, payload: memTable([regionA, regionB]), fds: [ram.fd, ram.fd]) == 0)
    #expect(try f.acked(.setVringNum, payload: vringState(index, size)) == 0)
    #expect(try f.acked(.setVringBase, payload: vringState(index, base)) == 0)
    #expect(try f.acked(.setVringAddr, payload: vringAddr(index, desc: regionB.userAddress,
                                                          used: regionB.userAddress + 0x2000,
                                                          avail: regionA.userAddress + 0x1000)) == 0)
    #expect(try f.acked(.setVringCall, payload: le64(UInt64(index)), fds: [call.fd]) == 0)
    #expect(try f.acked(.setVringKick, payload: le64(UInt64(index)), fds: [kick.fd]) == 0)
}

private let expectedRing1 = VhostUserVring(index: 1, size: 256, descriptorTable: GuestAddress(0x10_0000),
                                           driverArea: GuestAddress(0x1000), deviceArea: GuestAddress(0x10_2000), base: 7)

@Suite struct VhostUserProtocolTests {
    @Test func featureNegotiation() throws {
        let device = RecordingDevice(features: [version1, .accessPlatform])
        let end = try withServer(device) { f in
            #expect(try f.getU64(.getFeatures) == VirtioFeatures([version1, .accessPlatform, protocolBit]).rawValue)
            let offered = try f.getU64(.getProtocolFeatures)
            #expect(offered == VhostUserProtocolFeature.mq | VhostUserProtocolFeature.replyAck
                    | VhostUserProtocolFeature.config | VhostUserProtocolFeature.resetDevice
                    | VhostUserProtocolFeature.configureMemSlots)
            #expect(try f.getU64(.getQueueNum) == 2)
            #expect(try f.acked(.setProtocolFeatures, payload: le64(VhostUserProtocolFeature.replyAck)) == 0)
            #expect(try f.acked(.setFeatures, payload: le64(VirtioFeatures([version1, protocolBit]).rawValue)) == 0)
            // Bit 34 (packed) was not offered: refused with a failure ack, then dropped.
            #expect(try f.acked(.setFeatures, payload: le64(VirtioFeatures([version1, .ringPacked]).rawValue)) == 1)
            #expect(try f.sawDisconnect())
        }
        #expect(end == .protocolError(.unsupportedFeatures(offered: [version1, .accessPlatform, protocolBit],
                                                           requested: [version1, .ringPacked])))
        #expect(device.calls == [.reset])
    }

    @Test func protocolFeatureOfferCanBeNarrowed() throws {
        let device = RecordingDevice()
        let end = try withServer(device, protocolFeatures: VhostUserProtocolFeature.replyAck | VhostUserProtocolFeature.mq
                                 | VhostUserProtocolFeature.status) { f in
            // STATUS is not implemented, so it is not offered even when asked for.
            #expect(try f.getU64(.getProtocolFeatures) == VhostUserProtocolFeature.replyAck | VhostUserProtocolFeature.mq)
            try f.send(.setProtocolFeatures, payload: le64(VhostUserProtocolFeature.config))
            #expect(try f.sawDisconnect())
        }
        #expect(end == .protocolError(.unsupportedProtocolFeatures(offered: 0x9, requested: VhostUserProtocolFeature.config)))
    }

    @Test func noAckWithoutReplyAckNegotiated() throws {
        let device = RecordingDevice()
        _ = try withServer(device) { f in
            try f.send(.setOwner, needReply: true)
            // No ack came: the next thing on the socket is GET_FEATURES's reply.
            #expect(try f.getU64(.getFeatures) == device.deviceFeatures.union(protocolBit).rawValue)
        }
    }

    @Test func memoryTableIsMappedAndRingStartsWithTranslatedAddresses() throws {
        let device = RecordingDevice()
        let ram = try SharedRAM(size: 0x20000)
        try ram.write(Array("hello".utf8), at: 0x10000 + 0x500)  // guest 0x100500, in region B
        let kick = try EventFD(), call = try EventFD()
        let end = try withServer(device) { f in
            try f.negotiate(features: [version1, protocolBit])
            try setUpRing(f, ram: ram, kick: kick, call: call)
            // With protocol features the ring waits for SET_VRING_ENABLE.
            #expect(device.calls.isEmpty)
            #expect(try f.acked(.setVringEnable, payload: vringState(1, 1)) == 0)
            #expect(device.calls == [.start(expectedRing1, features: version1, hasCall: true)])

            let started = try #require(device.started(1))
            #expect(try started.memory.readBytes(at: GuestAddress(0x10_0500), count: 5) == Array("hello".utf8))
            try started.memory.writeBytes([0xAB, 0xCD], at: GuestAddress(0x20))
            #expect(try ram.read(at: 0x20, count: 2) == [0xAB, 0xCD])
            #expect(throws: GuestMemoryError.self) { try started.memory.readBytes(at: GuestAddress(0x10000), count: 1) }
            // The kick and call fds are the front-end's eventfds.
            try kick.signal()
            #expect(try started.kick.drain() == 1)
            try #require(started.call).signal()
            #expect(try call.drain() == 1)
        }
        #expect(end == .peerClosed)
        #expect(device.calls.last == .reset)
    }

    @Test func getVringBaseStopsTheRingAndReturnsTheDeviceState() throws {
        let device = RecordingDevice(stopValue: 0x2345)
        let ram = try SharedRAM(size: 0x20000)
        let kick = try EventFD(), call = try EventFD()
        _ = try withServer(device) { f in
            try f.negotiate(features: [version1, protocolBit])
            try setUpRing(f, ram: ram, kick: kick, call: call)
            #expect(try f.acked(.setVringEnable, payload: vringState(1, 1)) == 0)
            try f.send(.getVringBase, payload: vringState(1, 0))
            #expect(try f.reply() == Reply(request: 11, flags: 0x5, payload: vringState(1, 0x2345)))
            #expect(device.calls.dropFirst() == [.stop(1)])
            // A stopped ring restarts on the next kick fd, from where it stopped.
            #expect(try f.acked(.setVringKick, payload: le64(1), fds: [kick.fd]) == 0)
            var restarted = expectedRing1
            restarted.base = 0x2345
            #expect(device.calls.last == .start(restarted, features: version1, hasCall: true))
            // GET_VRING_BASE on a ring that is not running answers its base.
            try f.send(.getVringBase, payload: vringState(0, 0))
            #expect(try f.reply()?.payload == vringState(0, 0))
        }
    }

    @Test func aNewKickForARunningRingRestartsItWhereItStopped() throws {
        let device = RecordingDevice(stopValue: 0x55)
        let ram = try SharedRAM(size: 0x20000)
        let kick = try EventFD(), kick2 = try EventFD(), call = try EventFD()
        _ = try withServer(device) { f in
            try f.negotiate(features: [version1, protocolBit])
            try setUpRing(f, ram: ram, kick: kick, call: call)
            #expect(try f.acked(.setVringEnable, payload: vringState(1, 1)) == 0)
            #expect(try f.acked(.setVringKick, payload: le64(1), fds: [kick2.fd]) == 0)
            var restarted = expectedRing1
            restarted.base = 0x55
            #expect(device.calls == [.start(expectedRing1, features: version1, hasCall: true), .stop(1),
                                     .start(restarted, features: version1, hasCall: true)])
            // The device now listens on the new kick fd.
            try kick2.signal()
            #expect(try device.started(1)?.kick.drain() == 1)
        }
    }

    @Test func withoutProtocolFeaturesTheKickEnablesTheRing() throws {
        let device = RecordingDevice()
        let ram = try SharedRAM(size: 0x20000)
        let kick = try EventFD()
        let end = try withServer(device) { f in
            // Legacy front-end: no protocol features, so no REPLY_ACK; use
            // a GET round trip to know the server has caught up.
            try f.send(.setFeatures, payload: le64(version1.rawValue))
            try f.send(.setMemTable, payload: memTable([regionA, regionB]), fds: [ram.fd, ram.fd])
            try f.send(.setVringNum, payload: vringState(1, 256))
            try f.send(.setVringBase, payload: vringState(1, 7))
            try f.send(.setVringAddr, payload: vringAddr(1, desc: regionB.userAddress, used: regionB.userAddress + 0x2000,
                                                         avail: regionA.userAddress + 0x1000))
            try f.send(.setVringCall, payload: le64(1 | 1 << 8))  // no call fd
            try f.send(.setVringKick, payload: le64(1), fds: [kick.fd])
            #expect(try f.getU64(.getQueueNum) == 2)
            #expect(device.calls == [.start(expectedRing1, features: version1, hasCall: false)])
            // SET_VRING_ENABLE needs VHOST_USER_F_PROTOCOL_FEATURES.
            try f.send(.setVringEnable, payload: vringState(1, 1))
            #expect(try f.sawDisconnect())
        }
        #expect(end == .protocolError(.unsupportedRequest(.setVringEnable)))
    }

    @Test func callAndMemoryChangesReachARunningRing() throws {
        let device = RecordingDevice()
        let ram = try SharedRAM(size: 0x20000)
        let kick = try EventFD(), call = try EventFD(), call2 = try EventFD()
        _ = try withServer(device) { f in
            try f.negotiate(features: [version1, protocolBit])
            try setUpRing(f, ram: ram, kick: kick, call: call)
            #expect(try f.acked(.setVringEnable, payload: vringState(1, 1)) == 0)
            #expect(try f.acked(.setVringCall, payload: le64(1), fds: [call2.fd]) == 0)
            try #require(device.started(1)?.call).signal()
            #expect(try call2.drain() == 1)
            #expect(try f.acked(.setVringCall, payload: le64(1 | 1 << 8)) == 0)
            // Changing the size of a running ring is refused.
            let other = try SharedRAM(size: 0x10000)
            try other.write([0x5A], at: 0x40)
            #expect(try f.acked(.setMemTable, payload: memTable([regionA]), fds: [other.fd]) == 0)
            #expect(try device.latestMemory?.readBytes(at: GuestAddress(0x40), count: 1) == [0x5A])
            #expect(try f.acked(.setVringNum, payload: vringState(1, 128)) == 1)
            #expect(try f.sawDisconnect())
        }
        #expect(device.calls.dropFirst() == [.callChanged(1, hasCall: true), .callChanged(1, hasCall: false),
                                             .memoryChanged, .reset])
    }

    @Test func disablingAndResettingStopTheRing() throws {
        let device = RecordingDevice(stopValue: 9)
        let ram = try SharedRAM(size: 0x20000)
        let kick = try EventFD(), call = try EventFD()
        _ = try withServer(device) { f in
            try f.negotiate(features: [version1, protocolBit],
                            protocolFeatures: VhostUserProtocolFeature.replyAck | VhostUserProtocolFeature.resetDevice)
            try setUpRing(f, ram: ram, kick: kick, call: call)
            #expect(try f.acked(.setVringEnable, payload: vringState(1, 1)) == 0)
            #expect(try f.acked(.setVringEnable, payload: vringState(1, 0)) == 0)
            #expect(try f.acked(.setVringEnable, payload: vringState(1, 1)) == 0)
            var resumed = expectedRing1
            resumed.base = 9
            #expect(device.calls == [.start(expectedRing1, features: version1, hasCall: true), .stop(1),
                                     .start(resumed, features: version1, hasCall: true)])
            #expect(try f.acked(.resetDevice) == 0)
            #expect(device.calls.last == .reset)
            // Memory and ring setup are forgotten.
            #expect(try f.acked(.setVringAddr, payload: vringAddr(1, desc: regionB.userAddress, used: regionB.userAddress,
                                                                  avail: regionB.userAddress)) == 1)
            #expect(try f.sawDisconnect())
        }
    }

    @Test func deviceConfigIsReadAndReadOnly() throws {
        let device = RecordingDevice()
        let end = try withServer(device) { f in
            try f.negotiate(features: [version1, protocolBit])
            // u32 offset, u32 size, u32 flags, then size bytes.
            try f.send(.getConfig, payload: le32(0) + le32(40) + le32(0) + [UInt8](repeating: 0, count: 40))
            let r = try #require(try f.reply())
            #expect(r.request == 24 && r.flags == 0x5)
            #expect(r.payload == le32(0) + le32(40) + le32(0) + device.config)
            // Past the device's config: zeros.
            try f.send(.getConfig, payload: le32(36) + le32(8) + le32(0) + [UInt8](repeating: 0xFF, count: 8))
            #expect(try f.reply()?.payload == le32(36) + le32(8) + le32(0) + [1, 0, 0, 0, 0, 0, 0, 0])
            // SET_CONFIG is refused without dropping the connection.
            #expect(try f.acked(.setConfig, payload: le32(0) + le32(1) + le32(0) + [7]) == 1)
            #expect(try f.getU64(.getQueueNum) == 2)
            // Beyond the 256-byte config space: dropped.
            try f.send(.getConfig, payload: le32(250) + le32(8) + le32(0) + [UInt8](repeating: 0, count: 8))
            #expect(try f.sawDisconnect())
        }
        #expect(end == .protocolError(.badConfigAccess(offset: 250, size: 8)))
    }

    @Test func memorySlotsAreAddedAndRemovedOneByOne() throws {
        let device = RecordingDevice()
        let ram = try SharedRAM(size: 0x20000)
        try ram.write(Array("slot".utf8), at: 0x10000 + 0x600)  // guest 0x100600, in region B
        try ram.write([0x77], at: 0x30)  // guest 0x30, in region A
        let kick = try EventFD(), call = try EventFD()
        /// `u64 padding, u64 gpa, u64 size, u64 uaddr, u64 mmap_offset`.
        func slot(_ r: VhostUserMemoryRegion) -> [UInt8] {
            le64(0) + le64(r.guestAddress) + le64(r.size) + le64(r.userAddress) + le64(r.mmapOffset)
        }
        _ = try withServer(device) { f in
            try f.negotiate(features: [version1, protocolBit],
                            protocolFeatures: VhostUserProtocolFeature.replyAck | VhostUserProtocolFeature.configureMemSlots)
            #expect(try f.getU64(.getMaxMemSlots) == 32)
            #expect(try f.acked(.addMemReg, payload: slot(regionA), fds: [ram.fd]) == 0)
            #expect(try f.acked(.addMemReg, payload: slot(regionB), fds: [ram.fd]) == 0)
            #expect(try f.acked(.setVringNum, payload: vringState(1, 256)) == 0)
            #expect(try f.acked(.setVringBase, payload: vringState(1, 7)) == 0)
            #expect(try f.acked(.setVringAddr, payload: vringAddr(1, desc: regionB.userAddress,
                                                                  used: regionB.userAddress + 0x2000,
                                                                  avail: regionA.userAddress + 0x1000)) == 0)
            #expect(try f.acked(.setVringCall, payload: le64(1), fds: [call.fd]) == 0)
            #expect(try f.acked(.setVringKick, payload: le64(1), fds: [kick.fd]) == 0)
            #expect(try f.acked(.setVringEnable, payload: vringState(1, 1)) == 0)
            #expect(device.calls == [.start(expectedRing1, features: version1, hasCall: true)])
            let memory = try #require(device.started(1)?.memory)
            #expect(try memory.readBytes(at: GuestAddress(0x10_0600), count: 4) == Array("slot".utf8))
            #expect(try memory.readBytes(at: GuestAddress(0x30), count: 1) == [0x77])

            // Removing region A: the running ring gets memory without it.
            #expect(try f.acked(.remMemReg, payload: slot(regionA)) == 0)
            #expect(device.calls.last == .memoryChanged)
            let after = try #require(device.latestMemory)
            #expect(throws: GuestMemoryError.outOfRange(address: GuestAddress(0x30), length: 1)) {
                try after.readBytes(at: GuestAddress(0x30), count: 1)
            }
            #expect(try after.readBytes(at: GuestAddress(0x10_0600), count: 4) == Array("slot".utf8))
            // A region overlapping one that is mapped is refused.
            #expect(try f.acked(.addMemReg, payload: slot(VhostUserMemoryRegion(
                guestAddress: 0x10_8000, size: 0x1000, userAddress: 0x1000, mmapOffset: 0)), fds: [ram.fd]) == 1)
            #expect(try f.sawDisconnect())
        }
    }

    @Test func removingARegionThatIsNotThereDropsTheConnection() throws {
        let device = RecordingDevice()
        let end = try withServer(device) { f in
            try f.negotiate(features: [version1, protocolBit],
                            protocolFeatures: VhostUserProtocolFeature.replyAck | VhostUserProtocolFeature.configureMemSlots)
            let ram = try SharedRAM(size: 0x10000)
            #expect(try f.acked(.addMemReg, payload: le64(0) + le64(0) + le64(0x10000) + le64(0x4000) + le64(0), fds: [ram.fd]) == 0)
            #expect(try f.acked(.remMemReg, payload: le64(0) + le64(0) + le64(0x8000) + le64(0x4000) + le64(0)) == 1)
            #expect(try f.sawDisconnect())
        }
        #expect(end == .protocolError(.badMemoryTable("REM_MEM_REG names no mapped region (guest 0x0, 32768 bytes)")))
    }

    @Test func deviceRefusingAQueueDropsTheConnection() throws {
        let device = RecordingDevice(refuseStart: true)
        let ram = try SharedRAM(size: 0x20000)
        let kick = try EventFD(), call = try EventFD()
        let end = try withServer(device) { f in
            try f.negotiate(features: [version1, protocolBit])
            try setUpRing(f, ram: ram, kick: kick, call: call)
            #expect(try f.acked(.setVringEnable, payload: vringState(1, 1)) == 1)
            #expect(try f.sawDisconnect())
        }
        guard case .protocolError(.deviceRefusedQueue(index: 1, reason: _)) = end else {
            Issue.record("unexpected end \(String(describing: end))")
            return
        }
    }
}
