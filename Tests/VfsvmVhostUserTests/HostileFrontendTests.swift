import CVfsvmLinux
import Glibc
import Synchronization
import Testing
import VfsvmMemory
import VfsvmSys
import VfsvmVhostUserTestSupport
import VfsvmVirtio
@testable import VfsvmVhostUser

/// One hostile or malformed exchange and the error the server must name
/// when it drops the connection.
struct HostileCase: Sendable, CustomTestStringConvertible {
    let name: String
    let expected: VhostUserError
    let send: @Sendable (MockFrontend) throws -> Void

    var testDescription: String { name }
}

private let ramSize = 0x10000

private func region(_ gpa: UInt64, _ size: UInt64, _ uaddr: UInt64, _ off: UInt64 = 0) -> VhostUserMemoryRegion {
    VhostUserMemoryRegion(guestAddress: gpa, size: size, userAddress: uaddr, mmapOffset: off)
}

private func sendMemTable(_ f: MockFrontend, _ regions: [VhostUserMemoryRegion], fdCount: Int? = nil) throws {
    let fd = try MemFD.create(name: "hostile-ram", size: ramSize)
    try f.send(.setMemTable, payload: memTable(regions), fds: Array(repeating: fd, count: fdCount ?? regions.count))
}

private func halfClose(_ f: MockFrontend) { _ = Glibc.shutdown(f.socket.rawValue, Int32(SHUT_WR)) }

private let hostileCases: [HostileCase] = [
    HostileCase(name: "protocol version 2", expected: .badVersion(flags: 0x2)) { f in
        try f.send(1, flags: 0x2)
    },
    HostileCase(name: "REPLY flag on a request", expected: .badFlags(request: 1, flags: 0x5)) { f in
        try f.send(1, flags: 0x5)
    },
    HostileCase(name: "unknown request", expected: .unknownRequest(99)) { f in
        try f.send(99, payload: le64(0))
    },
    HostileCase(name: "known but unsupported request", expected: .unsupportedRequest(.setLogBase)) { f in
        try f.send(.setLogBase, payload: le64(0) + le64(0))
    },
    HostileCase(name: "short SET_FEATURES payload", expected: .wrongPayloadSize(.setFeatures, expected: 8, got: 4)) { f in
        try f.send(.setFeatures, payload: le32(1))
    },
    HostileCase(name: "payload size beyond any request",
                expected: .payloadTooLarge(request: 2, size: 100_000)) { f in
        try f.send(2, payload: [], announcedSize: 100_000)
    },
    HostileCase(name: "nine fds", expected: .tooManyFDs(.setMemTable)) { f in
        try sendMemTable(f, [region(0, 0x1000, 0x1000)], fdCount: 9)
    },
    HostileCase(name: "fd on a request that takes none", expected: .wrongFDCount(.getFeatures, expected: 0, got: 1)) { f in
        try f.send(.getFeatures, fds: [try EventFD().fd])
    },
    HostileCase(name: "fewer fds than regions", expected: .wrongFDCount(.setMemTable, expected: 2, got: 1)) { f in
        try sendMemTable(f, [region(0, 0x1000, 0x1000), region(0x1000, 0x1000, 0x2000)], fdCount: 1)
    },
    HostileCase(name: "nine regions", expected: .payloadTooLarge(request: 5, size: 296)) { f in
        try f.send(.setMemTable, payload: le32(9) + le32(0) + [UInt8](repeating: 0, count: 9 * 32))
    },
    HostileCase(name: "region count above eight", expected: .badMemoryTable("9 regions (at most 8)")) { f in
        try f.send(.setMemTable, payload: le32(9) + le32(0) + [UInt8](repeating: 0, count: 32))
    },
    HostileCase(name: "mem table size disagrees with region count",
                expected: .wrongPayloadSize(.setMemTable, expected: 40, got: 72)) { f in
        let fd = try MemFD.create(name: "hostile-ram", size: ramSize)
        try f.send(.setMemTable, payload: le32(1) + le32(0) + [UInt8](repeating: 0, count: 64), fds: [fd])
    },
    HostileCase(name: "regions overlap in guest memory",
                expected: .badMemoryTable("regions 0 and 1 overlap in guest-physical memory")) { f in
        try sendMemTable(f, [region(0, 0x2000, 0x10000), region(0x1000, 0x1000, 0x20000)])
    },
    HostileCase(name: "regions overlap in the front-end's address space",
                expected: .badMemoryTable("regions 0 and 1 overlap in the front-end\'s address space")) { f in
        try sendMemTable(f, [region(0, 0x1000, 0x10000), region(0x4000, 0x1000, 0x10800)])
    },
    HostileCase(name: "empty region", expected: .badMemoryTable("region 0 is empty")) { f in
        try sendMemTable(f, [region(0, 0, 0x10000)])
    },
    HostileCase(name: "region wraps the guest address space",
                expected: .badMemoryTable("region 0 wraps the address space")) { f in
        try sendMemTable(f, [region(0xFFFF_FFFF_FFFF_F000, 0x2000, 0x10000)])
    },
    HostileCase(name: "region larger than its fd",
                expected: .badMemoryTable("region 0 needs 69632 bytes of its fd, which has 65536")) { f in
        try sendMemTable(f, [region(0, 0x10000, 0x10000, 0x1000)])
    },
    HostileCase(name: "memory fd that is not a file",
                expected: .badMemoryTable("region 0 fd is not a regular file or memfd")) { f in
        try f.send(.setMemTable, payload: memTable([region(0, 0x1000, 0x1000)]), fds: [try EventFD().fd])
    },
    HostileCase(name: "ADD_MEM_REG without CONFIGURE_MEM_SLOTS", expected: .unsupportedRequest(.addMemReg)) { f in
        try f.send(.addMemReg, payload: [UInt8](repeating: 0, count: 40), fds: [try MemFD.create(name: "r", size: 4096)])
    },
    HostileCase(name: "ADD_MEM_REG without its fd", expected: .wrongFDCount(.addMemReg, expected: 1, got: 0)) { f in
        try f.send(.setProtocolFeatures, payload: le64(VhostUserProtocolFeature.configureMemSlots))
        try f.send(.addMemReg, payload: le64(0) + le64(0) + le64(0x1000) + le64(0x1000) + le64(0))
    },
    HostileCase(name: "ADD_MEM_REG with a short payload", expected: .wrongPayloadSize(.addMemReg, expected: 40, got: 32)) { f in
        try f.send(.setProtocolFeatures, payload: le64(VhostUserProtocolFeature.configureMemSlots))
        try f.send(.addMemReg, payload: le64(0) + le64(0x1000) + le64(0x1000) + le64(0), fds: [try MemFD.create(name: "r", size: 4096)])
    },
    HostileCase(name: "queue index out of range", expected: .badQueueIndex(.setVringNum, index: 2)) { f in
        try f.send(.setVringNum, payload: vringState(2, 256))
    },
    HostileCase(name: "kick for queue 255", expected: .badQueueIndex(.setVringKick, index: 255)) { f in
        try f.send(.setVringKick, payload: le64(255), fds: [try EventFD().fd])
    },
    HostileCase(name: "split queue size not a power of two",
                expected: .badQueueSize(index: 0, size: 100, max: 1024)) { f in
        try f.send(.setVringNum, payload: vringState(0, 100))
    },
    HostileCase(name: "queue size zero", expected: .badQueueSize(index: 0, size: 0, max: 1024)) { f in
        try f.send(.setVringNum, payload: vringState(0, 0))
    },
    HostileCase(name: "queue size above the maximum", expected: .badQueueSize(index: 0, size: 2048, max: 1024)) { f in
        try f.send(.setVringNum, payload: vringState(0, 2048))
    },
    HostileCase(name: "split ring base above 16 bits", expected: .badVringBase(index: 0, base: 0x1_0000)) { f in
        try f.send(.setVringBase, payload: vringState(0, 0x1_0000))
    },
    HostileCase(name: "ring addresses before the memory table", expected: .noMemoryTable(.setVringAddr)) { f in
        try f.send(.setVringAddr, payload: vringAddr(0, desc: 0x1000, used: 0x2000, avail: 0x3000))
    },
    HostileCase(name: "ring address outside every region",
                expected: .untranslatable(index: 0, what: "device (used)", userAddress: 0x20000)) { f in
        try sendMemTable(f, [region(0, 0x10000, 0x10000)])
        try f.send(.setVringAddr, payload: vringAddr(0, desc: 0x10000, used: 0x20000, avail: 0x1ffff))
    },
    HostileCase(name: "dirty-log flag on ring addresses", expected: .badVringFlags(index: 0, flags: 1)) { f in
        try sendMemTable(f, [region(0, 0x10000, 0x10000)])
        try f.send(.setVringAddr, payload: vringAddr(0, flags: 1, desc: 0x10000, used: 0x10000, avail: 0x10000))
    },
    HostileCase(name: "kick without fd asks for polling", expected: .badVringFDFlags(.setVringKick, value: 0x100)) { f in
        try f.send(.setVringKick, payload: le64(0x100))
    },
    HostileCase(name: "reserved bits in a call payload",
                expected: .badVringFDFlags(.setVringCall, value: 0x1_0000)) { f in
        try f.send(.setVringCall, payload: le64(0x1_0000), fds: [try EventFD().fd])
    },
    // Ring fds must be eventfds: a pipe kick with no writer (or a regular
    // file) is always readable and would spin the queue thread; a pipe as
    // the call fd would block it once full.
    HostileCase(name: "a pipe as the kick fd", expected: .notAnEventFD(.setVringKick, index: 0, passed: "a pipe")) { f in
        let pipe = try makePipe()
        try f.send(.setVringKick, payload: le64(0), fds: [pipe.read])
    },
    HostileCase(name: "a regular file as the kick fd",
                expected: .notAnEventFD(.setVringKick, index: 1, passed: "a regular file")) { f in
        try f.send(.setVringKick, payload: le64(1), fds: [try FileDescriptor.open("/etc/hostname", O_RDONLY)])
    },
    HostileCase(name: "a pipe as the call fd", expected: .notAnEventFD(.setVringCall, index: 0, passed: "a pipe")) { f in
        let pipe = try makePipe()
        try f.send(.setVringCall, payload: le64(0), fds: [pipe.write])
    },
    HostileCase(name: "a socket as the error fd", expected: .notAnEventFD(.setVringErr, index: 0, passed: "a socket")) { f in
        let (a, _) = try UnixSocket.pair()
        try f.send(.setVringErr, payload: le64(0), fds: [a])
    },
    HostileCase(name: "an epoll fd as the kick fd",
                expected: .notAnEventFD(.setVringKick, index: 0, passed: "an anonymous-inode file that is not an eventfd (a timerfd, epoll or signalfd refuses an eventfd write: write: Invalid argument (errno 22))")) { f in
        let epoll = FileDescriptor(owning: epoll_create1(Int32(EPOLL_CLOEXEC)))
        try f.send(.setVringKick, payload: le64(0), fds: [epoll])
    },
    HostileCase(name: "kick with its fd missing", expected: .wrongFDCount(.setVringKick, expected: 1, got: 0)) { f in
        try f.send(.setVringKick, payload: le64(0))
    },
    HostileCase(name: "unoffered protocol feature",
                expected: .unsupportedProtocolFeatures(offered: 0xa209, requested: 1 << 16)) { f in
        try f.send(.setProtocolFeatures, payload: le64(1 << 16))
    },
    HostileCase(name: "GET_CONFIG without the CONFIG protocol feature", expected: .unsupportedRequest(.getConfig)) { f in
        try f.send(.getConfig, payload: le32(0) + le32(4) + le32(0) + le32(0))
    },
    HostileCase(name: "RESET_DEVICE without its protocol feature", expected: .unsupportedRequest(.resetDevice)) { f in
        try f.send(.resetDevice)
    },
    HostileCase(name: "SET_VRING_ENABLE with value 2", expected: .badEnable(index: 0, value: 2)) { f in
        try f.send(.setFeatures, payload: le64(1 << 30))
        try f.send(.setVringEnable, payload: vringState(0, 2))
    },
    HostileCase(name: "connection closed inside a header",
                expected: .truncatedMessage("connection closed inside a header")) { f in
        try f.socket.send([1, 0, 0, 0, 1, 0])
        halfClose(f)
    },
    HostileCase(name: "connection closed inside a payload",
                expected: .system(SystemError("read: connection closed after 4 of 8 bytes", .EPROTO))) { f in
        try f.send(2, payload: le32(1), announcedSize: 8)
        halfClose(f)
    },
]

@Suite struct HostileFrontendTests {
    @Test(arguments: hostileCases)
    func malformedMessageDropsTheConnectionCleanly(_ c: HostileCase) throws {
        let device = RecordingDevice()
        let end = try withServer(device) { f in
            try c.send(f)
            #expect(try f.sawDisconnect(), "the server closes the connection")
        }
        #expect(end == .protocolError(c.expected))
        #expect(device.calls == [.reset], "the device is reset exactly once and nothing else ran")
    }

    @Test(.timeLimit(.minutes(1)))
    func stopCutsAFrontendThatStallsInsideAMessage() throws {
        let device = RecordingDevice()
        let (ours, theirs) = try UnixSocket.pair()
        let server = try VhostUserBackendServer(device: device, listener: nil, log: { _ in })
        let result = Mutex<VhostUserBackendServer.Disconnect?>(nil)
        let thread = try OSThread { let end = server.serve(connection: theirs); result.withLock { $0 = end } }
        let f = MockFrontend(socket: ours)
        // A GET_QUEUE_NUM round trip shows the server is in its loop; then a
        // header announcing 8 payload bytes that never come.
        #expect(try f.getU64(.getQueueNum) == 2)
        try f.send(2, payload: [], announcedSize: 8)
        usleep(50_000)
        server.stop()
        thread.join()
        #expect(result.withLock { $0 } == .stopped)
        #expect(device.calls == [.reset])
        #expect(try f.sawDisconnect())
    }

    @Test func failureIsAckedBeforeTheDisconnectWhenAsked() throws {
        let device = RecordingDevice()
        let end = try withServer(device) { (f: MockFrontend) throws in
            #expect(try f.acked(.setProtocolFeatures, payload: le64(VhostUserProtocolFeature.replyAck)) == 0)
            #expect(try f.acked(.setVringNum, payload: vringState(7, 256)) == 1)
            #expect(try f.sawDisconnect())
        }
        #expect(end == .protocolError(.badQueueIndex(.setVringNum, index: 7)))
    }
}

@Suite struct ListeningServerTests {
    private static func socketPath(_ tag: String) -> String {
        "/tmp/vfsvm-vhost-test-\(getpid())-\(tag).sock"
    }

    @Test func secondFrontendIsServedAfterAHostileOne() throws {
        let path = Self.socketPath("second")
        defer { unlink(path) }
        // A stale socket file from an earlier run is replaced.
        _ = try UnixSocket.listen(path: path)
        let device = RecordingDevice()
        let server = try VhostUserBackendServer(device: device, socketPath: path, log: { _ in })
        let thread = try OSThread { _ = try? server.run(.untilStopped) }
        defer {
            server.stop()
            thread.join()
        }

        let hostile = MockFrontend(socket: try UnixSocket.connect(path: path))
        try hostile.send(0xdead_beef, payload: [])
        #expect(try hostile.sawDisconnect())

        let good = MockFrontend(socket: try UnixSocket.connect(path: path))
        #expect(try good.getU64(.getQueueNum) == 2)
        #expect(try good.acked(.setProtocolFeatures, payload: le64(VhostUserProtocolFeature.replyAck)) == 0)
        good.close()
        // The server has noticed the close once a third connection is served.
        let third = MockFrontend(socket: try UnixSocket.connect(path: path))
        #expect(try third.getU64(.getQueueNum) == 2)
        #expect(device.calls == [.reset, .reset])
    }

    @Test func oneConnectionPolicyReturnsWhenTheFrontendLeaves() throws {
        let path = Self.socketPath("once")
        defer { unlink(path) }
        let device = RecordingDevice()
        let server = try VhostUserBackendServer(device: device, socketPath: path, log: { _ in })
        let result = Mutex<VhostUserBackendServer.Disconnect?>(nil)
        let thread = try OSThread {
            let end = try? server.run(.oneConnection)
            result.withLock { $0 = end }
        }
        let frontend = MockFrontend(socket: try UnixSocket.connect(path: path))
        #expect(try frontend.getU64(.getQueueNum) == 2)
        frontend.close()
        thread.join()
        #expect(result.withLock { $0 } == .peerClosed)
        #expect(device.calls == [.reset])
    }

    @Test func regularFileAtTheSocketPathIsNotReplaced() throws {
        let path = Self.socketPath("file")
        defer { unlink(path) }
        let fd = try FileDescriptor.open(path, O_CREAT | O_WRONLY, mode: 0o600)
        try fd.writeAll(Array("keep".utf8))
        #expect(throws: VhostUserError.system(SystemError("bind(\(path)): not a socket", .EEXIST))) {
            _ = try VhostUserBackendServer(device: RecordingDevice(), socketPath: path, log: { _ in })
        }
        #expect(try FileDescriptor.open(path, O_RDONLY).readExactly(4) == Array("keep".utf8))
    }

    @Test func inheritedFDMustBeAListeningSocket() throws {
        let path = Self.socketPath("inherited")
        defer { unlink(path) }
        let listener = try UnixSocket.listen(path: path)
        let server = try VhostUserBackendServer(device: RecordingDevice(), inheritedFD: dup(listener.rawValue),
                                                log: { _ in })
        _ = server
        let notListening = try EventFD()
        #expect(throws: VhostUserError.self) {
            _ = try VhostUserBackendServer(device: RecordingDevice(), inheritedFD: dup(notListening.fd.rawValue),
                                           log: { _ in })
        }
    }
}

@Suite struct FDOwnershipTests {
    /// Sends the write end of a new pipe with `request` and keeps only the
    /// read end: once the server drops its copy, the read end sees EOF.
    private func sendPipe(_ f: MockFrontend, _ request: VhostUserRequest, payload: [UInt8], ack: Bool) throws -> FileDescriptor {
        let pipe = try makePipe()
        if ack {
            #expect(try f.acked(request, payload: payload, fds: [pipe.write]) == 0)
        } else {
            try f.send(request, payload: payload, fds: [pipe.write])
        }
        return pipe.read
    }

    private func sawEOF(_ readEnd: FileDescriptor) throws -> Bool {
        guard try pollReadable([readEnd], timeoutMilliseconds: 2000) == [true] else { return false }
        return try readEnd.readSome(limit: 1).isEmpty
    }

    @Test func fdsOfARefusedMessageAreClosed() throws {
        var readEnd: FileDescriptor?
        _ = try withServer(RecordingDevice()) { f in
            readEnd = try sendPipe(f, .setVringCall, payload: le64(200), ack: false)
            #expect(try f.sawDisconnect())
        }
        #expect(try sawEOF(try #require(readEnd)))
    }

    /// The fds of this process that are eventfds (/proc/self/fd links).
    private func eventFDCount() -> Int {
        guard let dir = opendir("/proc/self/fd") else { return -1 }
        defer { closedir(dir) }
        var count = 0
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            var target = [CChar](repeating: 0, count: 256)
            let n = readlink("/proc/self/fd/" + name, &target, target.count - 1)
            if n > 0, String(decoding: target[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) == "anon_inode:[eventfd]" {
                count += 1
            }
        }
        return count
    }

    @Test func ringFdsAreClosedWhenTheFrontendLeaves() throws {
        let device = RecordingDevice()
        let ram = try SharedRAM(size: 0x10000)
        let call = try EventFD(), kick = try EventFD(), err = try EventFD()
        let before = eventFDCount()
        var during = 0
        _ = try withServer(device) { f in
            try f.negotiate(features: [.version1, .vhostUserProtocolFeatures])
            #expect(try f.acked(.setMemTable, payload: memTable([VhostUserMemoryRegion(
                guestAddress: 0, size: 0x10000, userAddress: 0x4000_0000, mmapOffset: 0)]), fds: [ram.fd]) == 0)
            #expect(try f.acked(.setVringNum, payload: vringState(0, 16)) == 0)
            #expect(try f.acked(.setVringBase, payload: vringState(0, 0)) == 0)
            #expect(try f.acked(.setVringAddr, payload: vringAddr(0, desc: 0x4000_0000, used: 0x4000_2000,
                                                                  avail: 0x4000_1000)) == 0)
            #expect(try f.acked(.setVringCall, payload: le64(0), fds: [call.fd]) == 0)
            #expect(try f.acked(.setVringErr, payload: le64(0), fds: [err.fd]) == 0)
            #expect(try f.acked(.setVringKick, payload: le64(0), fds: [kick.fd]) == 0)
            #expect(try f.acked(.setVringEnable, payload: vringState(0, 1)) == 0)
            #expect(device.started(0) != nil)
            during = eventFDCount()
            // Adopted ring fds are made non-blocking (the flag is on the
            // shared open file, so the front-end's copy shows it).
            for fd in [call.fd, kick.fd, err.fd] {
                #expect(fcntl(fd.rawValue, F_GETFL) & O_NONBLOCK != 0)
            }
        }
        #expect(device.calls.last == .reset)
        #expect(during >= before + 3, "the server held its copies of the three eventfds")
        #expect(eventFDCount() == before, "and closed them when the front-end left")
    }
}
