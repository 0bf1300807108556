import VfsvmTestSupport
import VfsvmFUSETestSupport
import Glibc
import Synchronization
import Testing
import CVfsvmLinux
import VfsvmFUSE
import VfsvmMemory
import VfsvmSys

/// A file system that records what reached it.
final class MockFS: FileSystem {
    let log = Mutex<[String]>([])
    let lastSetattr = Mutex<FUSESetAttributes?>(nil)
    let lastXattrValue = Mutex<[UInt8]>([])
    let xattrReply = Mutex<FUSEXattrReply>(.data(Array("value".utf8)))
    let supported: UInt64

    init(supported: UInt64 = UInt64.max) { self.supported = supported }

    var supportedInitFlags: UInt64 { supported }
    func record(_ s: String) { log.withLock { $0.append(s) } }
    var calls: [String] { log.withLock { $0 } }

    func destroy() { record("destroy") }
    func forget(nodeID: UInt64, count: UInt64) { record("forget \(nodeID) \(count)") }

    func lookup(_ ctx: FUSERequestContext, parent: UInt64, name: [UInt8]) throws(FUSEErrno) -> FUSEEntry {
        record("lookup \(parent) \(String(decoding: name, as: UTF8.self)) uid=\(ctx.uid)")
        guard name != Array("missing".utf8) else { throw FUSEErrno(.ENOENT) }
        var a = FUSEAttributes(); a.ino = 77; a.mode = 0o100644; a.size = 1234
        return FUSEEntry(nodeID: 42, generation: 3, entryTimeout: FUSETimeout(seconds: 5, nanoseconds: 6), attrTimeout: FUSETimeout(seconds: 7), attributes: a)
    }

    func getattr(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64?) throws(FUSEErrno) -> (FUSEAttributes, FUSETimeout) {
        record("getattr \(node) \(handle.map(String.init) ?? "nil")")
        var a = FUSEAttributes(); a.ino = node; a.size = 99
        return (a, FUSETimeout(seconds: 1))
    }

    func setattr(_ ctx: FUSERequestContext, node: UInt64, _ change: FUSESetAttributes) throws(FUSEErrno) -> (FUSEAttributes, FUSETimeout) {
        lastSetattr.withLock { $0 = change }
        return (FUSEAttributes(), .zero)
    }

    func setxattr(_ ctx: FUSERequestContext, node: UInt64, name: [UInt8], value: [UInt8], flags: UInt32) throws(FUSEErrno) {
        record("setxattr \(String(decoding: name, as: UTF8.self)) flags=\(flags)")
        lastXattrValue.withLock { $0 = value }
    }

    func getxattr(_ ctx: FUSERequestContext, node: UInt64, name: [UInt8], size: Int) throws(FUSEErrno) -> FUSEXattrReply {
        size == 0 ? .size(5) : xattrReply.withLock { $0 }
    }

    func readdir(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, offset: UInt64, into buffer: inout FUSEDirectoryBuffer) throws(FUSEErrno) {
        var i = offset
        while i < 1000, buffer.add(name: Array("entry\(i)".utf8), ino: i + 10, type: 8, nextOffset: i + 1) { i += 1 }
    }

    func read(_ ctx: FUSERequestContext, node: UInt64, handle: UInt64, offset: UInt64, size: Int, into reply: some ScatterGatherList, at replyOffset: Int) throws(FUSEErrno) -> Int {
        let data = [UInt8](repeating: 0xAB, count: size)
        return data.withUnsafeBytes { reply.copy($0, to: replyOffset) }
    }
}

private func server(_ fs: MockFS = MockFS(), _ options: FUSEServerOptions = FUSEServerOptions()) -> (Client, MockFS) {
    (Client(FUSEServer(fileSystem: fs, options: options)), fs)
}

@Suite struct WireLayoutTests {
    @Test func structSizesMatchLinuxFuseH() {
        #expect(MemoryLayout<fuse_in_header>.size == FUSEWireSize.inHeader)
        #expect(MemoryLayout<fuse_out_header>.size == FUSEWireSize.outHeader)
        #expect(MemoryLayout<fuse_attr>.size == FUSEWireSize.attr)
        #expect(MemoryLayout<fuse_entry_out>.size == FUSEWireSize.entryOut)
        #expect(MemoryLayout<fuse_attr_out>.size == FUSEWireSize.attrOut)
        #expect(MemoryLayout<fuse_open_out>.size == FUSEWireSize.openOut)
        #expect(MemoryLayout<fuse_init_out>.size == FUSEWireSize.initOut)
        #expect(MemoryLayout<fuse_kstatfs>.size == FUSEWireSize.kstatfs)
        #expect(MemoryLayout<fuse_write_out>.size == FUSEWireSize.writeOut)
        #expect(MemoryLayout<fuse_lk_out>.size == FUSEWireSize.lkOut)
        #expect(MemoryLayout<fuse_dirent>.size == FUSEWireSize.direntHeader)
        #expect(MemoryLayout<fuse_setattr_in>.size == 88)
        #expect(MemoryLayout<fuse_read_in>.size == 40)
        #expect(MemoryLayout<fuse_write_in>.size == 40)
        #expect(MemoryLayout<fuse_lk_in>.size == 48)
        #expect(MemoryLayout<fuse_create_in>.size == 16)
        #expect(MemoryLayout<fuse_copy_file_range_in>.size == 56)
    }

    @Test func opcodesMatchLinuxFuseH() {
        #expect(FUSEOpcode.lookup.rawValue == FUSE_LOOKUP.rawValue)
        #expect(FUSEOpcode.`init`.rawValue == FUSE_INIT.rawValue)
        #expect(FUSEOpcode.readdirplus.rawValue == FUSE_READDIRPLUS.rawValue)
        #expect(FUSEOpcode.batchForget.rawValue == FUSE_BATCH_FORGET.rawValue)
        #expect(FUSEOpcode.copyFileRange.rawValue == FUSE_COPY_FILE_RANGE.rawValue)
        #expect(FUSEOpcode.syncfs.rawValue == FUSE_SYNCFS.rawValue)
        #expect(FUSEOpcode.tmpfile.rawValue == FUSE_TMPFILE.rawValue)
        #expect(FUSEOpcode.rename2.rawValue == FUSE_RENAME2.rawValue)
    }

    @Test func initFlagsMatchLinuxFuseH() {
        #expect(FUSEInitFlag.asyncRead == UInt64(FUSE_ASYNC_READ))
        #expect(FUSEInitFlag.posixLocks == UInt64(FUSE_POSIX_LOCKS))
        #expect(FUSEInitFlag.dontMask == UInt64(FUSE_DONT_MASK))
        #expect(FUSEInitFlag.flockLocks == UInt64(FUSE_FLOCK_LOCKS))
        #expect(FUSEInitFlag.doReaddirplus == UInt64(FUSE_DO_READDIRPLUS))
        #expect(FUSEInitFlag.writebackCache == UInt64(FUSE_WRITEBACK_CACHE))
        #expect(FUSEInitFlag.parallelDirops == UInt64(FUSE_PARALLEL_DIROPS))
        #expect(FUSEInitFlag.maxPages == UInt64(FUSE_MAX_PAGES))
        #expect(FUSEInitFlag.cacheSymlinks == UInt64(FUSE_CACHE_SYMLINKS))
        #expect(FUSEInitFlag.handleKillprivV2 == UInt64(FUSE_HANDLE_KILLPRIV_V2))
        #expect(FUSEInitFlag.setxattrExt == UInt64(FUSE_SETXATTR_EXT))
        #expect(FUSEInitFlag.initExt == UInt64(FUSE_INIT_EXT))
    }
}

@Suite struct InitTests {
    @Test func negotiatesVersionFlagsAndLimits() {
        let (c, _) = server()
        let r = c.initSession(minor: 38, flags: UInt32(FUSE_ASYNC_READ | FUSE_POSIX_LOCKS | FUSE_DO_READDIRPLUS | FUSE_MAX_PAGES | FUSE_WRITEBACK_CACHE))
        #expect(r.ok && r.body.count == 64)
        var d = Decoder(r.body)
        #expect(d.u32() == 7 && d.u32() == 38)
        #expect(d.u32() == 128 * 1024)  // max_readahead echoed
        let flags = UInt64(d.u32())
        #expect(flags & FUSEInitFlag.asyncRead != 0)
        #expect(flags & FUSEInitFlag.posixLocks != 0)
        #expect(flags & FUSEInitFlag.doReaddirplus != 0)
        #expect(flags & FUSEInitFlag.writebackCache == 0)  // option off
        #expect(flags & FUSEInitFlag.flockLocks == 0)  // client did not offer it
        d.skip(4)
        #expect(d.u32() == 1 << 20)  // max_write
        #expect(d.u32() == 1)  // time_gran
        var d2 = Decoder(r.body, at: 28)
        #expect(d2.u32() & 0xffff == 256)  // max_pages
        #expect(c.server.currentSession?.minor == 38)
    }

    @Test func newerMinorGetsOursOlderGetsTheirs() {
        let (c1, _) = server()
        var d = Decoder(c1.initSession(minor: 41).body)
        #expect(d.u32() == 7 && d.u32() == 38)
        let (c2, _) = server()
        var d2 = Decoder(c2.initSession(minor: 31).body)
        #expect(d2.u32() == 7 && d2.u32() == 31)
    }

    @Test func tooOldOrWrongMajorIsRefused() {
        let (c, _) = server()
        #expect(c.initSession(minor: 26).errno == EPROTO)
        let b = Bytes(); b.u32(6).u32(40).u32(0).u32(0).zeros(48)
        #expect(c.call(.`init`, node: 0, b).errno == EPROTO)
        // A newer major gets our version and no session, so it can retry.
        let b8 = Bytes(); b8.u32(8).u32(0).u32(0).u32(0).zeros(48)
        let r8 = c.call(.`init`, node: 0, b8)
        var d = Decoder(r8.body)
        #expect(r8.ok && d.u32() == 7 && d.u32() == 38)
        #expect(c.server.currentSession == nil)
        #expect(c.initSession().ok)
        #expect(c.initSession().ok)  // a second INIT restarts the session (SessionRestartTests)
        // A short INIT body.
        let (c2, _) = server()
        let s = Bytes(); s.u32(7).u32(38)
        #expect(c2.call(.`init`, node: 0, s).errno == EINVAL)
    }

    @Test func initExtCarriesFlags2AndOptionsGateFlags() {
        let (c, _) = server(MockFS(), FUSEServerOptions(writeback: true, locks: false))
        let r = c.initSession(minor: 38, flags: 0xffff_ffff, flags2: 0xffff_ffff)
        var d = Decoder(r.body, at: 12)
        let flags = UInt64(d.u32())
        #expect(flags & FUSEInitFlag.writebackCache != 0)
        #expect(flags & FUSEInitFlag.posixLocks == 0 && flags & FUSEInitFlag.flockLocks == 0)
        #expect(flags & FUSEInitFlag.initExt != 0)
        var d2 = Decoder(r.body, at: 32)
        #expect(d2.u32() == 0)  // we want nothing from flags2 (no SECURITY_CTX, DAX, ...)
        // The file system's supported flags limit the offer.
        let (c3, _) = server(MockFS(supported: FUSEInitFlag.asyncRead))
        var d3 = Decoder(c3.initSession().body, at: 12)
        #expect(UInt64(d3.u32()) & ~FUSEInitFlag.initExt == FUSEInitFlag.asyncRead)
    }

    @Test func fuseOverIOURingIsOfferedOnlyWhenTheRingsExist() {
        // flags2 bit 9 (FUSE_OVER_IO_URING, 1 << 41): a host mount with its
        // rings made asks for it; otherwise (virtio-fs, -o no_uring) never,
        // since once agreed the kernel holds requests until rings register.
        var options = FUSEServerOptions()
        options.overIOURing = true
        let (on, _) = server(MockFS(), options)
        var d = Decoder(on.initSession(minor: 38, flags: 0xffff_ffff, flags2: 0xffff_ffff).body, at: 32)
        #expect(UInt64(d.u32()) << 32 & FUSEInitFlag.overIOURing != 0)
        let (notOffered, _) = server(MockFS(), options)
        var d1 = Decoder(notOffered.initSession(minor: 38, flags: 0xffff_ffff, flags2: 0).body, at: 32)
        #expect(d1.u32() == 0, "not agreed when the kernel does not offer it")
        let (off, _) = server()
        var d2 = Decoder(off.initSession(minor: 38, flags: 0xffff_ffff, flags2: 0xffff_ffff).body, at: 32)
        #expect(UInt64(d2.u32()) << 32 & FUSEInitFlag.overIOURing == 0)
    }

    @Test func lockRequestsAreRefusedWhenLocksAreOff() {
        let (c, _) = server(MockFS(), FUSEServerOptions(locks: false))
        c.initSession()
        #expect(c.lk(.setlk, node: 1, fh: 1, owner: 1, start: 0, end: 1, type: 1).errno == ENOSYS)
        #expect(c.lk(.getlk, node: 1, fh: 1, owner: 1, start: 0, end: 1, type: 1).errno == ENOSYS)
        let (on, _) = server()
        on.initSession()
        // With locks on, the request reaches the file system (whose default is ENOSYS too),
        // but a malformed range is refused before it gets there.
        #expect(on.lk(.setlk, node: 1, fh: 1, owner: 1, start: 9, end: 1, type: 1).errno == EINVAL)
    }

    @Test func posixAndFlockLocksAreSwitchedSeparately() {
        // virtiofsd's no_flock with posix_lock: only POSIX locks are offered
        // and a flock request (FUSE_LK_FLOCK) is refused.
        let (c, _) = server(MockFS(), FUSEServerOptions(posixLocks: true, flockLocks: false))
        var d = Decoder(c.initSession(minor: 38, flags: 0xffff_ffff, flags2: 0).body, at: 12)
        let flags = UInt64(d.u32())
        #expect(flags & FUSEInitFlag.posixLocks != 0 && flags & FUSEInitFlag.flockLocks == 0)
        #expect(c.lk(.setlk, node: 1, fh: 1, owner: 1, start: 0, end: 0, type: 1, flock: true).errno == ENOSYS)
        #expect(c.lk(.setlk, node: 1, fh: 1, owner: 1, start: 9, end: 1, type: 1).errno == EINVAL,
                "a POSIX request still reaches its checks")
    }

    @Test func requestsBeforeInitGetEIOAndDestroyEndsTheSession() {
        let (c, fs) = server()
        #expect(c.lookup(1, "x").errno == EIO)
        #expect(c.forget(1, 1).length == 0)
        #expect(!fs.calls.contains { $0.hasPrefix("forget") })
        c.initSession()
        #expect(c.lookup(1, "x").ok)
        #expect(c.call(.destroy, node: 0).ok)
        #expect(fs.calls.contains("destroy"))
        #expect(c.lookup(1, "x").errno == EIO)
    }
}

@Suite struct MalformedRequestTests {
    @Test func shortHeadersAndLyingLengths() {
        let (c, _) = server()
        c.initSession()
        #expect(c.send(raw: []).errno == EINVAL)
        let ten = c.send(raw: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
        #expect(ten.errno == EINVAL && ten.length == 16)
        // len larger than the bytes present
        let b = Bytes(); b.name("x")
        let big = c.send(raw: c.header(FUSEOpcode.lookup.rawValue, node: 1, bodyLength: 2, lenOverride: 4096) + b.b)
        #expect(big.errno == EINVAL)
        // len smaller than a header
        #expect(c.send(raw: c.header(FUSEOpcode.lookup.rawValue, node: 1, bodyLength: 2, lenOverride: 12) + b.b).errno == EINVAL)
        // len cuts the name's NUL off: the string is unterminated within len
        let cut = c.send(raw: c.header(FUSEOpcode.lookup.rawValue, node: 1, bodyLength: 2, lenOverride: 41) + b.b)
        #expect(cut.errno == EINVAL)
        // trailing bytes past len are ignored
        let tail = c.send(raw: c.header(FUSEOpcode.lookup.rawValue, node: 1, bodyLength: 2) + b.b + [0xff, 0xff, 0xff])
        #expect(tail.ok)
        // op struct too short
        let g = Bytes(); g.u32(0)
        #expect(c.call(.getattr, node: 1, g).errno == EINVAL)
    }

    @Test func unknownAndUnsupportedOpcodesGetENOSYSWithTheirUnique() {
        let (c, _) = server()
        c.initSession()
        let r = c.send(raw: c.header(9999, node: 1, bodyLength: 0))
        #expect(r.errno == ENOSYS && r.unique == c.unique)
        for op: FUSEOpcode in [.bmap, .ioctl, .poll, .setupMapping, .removeMapping, .notifyReply] {
            #expect(c.call(op, node: 1, Bytes().zeros(64)).errno == ENOSYS)
        }
        // Operations the mock leaves to the protocol's defaults.
        #expect(c.call(.statfs, node: 1).errno == ENOSYS)
        #expect(c.mkdir(1, "d").errno == ENOSYS)
    }

    @Test func replyBuffersThatAreTooSmall() {
        let (c, _) = server()
        c.initSession()
        let req = HostBuffer(c.header(FUSEOpcode.getattr.rawValue, node: 1, bodyLength: 16) + [UInt8](repeating: 0, count: 16))
        // Not even room for a header: no reply at all.
        #expect(c.server.handle(request: req, reply: HostBuffer(count: 8)) == 0)
        // Room for the header but not for fuse_attr_out: EIO.
        let small = HostBuffer(count: 40)
        #expect(c.server.handle(request: req, reply: small) == 16)
        var d = Decoder(small.array, at: 4)
        #expect(Int32(bitPattern: d.u32()) == -EIO)
    }

    @Test func badNamesNeverReachTheFileSystem() {
        let (c, fs) = server()
        c.initSession()
        #expect(c.lookup(1, "a/b").errno == EINVAL)
        #expect(c.lookup(1, String(repeating: "n", count: 256)).errno == ENAMETOOLONG)
        #expect(c.lookup(1, "").errno == EINVAL)
        #expect(c.unlink(1, "..").errno == EINVAL)
        #expect(!fs.calls.contains { $0.hasPrefix("lookup") })
        #expect(c.lookup(1, "..").ok)  // ".." is a fine LOOKUP
    }

    @Test func randomGarbageNeverCrashesAndAlwaysAnswersSanely() {
        let (c, _) = server()
        c.initSession()
        var rng = SplitMix(seed: 0x5eed)
        for i in 0..<3000 {
            let bodyLength = Int(rng.next() % 200)
            var body = (0..<bodyLength).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if i % 3 == 0 { body += [0] }
            let opcode = UInt32(rng.next() % 60)
            let lenLie: UInt32? = i % 5 == 0 ? UInt32(truncatingIfNeeded: rng.next() % 400) : nil
            // FORGET/BATCH_FORGET/INTERRUPT and DESTROY would end the session or stay silent.
            if opcode == FUSEOpcode.destroy.rawValue { continue }
            let replySize = Int(rng.next() % 300)
            let r = c.send(raw: c.header(opcode, node: rng.next() % 4, bodyLength: body.count, lenOverride: lenLie) + body, replySize: replySize)
            #expect(r.length == 0 || (r.length >= 16 && r.length <= max(replySize, 16)))
            if r.length > 0 && r.error != 0 { #expect(r.length == 16 && r.error < 0) }
        }
    }
}

@Suite struct DecodingTests {
    @Test func lookupReplyEncodesTheEntry() {
        let (c, _) = server()
        c.initSession()
        c.uid = 1000
        let r = c.lookup(1, "f")
        #expect(r.ok && r.length == 16 + 128 && r.unique == c.unique)
        var d = Decoder(r.body)
        #expect(d.u64() == 42 && d.u64() == 3 && d.u64() == 5 && d.u64() == 7 && d.u32() == 6)
        #expect(r.entryAttr.ino == 77 && r.entryAttr.size == 1234 && r.entryAttr.mode == 0o100644)
        #expect(c.lookup(1, "missing").errno == ENOENT)
    }

    @Test func getattrPassesTheHandleOnlyWithGETATTR_FH() {
        let (c, fs) = server()
        c.initSession()
        let b = Bytes(); b.u32(1).u32(0).u64(55)
        #expect(c.call(.getattr, node: 9, b).ok)
        let b2 = Bytes(); b2.u32(0).u32(0).u64(55)
        #expect(c.call(.getattr, node: 9, b2).attr.size == 99)
        #expect(fs.calls.suffix(2) == ["getattr 9 55", "getattr 9 nil"])
    }

    @Test func setattrFieldsAreDecoded() {
        let (c, fs) = server()
        c.initSession()
        let valid: UInt32 = (1 << 0) | (1 << 3) | (1 << 4) | (1 << 6) | (1 << 8) | (1 << 11)
        #expect(c.setattr(5, valid: valid, fh: 8, size: 100, atime: 1234, mode: 0o644).ok)
        let s = fs.lastSetattr.withLock { $0 }
        #expect(s?.mode == 0o644 && s?.size == 100 && s?.handle == 8)
        #expect(s?.atime == .set(seconds: 1234, nanoseconds: 0))
        #expect(s?.mtime == .now)
        #expect(s?.uid == nil && s?.killSUIDGID == true)
    }

    @Test func readdirFillsAtMostTheRequestedSizeWithAlignedEntries() {
        let (c, _) = server()
        c.initSession()
        let r = c.readdir(1, fh: 1, offset: 0, size: 200)
        #expect(r.ok && r.body.count <= 200 && r.body.count % 8 == 0)
        let ents = parseDirents(r.body, plus: false)
        #expect(ents.map(\.name) == ["entry0", "entry1", "entry2", "entry3", "entry4", "entry5"])
        #expect(ents.last?.off == 6)
        let p = c.readdir(1, fh: 1, offset: 3, size: 400, plus: true)
        let pe = parseDirents(p.body, plus: true)
        #expect(pe.first?.name == "entry3" && pe.count == 2)  // 152 bytes each
    }

    @Test func readIsClampedToTheReplyBuffer() {
        let (c, _) = server()
        c.initSession()
        let r = c.read(1, fh: 1, offset: 0, size: 1 << 20, replySize: 16 + 300)
        #expect(r.ok && r.body.count == 300 && r.body.allSatisfy { $0 == 0xAB })
    }

    @Test func xattrSizesAndExtendedSetxattr() {
        let (c, fs) = server()
        c.initSession(flags: 0xffff_ffff, flags2: 0)
        #expect(c.server.currentSession?.has(FUSEInitFlag.setxattrExt) == true)
        let q = Bytes(); q.u32(0).u32(0).name("user.a")
        #expect(c.call(.getxattr, node: 1, q).u32 == 5)
        let g = Bytes(); g.u32(3).u32(0).name("user.a")
        #expect(c.call(.getxattr, node: 1, g).errno == ERANGE)  // "value" is 5 bytes
        let g2 = Bytes(); g2.u32(10).u32(0).name("user.a")
        #expect(String(decoding: c.call(.getxattr, node: 1, g2).body, as: UTF8.self) == "value")
        // With SETXATTR_EXT: size, flags, setxattr_flags, padding, then the name.
        let s = Bytes(); s.u32(3).u32(1).u32(0).u32(0).name("user.b").raw([1, 2, 3])
        #expect(c.call(.setxattr, node: 1, s).ok)
        #expect(fs.lastXattrValue.withLock { $0 } == [1, 2, 3])
        #expect(fs.calls.last == "setxattr user.b flags=1")
        // A value size beyond the request.
        let bad = Bytes(); bad.u32(100).u32(0).u32(0).u32(0).name("user.b").raw([1])
        #expect(c.call(.setxattr, node: 1, bad).errno == EINVAL)

        let (old, oldFS) = server()
        old.initSession(flags: 0xffff_ffff & ~UInt32(FUSE_SETXATTR_EXT))
        let s2 = Bytes(); s2.u32(2).u32(0).name("user.c").raw([9, 8])
        #expect(old.call(.setxattr, node: 1, s2).ok)
        #expect(oldFS.lastXattrValue.withLock { $0 } == [9, 8])
    }

    @Test func forgetAndBatchForgetHaveNoReplyInterruptAsksAgain() {
        let (c, fs) = server()
        c.initSession()
        #expect(c.forget(9, 3).length == 0)
        let b = Bytes(); b.u32(2).u32(0).u64(10).u64(1).u64(11).u64(2)
        #expect(c.call(.batchForget, node: 0, b).length == 0)
        // INTERRUPT for a request not waiting here: no reply (an EAGAIN
        // would be dropped by the kernel or sent straight back; review4).
        let i = Bytes(); i.u64(5)
        let r = c.call(.interrupt, node: 0, i)
        #expect(r.length == 0)
        #expect(fs.calls.filter { $0.hasPrefix("forget") } == ["forget 9 3", "forget 10 1", "forget 11 2"])
        // A short FORGET is dropped silently.
        #expect(c.call(.forget, node: 9, Bytes().zeros(3)).length == 0)
        #expect(fs.calls.filter { $0.hasPrefix("forget") }.count == 3)
    }
}


@Suite struct LimitTests {
    @Test func hugeMaxWriteDoesNotOverflowMaxPages() {
        let (c, _) = server(MockFS(), FUSEServerOptions(maxWrite: UInt32.max))
        let r = c.initSession()
        var d = Decoder(r.body, at: 20)
        #expect(r.ok && d.u32() == UInt32.max)
        var p = Decoder(r.body, at: 28)
        #expect(p.u32() & 0xffff == 256)
    }

    @Test func readSizeIsCappedEvenWithAHugeReplyBuffer() {
        let (c, _) = server()
        c.initSession()
        let r = c.read(1, fh: 1, offset: 0, size: UInt32.max, replySize: FUSEServer.maxReadSize + 4096)
        #expect(r.ok && r.body.count == FUSEServer.maxReadSize)
    }
}

@Suite struct TracerTests {
    @Test func logsOneLinePerRequestWithItsOutcome() {
        let lines = Mutex<[String]>([])
        let server = FUSEServer(fileSystem: MockFS(), options: FUSEServerOptions(), tracer: FUSETracer { line in lines.withLock { $0.append(line) } })
        let c = Client(server)
        let reply = c.initSession(minor: 38, flags: UInt32(FUSE_ASYNC_READ | FUSE_DO_READDIRPLUS | FUSE_MAX_PAGES | FUSE_WRITEBACK_CACHE))
        #expect(reply.length == 80)
        #expect(c.lookup(1, "missing").errno == ENOENT)
        #expect(c.forget(5, 1).length == 0)
        #expect(c.send(raw: c.header(999, node: 1, bodyLength: 0)).errno == ENOSYS)
        let got = lines.withLock { $0 }
        #expect(got.count == 5)
        // INIT's own line first: the client's offer and the reply's fields,
        // the flags exactly as the reply carries them.
        var d = Decoder(reply.body, at: 12)
        let replied = UInt64(d.u32())
        let offered = UInt64(FUSE_ASYNC_READ | FUSE_DO_READDIRPLUS | FUSE_MAX_PAGES | FUSE_WRITEBACK_CACHE)
        #expect(got[0] == "fuse: INIT client 7.38 flags=0x\(String(offered, radix: 16)) max_readahead=131072; reply 7.38 "
            + "flags=0x\(String(replied, radix: 16)) max_write=1048576 max_pages=256 max_background=64 "
            + "congestion_threshold=48 time_gran=1 map_alignment=0")
        #expect(replied == UInt64(FUSE_ASYNC_READ | FUSE_DO_READDIRPLUS | FUSE_MAX_PAGES))  // no writeback: option off
        #expect(got[1].hasPrefix("fuse: init ") && got[1].hasSuffix("-> ok, 80 bytes"))
        #expect(got[2].hasPrefix("fuse: lookup ") && got[2].contains("node=1") && got[2].hasSuffix("-> ENOENT"))
        #expect(got[3].hasPrefix("fuse: forget ") && got[3].hasSuffix("-> no reply"))
        #expect(got[4].hasPrefix("fuse: opcode 999 ") && got[4].hasSuffix("-> ENOSYS (unknown opcode)"))
    }
}

@Suite struct SessionRestartTests {
    /// A guest that reboots without unmounting sends INIT again on the same
    /// connection: the old session is dropped as DESTROY would, and the new
    /// one works.
    @Test func initWithoutDestroyStartsANewSession() {
        let (c, fs) = server()
        #expect(c.initSession().ok)
        #expect(!fs.calls.contains("destroy"))
        #expect(c.initSession().ok)
        #expect(fs.calls.contains("destroy"))
        #expect(c.lookup(1, "x").errno != EIO, "requests after the second INIT are served")
    }

    @Test func refuseAnswersWithJustAnErrorForTheSameUnique() {
        let (c, _) = server()
        let request = HostBuffer(c.header(FUSEOpcode.setlkw.rawValue, node: 3, bodyLength: 0))
        let reply = HostBuffer(count: 64)
        #expect(FUSEServer.refuse(request, with: .ENOLCK, reply: reply) == 16)
        var d = Decoder(reply.array)
        #expect(d.u32() == 16)
        #expect(Int32(bitPattern: d.u32()) == -ENOLCK)
        #expect(d.u64() == c.unique)
        #expect(FUSEServer.refuse(request, with: .ENOLCK, reply: HostBuffer(count: 8)) == 0, "no room, no reply")
    }
}
