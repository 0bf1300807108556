import CVfsvmLinux
import Glibc
import Synchronization
import Testing
import VfsvmFUSE
import VfsvmFUSETestSupport
import VfsvmMemory
import VfsvmPassthroughFS
import VfsvmSys
import VfsvmVhostUserTestSupport
import VfsvmTestSupport
import VfsvmVirtio
import VfsvmVirtioFS
@testable import VfsvmVhostUser

/// Collects the back-end's log lines.
final class LogLines: Sendable {
    private let lines = Mutex<[String]>([])
    var sink: @Sendable (String) -> Void { { [self] line in lines.withLock { $0.append(line) } } }
    var all: [String] { lines.withLock { $0 } }
}

/// A front-end with real rings: guest RAM is a memfd the front-end maps at
/// `userBase` in its own address space (guest-physical 0 = file offset 0),
/// and mock drivers lay the rings out in it, as the guest driver would.
final class RingFrontend {
    static let ramSize = 4 << 20
    static let userBase: UInt64 = 0x7f00_0000_0000
    let frontend: MockFrontend
    let ram: SharedRAM
    let layout: RingLayout
    let features: VirtioFeatures
    private(set) var drivers: [Int: MockDriver] = [:]
    private(set) var kicks: [Int: EventFD] = [:]
    private(set) var calls: [Int: EventFD] = [:]

    /// `slots`: hand the memory over as that many adjacent ADD_MEM_REG
    /// regions instead of one SET_MEM_TABLE region.
    init(_ frontend: MockFrontend, layout: RingLayout, features: VirtioFeatures = [.version1], slots: Int? = nil,
         ram: SharedRAM? = nil) throws {
        self.frontend = frontend
        self.layout = layout
        self.features = layout == .packed ? features.union(.ringPacked) : features
        self.ram = try ram ?? SharedRAM(size: Self.ramSize)
        try frontend.negotiate(features: self.features.union(.vhostUserProtocolFeatures),
                               protocolFeatures: VhostUserProtocolFeature.replyAck | VhostUserProtocolFeature.mq
                               | VhostUserProtocolFeature.resetDevice | VhostUserProtocolFeature.configureMemSlots)
        if let slots {
            let size = UInt64(Self.ramSize / slots)
            for i in 0..<UInt64(slots) {
                // u64 padding, then the region.
                let region = le64(0) + le64(i * size) + le64(size) + le64(Self.userBase + i * size) + le64(i * size)
                #expect(try frontend.acked(.addMemReg, payload: region, fds: [self.ram.fd]) == 0)
            }
        } else {
            try setMemTable(userBase: Self.userBase)
        }
    }

    func setMemTable(userBase: UInt64) throws {
        let region = VhostUserMemoryRegion(guestAddress: 0, size: UInt64(Self.ramSize), userAddress: userBase, mmapOffset: 0)
        #expect(try frontend.acked(.setMemTable, payload: memTable([region]), fds: [self.ram.fd]) == 0)
    }

    /// Lays out ring `index` (each ring in its own 1 MiB of RAM) and hands
    /// it to the back-end: size, base, addresses, call, kick, enable.
    @discardableResult
    func startRing(_ index: Int, size: UInt16 = 8) throws -> MockDriver {
        let start = UInt64(index) << 20
        let driver = try MockDriver(memory: ram.view, layout: layout, queueSize: size, features: features,
                                    ringBase: GuestAddress(start), arena: (start + 0x10000)..<(start + (1 << 20)))
        drivers[index] = driver
        let i = UInt32(index)
        #expect(try frontend.acked(.setVringNum, payload: vringState(i, UInt32(size))) == 0)
        // A fresh ring: packed cursors start at slot 0 with wrap counters 1
        // (what QEMU sends: avail | wrap << 15 | (used | wrap << 15) << 16).
        #expect(try frontend.acked(.setVringBase, payload: vringState(i, layout == .packed ? 0x8000_8000 : 0)) == 0)
        #expect(try frontend.acked(.setVringAddr, payload: vringAddr(
            i, desc: Self.userBase + driver.descriptorTable.rawValue, used: Self.userBase + driver.deviceArea.rawValue,
            avail: Self.userBase + driver.driverArea.rawValue)) == 0)
        try setCall(index, try EventFD(nonBlocking: true))
        try setKick(index, try EventFD(nonBlocking: true))
        #expect(try frontend.acked(.setVringEnable, payload: vringState(i, 1)) == 0)
        return driver
    }

    func setKick(_ index: Int, _ kick: EventFD) throws {
        kicks[index] = kick
        #expect(try frontend.acked(.setVringKick, payload: le64(UInt64(index)), fds: [kick.fd]) == 0)
    }

    func setCall(_ index: Int, _ call: EventFD) throws {
        calls[index] = call
        #expect(try frontend.acked(.setVringCall, payload: le64(UInt64(index)), fds: [call.fd]) == 0)
    }

    /// GET_VRING_BASE: stops the ring, returns its position.
    func stopRing(_ index: Int) throws -> UInt32? {
        try frontend.send(.getVringBase, payload: vringState(UInt32(index), 0))
        guard let r = try frontend.reply(), r.payload.count == 8, u32(r.payload, 0) == UInt32(index) else { return nil }
        return u32(r.payload, 4)
    }

    /// Posts `request` on ring `index` and kicks.
    func post(_ index: Int, _ request: [UInt8], replyCapacity: Int = 64) throws {
        try #require(drivers[index]).post(request: request, replyCapacity: replyCapacity)
        try #require(kicks[index]).signal()
    }

    /// Waits up to `milliseconds` for ring `index`'s call eventfd, then
    /// collects what the device completed.
    func completions(_ index: Int, milliseconds: Int32 = 5000) throws -> [MockCompletion] {
        let call = try #require(calls[index])
        guard try pollReadable([call.fd], timeoutMilliseconds: milliseconds) == [true] else { return [] }
        try call.drain()
        return try #require(drivers[index]).collect()
    }

    /// Posts, kicks, waits for the reply.
    func roundTrip(_ index: Int, _ request: [UInt8], replyCapacity: Int = 64) throws -> [UInt8]? {
        try post(index, request, replyCapacity: replyCapacity)
        return try completions(index).first?.reply
    }
}

@Suite struct VirtioDeviceBackendTests {
    /// GET_VRING_BASE stops one ring and answers its position in QEMU's
    /// encoding; SET_VRING_BASE with that value and a new kick fd restarts
    /// it there, and a request that waited on the stopped ring is served.
    @Test(arguments: RingLayout.allCases)
    func aRingStopsAndRestartsWhereItStopped(_ layout: RingLayout) throws {
        let device = ReversingDevice(queues: 2, queueSize: 8)
        let backend = VhostUserVirtioBackend(device: device, log: { _ in })
        _ = try withServer(backend) { f in
            let fe = try RingFrontend(f, layout: layout)
            #expect(device.state == .inactive)
            let driver = try fe.startRing(1, size: 8)
            #expect(device.state == .active && device.deviceQueues.runningQueues == [1])
            // Five 2-descriptor chains on an 8-slot ring: the packed cursors wrap.
            for i in 0..<5 { #expect(try fe.roundTrip(1, [1, UInt8(i)]) == [UInt8(i), 1]) }
            let base = try #require(try fe.stopRing(1))
            let (slot, wrap) = driver.usedCursor
            switch layout {
            case .split:
                #expect(base == 5, "split: the next avail index")
            case .packed:
                #expect(slot == 2 && !wrap, "10 slots used of 8: lap 2, wrap counter 0")
                let half = UInt32(slot) | (wrap ? 0x8000 : 0)
                #expect(base == half | half << 16, "packed: avail slot|wrap << 15, used slot|wrap << 15 in the high half")
            }
            #expect(device.state == .active && device.deviceQueues.runningQueues.isEmpty)
            // The stopped ring serves nothing.
            try fe.post(1, [7, 8, 9])
            #expect(try fe.completions(1, milliseconds: 100).isEmpty)
            #expect(try f.acked(.setVringBase, payload: vringState(1, base)) == 0)
            try fe.setKick(1, try EventFD(nonBlocking: true))
            #expect(try fe.completions(1).map(\.reply) == [[9, 8, 7]])
            #expect(try fe.roundTrip(1, [4, 5]) == [5, 4], "kicks now arrive on the new fd")
        }
    }

    /// SET_MEM_TABLE while a ring runs: the same RAM at another front-end
    /// address is a new mapping; the ring moves to it and keeps serving.
    @Test func aMemoryTableChangeWhileRunningKeepsTheRingServing() throws {
        let device = ReversingDevice(queues: 2)
        _ = try withServer(VhostUserVirtioBackend(device: device, log: { _ in })) { f in
            let fe = try RingFrontend(f, layout: .split)
            try fe.startRing(1)
            #expect(try fe.roundTrip(1, [1, 2]) == [2, 1])
            try fe.setMemTable(userBase: 0x7e00_0000_0000)
            #expect(device.deviceQueues.runningQueues == [1])
            #expect(try fe.roundTrip(1, [3, 4]) == [4, 3])
            #expect(try fe.roundTrip(1, [5, 6]) == [6, 5])
        }
    }

    /// Rings at the very start of a region that directly follows another
    /// (adjacent ADD_MEM_REG regions) work: that is not a region crossing.
    @Test(arguments: RingLayout.allCases)
    func ringsAtTheStartOfAnAdjacentRegionWork(_ layout: RingLayout) throws {
        let device = ReversingDevice(queues: 3)
        _ = try withServer(VhostUserVirtioBackend(device: device, log: { _ in })) { f in
            let fe = try RingFrontend(f, layout: layout, slots: 2)
            try fe.startRing(2)  // its descriptor table is the first byte of the second region (2 MiB)
            #expect(device.deviceQueues.runningQueues == [2])
            #expect(try fe.roundTrip(2, [1, 2, 3]) == [3, 2, 1])
        }
    }

    /// A front-end that shrinks its (unsealable) memory file under a running
    /// ring: the back-end's next ring access faults. The process survives,
    /// the ring stops, and the log says why.
    @Test func aShrunkMemoryFileStopsTheRingInsteadOfCrashing() throws {
        let device = ReversingDevice(queues: 2)
        let log = LogLines()
        _ = try withServer(VhostUserVirtioBackend(device: device, log: log.sink)) { f in
            // MemFD.create does not allow sealing: this file cannot be sealed.
            let fe = try RingFrontend(f, layout: .split)
            try fe.startRing(1)
            #expect(try fe.roundTrip(1, [1, 2]) == [2, 1])
            try fe.ram.fd.truncate(to: 0)
            // From here on the front-end's own view of the file would fault
            // too: only the kick.
            try #require(fe.kicks[1]).signal()
            for _ in 0..<500 where !log.all.contains(where: { $0.contains("shrank") }) { usleep(10_000) }
            #expect(log.all.contains(
                "vhost-user: queue 1 stopped: ring access: the front-end shrank the file behind guest memory region 0x0 under its mapping; the ring stays stopped until the front-end restarts or resets it"),
                "\(log.all)")
            #expect(device.deviceQueues.firstFailure == .memory(.truncated(region: GuestAddress(0))))
        }
    }

    /// A memory file that still allows sealing is sealed against shrinking
    /// when it is mapped, so the front-end cannot shrink it at all.
    @Test func aSealableMemoryFileIsSealedAgainstShrinking() throws {
        let raw = vfsvm_memfd_create("sealable-ram", UInt32(MFD_CLOEXEC | MFD_ALLOW_SEALING))
        try #require(raw >= 0)
        let fd = FileDescriptor(owning: raw)
        try fd.truncate(to: Int64(RingFrontend.ramSize))
        #expect(vfsvm_get_seals(fd.rawValue) & VFSVM_F_SEAL_SHRINK == 0)
        let device = ReversingDevice(queues: 2)
        _ = try withServer(VhostUserVirtioBackend(device: device, log: { _ in })) { f in
            let fe = try RingFrontend(f, layout: .packed, ram: try SharedRAM(fd: fd, size: RingFrontend.ramSize))
            #expect(vfsvm_get_seals(fd.rawValue) & VFSVM_F_SEAL_SHRINK != 0, "SET_MEM_TABLE added F_SEAL_SHRINK")
            #expect(throws: SystemError("ftruncate", .EPERM)) { try fd.truncate(to: 0) }
            try fe.startRing(1)
            #expect(try fe.roundTrip(1, [1, 2]) == [2, 1])
        }
    }

    /// RESET_DEVICE stops every ring and makes the device inactive.
    @Test func aResetStopsEveryRingAndDeactivatesTheDevice() throws {
        let device = ReversingDevice(queues: 2)
        _ = try withServer(VhostUserVirtioBackend(device: device, log: { _ in })) { f in
            let fe = try RingFrontend(f, layout: .packed)
            try fe.startRing(0)
            try fe.startRing(1)
            #expect(device.deviceQueues.runningQueues == [0, 1])
            #expect(try fe.roundTrip(0, [1, 2]) == [2, 1])
            #expect(try f.acked(.resetDevice) == 0)
            #expect(device.state == .inactive)
            try fe.post(1, [3])
            #expect(try fe.completions(1, milliseconds: 100).isEmpty)
        }
        #expect(device.state == .inactive)
    }

    /// SET_VRING_CALL on a running ring: interrupts move to the new fd.
    @Test func aNewCallFDTakesTheInterrupts() throws {
        let device = ReversingDevice(queues: 2)
        _ = try withServer(VhostUserVirtioBackend(device: device, log: { _ in })) { f in
            let fe = try RingFrontend(f, layout: .split)
            try fe.startRing(1)
            let first = try #require(fe.calls[1])
            #expect(try fe.roundTrip(1, [1, 2]) == [2, 1])
            try fe.setCall(1, try EventFD(nonBlocking: true))
            #expect(try fe.roundTrip(1, [3, 4]) == [4, 3])
            #expect(try first.drain() == 0, "the old call fd is not signalled any more")
        }
    }

    /// A ring the driver broke: the ring stops, the back-end says so in its
    /// log and on the ring's SET_VRING_ERR fd; the other ring keeps working.
    @Test func aBrokenRingIsLoggedAndSignalledOnItsErrorFD() throws {
        let device = ReversingDevice(queues: 2)
        let log = LogLines()
        _ = try withServer(VhostUserVirtioBackend(device: device, log: log.sink)) { f in
            let fe = try RingFrontend(f, layout: .split)
            let err = try EventFD(nonBlocking: true)
            #expect(try f.acked(.setVringErr, payload: le64(1), fds: [err.fd]) == 0)
            let driver = try fe.startRing(1)
            try fe.startRing(0)
            try driver.writeAvailIndex(driver.queueSize + 1)  // 2.7.6: more than a ring ahead
            try #require(fe.kicks[1]).signal()
            #expect(try pollReadable([err.fd], timeoutMilliseconds: 5000) == [true], "the error fd was signalled")
            #expect(log.all.contains { $0.hasPrefix("vhost-user: queue 1 stopped: avail idx jumped from 0 to 9") })
            #expect(try fe.roundTrip(0, [1, 2]) == [2, 1], "queue 0 still serves")
        }
    }

    /// The real virtio-fs device behind the back-end: FUSE INIT and a
    /// LOOKUP on the request queue, split and packed.
    @Test(arguments: RingLayout.allCases)
    func virtioFSAnswersFUSERequestsThroughTheBackend(_ layout: RingLayout) throws {
        var template = Array("/tmp/vfsvm-vu-fs-XXXXXX".utf8CString)
        let dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
        defer { _ = system("rm -rf '\(dir)'") }
        #expect(mkdir(dir + "/sub", 0o755) == 0)
        let server = FUSEServer(fileSystem: try PassthroughFileSystem(root: dir), options: FUSEServerOptions())
        let fs = try VirtioFSDevice(tag: "vufs", requestQueues: 1, queueSize: 16, server: server)
        let client = Client(server)
        _ = try withServer(VhostUserVirtioBackend(device: fs, log: { _ in })) { f in
            let fe = try RingFrontend(f, layout: layout, features: [.version1, .eventIndex, .indirectDescriptors])
            try fe.startRing(0, size: 16)
            try fe.startRing(1, size: 16)
            let initBody = Bytes().u32(7).u32(38).u32(128 << 10).u32(0).u32(0).zeros(44).b
            let initReply = try #require(try fe.roundTrip(1, client.header(FUSEOpcode.`init`.rawValue, node: 0,
                                                                           bodyLength: initBody.count) + initBody,
                                                          replyCapacity: 256))
            var d = Decoder(initReply)
            #expect(d.u32() == UInt32(initReply.count) && d.u32() == 0, "fuse_out_header: full length, no error")
            _ = d.u64()
            #expect(d.u32() == 7, "fuse_init_out.major")
            let name = Bytes().name("sub").b
            let lookup = try #require(try fe.roundTrip(1, client.header(FUSEOpcode.lookup.rawValue, node: 1,
                                                                        bodyLength: name.count) + name, replyCapacity: 256))
            d = Decoder(lookup, at: 4)
            #expect(d.u32() == 0, "LOOKUP succeeded")
            d = Decoder(lookup, at: 16 + 40 + 8 + 8 + 8 + 24 + 12)
            #expect(d.u32() & UInt32(Glibc.S_IFMT) == UInt32(Glibc.S_IFDIR), "fuse_attr.mode says directory")
            #expect(fs.fatalError == nil)
        }
        #expect(fs.state == .inactive, "the disconnect reset the device")
    }

    /// `vfsvm serve`'s virtio-fs device offers EVENT_IDX and, negotiated over
    /// vhost-user, honours the driver's event index on both layouts: no call
    /// for a completion before used_event (split) / the DESC off_wrap
    /// (packed), one once it is crossed; and with the ring drained the
    /// device asks to be kicked for the next request (avail_event).
    @Test(arguments: RingLayout.allCases)
    func virtioFSHonoursTheEventIndexThroughTheBackend(_ layout: RingLayout) throws {
        var template = Array("/tmp/vfsvm-vu-evidx-XXXXXX".utf8CString)
        let dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
        defer { _ = system("rm -rf '\(dir)'") }
        let server = FUSEServer(fileSystem: try PassthroughFileSystem(root: dir), options: FUSEServerOptions())
        let fs = try VirtioFSDevice(tag: "evidx", requestQueues: 1, queueSize: 16, server: server)
        #expect(fs.offeredFeatures.contains(.eventIndex))
        let client = Client(server)
        _ = try withServer(VhostUserVirtioBackend(device: fs, log: { _ in })) { f in
            let fe = try RingFrontend(f, layout: layout, features: [.version1, .eventIndex])
            try fe.startRing(0, size: 16)
            let driver = try fe.startRing(1, size: 16)
            let initBody = Bytes().u32(7).u32(38).u32(128 << 10).u32(0).u32(0).zeros(44).b
            let initRequest = client.header(FUSEOpcode.`init`.rawValue, node: 0, bodyLength: initBody.count) + initBody
            #expect(try fe.roundTrip(1, initRequest, replyCapacity: 256) != nil, "INIT answered, with a call")
            driver.autoUsedEvent = false
            // INIT used one element (split) / slots 0-1 (packed): the event
            // names the second GETATTR's completion, not the first's.
            if layout == .split {
                try driver.setUsedEvent(2)
            } else {
                try driver.setPackedDriverEvent(flags: 2, offset: 4, wrap: true)
            }
            let getattr = Bytes().u32(0).u32(0).u64(0).b
            func post() throws {
                try fe.post(1, client.header(FUSEOpcode.getattr.rawValue, node: 1, bodyLength: getattr.count) + getattr,
                            replyCapacity: 128)
            }
            /// Waits for one completion by watching the used ring, then
            /// says whether the call eventfd was signalled for it.
            func completeAndCalled() throws -> Bool {
                var done: [MockCompletion] = []
                for _ in 0..<500 where done.isEmpty {
                    done = try driver.collect()
                    if done.isEmpty { usleep(2000) }
                }
                #expect(done.count == 1, "the GETATTR was answered")
                #expect(done.first.map { $0.reply.count >= 16 && $0.reply[4] == 0 } == true, "without an error")
                let call = try #require(fe.calls[1])
                let signalled = try pollReadable([call.fd], timeoutMilliseconds: 50) == [true]
                if signalled { try call.drain() }
                return signalled
            }
            try post()
            #expect(try !completeAndCalled(), "no call before the event index")
            try post()
            #expect(try completeAndCalled(), "a call once the event index is crossed")
            // Drained: the device asks (avail_event) to be kicked for the next
            // request; the event index, not crossed again, still holds the call.
            try driver.post(request: client.header(FUSEOpcode.getattr.rawValue, node: 1, bodyLength: getattr.count) + getattr,
                            replyCapacity: 128)
            #expect(try driver.deviceWantsKick(), "the device wants a kick for a request posted after the drain")
            try #require(fe.kicks[1]).signal()
            #expect(try !completeAndCalled(), "no call: the event index lies behind")
            #expect(fs.fatalError == nil)
        }
    }
}
