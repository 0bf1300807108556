import VfsvmFUSETestSupport
import Glibc
import Synchronization
import Testing
import VfsvmFUSE
import VfsvmMemory
import VfsvmSys

/// A request buffer that another vCPU rewrites while the device reads it:
/// it shows `first` the first time its pieces are read and `then` ever
/// after, and counts the reads.
final class RewrittenRequest: ScatterGatherList, @unchecked Sendable {
    // @unchecked: the count is behind a Mutex; the buffers never change.
    let first: HostBuffer
    let then: HostBuffer
    let reads = Mutex(0)

    init(first: [UInt8], then: [UInt8]) {
        precondition(first.count == then.count)
        self.first = HostBuffer(first)
        self.then = HostBuffer(then)
    }

    var segments: [HostSegment] {
        let n = reads.withLock { n in defer { n += 1 }; return n }
        return n == 0 ? first.segments : then.segments
    }

    var byteCount: Int { first.byteCount }
    var readCount: Int { reads.withLock { $0 } }
}

@Suite struct DecoderTests {
    private func server(_ fs: MockFS = MockFS()) -> Client {
        let c = Client(FUSEServer(fileSystem: fs, options: FUSEServerOptions()))
        c.initSession()
        return c
    }

    /// The attack of issue 8: the "waits for a lock" check read the opcode
    /// from guest memory and the handler read the header again, so a second
    /// vCPU could turn a request that looked harmless into a SETLKW that
    /// then ran inline and stalled the queue. Now the request is read once
    /// and both decisions come from that copy.
    @Test func theOpcodeIsReadOnceForTheWaitDecisionAndTheRun() {
        let c = server()
        let name = Bytes(); name.name("f").zeros(48 - 2)
        let lookup = c.header(FUSEOpcode.lookup.rawValue, node: 1, bodyLength: 48) + name.b
        let lk = Bytes(); lk.u64(1).u64(2).u64(0).u64(0).u32(UInt32(F_WRLCK)).u32(1).u32(0).u32(0)
        let setlkw = c.header(FUSEOpcode.setlkw.rawValue, node: 1, bodyLength: 48) + lk.b
        let request = RewrittenRequest(first: lookup, then: setlkw)
        let reply = HostBuffer(count: 4096)
        let handling = c.server.handle(request: request, reply: reply) { _ in Issue.record("nothing may be deferred") }
        #expect(handling == .replied(144), "the LOOKUP that was read is what ran")
        #expect(request.readCount == 1, "the request's bytes were read once")
        #expect(c.server.lockWaiters == 0)

        // The other way round: what was read as a SETLKW waits on its own
        // thread even if the buffer says LOOKUP afterwards.
        let flipped = RewrittenRequest(first: setlkw, then: lookup)
        final class Done: Sendable { let reply = Mutex<[UInt8]?>(nil) }
        let done = Done()
        #expect(c.server.handle(request: flipped, reply: reply) { bytes in done.reply.withLock { $0 = bytes } } == .deferred)
        var tries = 0
        while done.reply.withLock({ $0 == nil }), tries < 500 { usleep(10_000); tries += 1 }
        var d = Decoder(done.reply.withLock { $0 } ?? [])
        #expect(d.u32() == 16)
        #expect(-Int32(bitPattern: d.u32()) == ENOSYS, "MockFS has no locks: the SETLKW reached it")
        #expect(flipped.readCount == 1)
    }

    /// A WRITE's control bytes are read once; its payload is read where it
    /// lies, by the file system.
    @Test func writePayloadStaysInTheRequest() {
        let c = server()
        let data = [UInt8](repeating: 0x5a, count: 3000)
        let b = Bytes(); b.u64(1).u64(0).u32(UInt32(data.count)).u32(0).u64(0).u32(0).u32(0).raw(data)
        let raw = c.header(FUSEOpcode.write.rawValue, node: 2, bodyLength: b.b.count) + b.b
        let request = RewrittenRequest(first: raw, then: raw)
        _ = c.server.handle(request: request, reply: HostBuffer(count: 4096))
        #expect(request.readCount == 1, "MockFS does not read the payload; the header and fuse_write_in were read once")
    }

    /// Arguments longer than the stack buffer (a SETXATTR value) are
    /// decoded from one heap copy, still reading each byte of the request
    /// once: the first 640 bytes, then the rest. (The second read sees the
    /// header zeroed; had it been read again, the request would fail.)
    @Test func longArgumentsAreReadOnceToo() {
        let fs = MockFS()
        let c = server(fs)
        let value = (0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let b = Bytes(); b.u32(UInt32(value.count)).u32(0).u32(0).u32(0).name("user.big").raw(value)
        let raw = c.header(FUSEOpcode.setxattr.rawValue, node: 2, bodyLength: b.b.count) + b.b
        let request = RewrittenRequest(first: raw, then: [UInt8](repeating: 0, count: 640) + raw[640...])
        let reply = HostBuffer(count: 4096)
        #expect(c.server.handle(request: request, reply: reply) == 16)
        #expect(request.readCount == 2, "the first 640 bytes, then the rest")
        let same = fs.lastXattrValue.withLock { $0 } == value
        #expect(same, "the value arrived whole")
    }

    /// The header and the context handed to every FileSystem call are
    /// plain words: copying them in code that is not specialised is a
    /// memcpy, not a value witness call with retains (a security label in
    /// the context once cost every GETATTR ~365 instructions that way).
    @Test func theRequestContextAndHeaderAreTriviallyCopyable() {
        #expect(_isPOD(FUSERequestContext.self))
        #expect(_isPOD(FUSEInHeader.self))
    }

    @Test func decodedRequestCarriesTheHeaderAndArguments() {
        let c = Client(FUSEServer(fileSystem: MockFS(), options: FUSEServerOptions()))
        c.uid = 1000
        c.gid = 100
        let b = Bytes(); b.u32(0o40755).u32(0o22).name("dir")
        let r = FUSERequestDecoder().decode(HostBuffer(c.header(FUSEOpcode.mkdir.rawValue, node: 5, bodyLength: b.b.count) + b.b))
        #expect(r.opcode == .mkdir)
        #expect(r.header.nodeID == 5 && r.header.uid == 1000 && r.header.gid == 100 && r.header.pid == 4242)
        #expect(r.header.unique == c.unique)
        guard case let .mkdir(name, mode, umask, label) = r.operation else {
            Issue.record("decoded as \(r.operation)")
            return
        }
        #expect(name == Array("dir".utf8) && mode == 0o40755 && umask == 0o22 && label == nil)
        // A name with '/' is malformed, with the header still there for the reply.
        let bad = Bytes(); bad.u32(0o755).u32(0).name("a/b")
        let m = FUSERequestDecoder().decode(HostBuffer(c.header(FUSEOpcode.mkdir.rawValue, node: 5, bodyLength: bad.b.count) + bad.b))
        guard case let .malformed(e) = m.operation else {
            Issue.record("decoded as \(m.operation)")
            return
        }
        #expect(e.errno == .EINVAL && m.header.unique == c.unique && m.opcode == .mkdir)
    }
}
