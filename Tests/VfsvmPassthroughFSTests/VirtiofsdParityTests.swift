import CVfsvmLinux
import Glibc
import Testing
import VfsvmFUSE
import VfsvmFUSETestSupport
import VfsvmPassthroughFS
import VfsvmSys

/// INIT reply flags (flags | flags2 << 32) of a fresh session.
private func initFlags(_ c: Client, flags2: UInt32 = 0xffff_ffff) -> UInt64 {
    let r = c.initSession(flags: 0xffff_ffff, flags2: flags2)
    var d = Decoder(r.body, at: 12)
    let low = UInt64(d.u32())
    var d2 = Decoder(r.body, at: 32)
    return low | UInt64(d2.u32()) << 32
}

/// The status flags (fdinfo "flags:", octal) of the fds this process holds
/// on `path`.
private func hostOpenFlags(of path: String) -> [Int32] {
    guard let d = opendir("/proc/self/fd") else { return [] }
    defer { closedir(d) }
    var out: [Int32] = []
    while let e = readdir(d) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        guard name.first?.isNumber == true else { continue }
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/fd/\(name)", &buf, buf.count - 1)
        guard n > 0, String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) == path else { continue }
        guard let text = try? readWholeFile("/proc/self/fdinfo/\(name)") else { continue }
        for line in text.split(separator: "\n") where line.hasPrefix("flags:") {
            // O_PATH fds (the inode table's) are not opens of the file.
            if let v = Int32(line.dropFirst(6).filter { !$0.isWhitespace }, radix: 8), v & HostFSFlag.path == 0 { out.append(v) }
        }
    }
    return out
}

private func readWholeFile(_ path: String) throws -> String {
    let fd = try FileDescriptor.open(path, O_RDONLY)
    return String(decoding: try fd.readSome(limit: 65536), as: UTF8.self)
}

@Suite struct InitOfferTests {
    @Test func readdirplusOffThenNotOffered() throws {
        let on = try Fixture(initialize: false)
        let a = initFlags(on.client)
        #expect(a & FUSEInitFlag.doReaddirplus != 0 && a & FUSEInitFlag.readdirplusAuto != 0)
        var o = FUSEServerOptions()
        o.readdirplus = false
        let off = try Fixture(server: o, initialize: false)
        let b = initFlags(off.client)
        #expect(b & (FUSEInitFlag.doReaddirplus | FUSEInitFlag.readdirplusAuto) == 0)
        #expect(b & FUSEInitFlag.asyncRead != 0, "the rest is still offered")
    }

    @Test func killprivV2OnlyWhenOn() throws {
        #expect(initFlags(try Fixture(initialize: false).client) & FUSEInitFlag.handleKillprivV2 != 0)
        var o = FUSEServerOptions()
        o.killprivV2 = false
        #expect(initFlags(try Fixture(server: o, initialize: false).client) & FUSEInitFlag.handleKillprivV2 == 0)
    }

    @Test func directIOAllowMmapInFlags2() throws {
        #expect(initFlags(try Fixture(initialize: false).client) & FUSEInitFlag.directIOAllowMmap == 0)
        var o = FUSEServerOptions()
        o.directIOAllowMmap = true
        let f = try Fixture(server: o, initialize: false)
        #expect(initFlags(f.client) & FUSEInitFlag.directIOAllowMmap != 0)
        // A client that does not know the flag does not get it.
        let g = try Fixture(server: o, initialize: false)
        #expect(initFlags(g.client, flags2: 0) & FUSEInitFlag.directIOAllowMmap == 0)
    }
}

@Suite struct AnnounceSubmountsTests {
    /// A tmpfs mounted on share/m: its LOOKUP carries FUSE_ATTR_SUBMOUNT
    /// when the session agreed on FUSE_SUBMOUNTS; a plain directory never.
    private func attrFlags(announce: Bool, clientOffers: Bool) throws -> (mount: UInt32, plain: UInt32)? {
        var o = FUSEServerOptions()
        o.announceSubmounts = announce
        let f = try Fixture(server: o, initialize: false)
        #expect(mkdir(f.path("m"), 0o755) == 0 && mkdir(f.path("plain"), 0o755) == 0)
        guard Glibc.mount("none", f.path("m"), "tmpfs", 0, "size=1m") == 0 else {
            Issue.record("cannot mount a tmpfs for the submount test (needs root): errno \(errno)")
            return nil
        }
        defer { _ = umount2(f.path("m"), Int32(MNT_DETACH)) }
        let offered: UInt32 = clientOffers ? 0xffff_ffff : ~UInt32(FUSEInitFlag.submounts)
        let r = f.client.initSession(flags: offered)
        #expect(r.ok)
        // fuse_entry_out: attr at 40, fuse_attr.flags at 40 + 84.
        let m = f.client.lookup(1, "m"), p = f.client.lookup(1, "plain")
        #expect(m.ok && p.ok)
        var dm = Decoder(m.body, at: 40 + 84), dp = Decoder(p.body, at: 40 + 84)
        return (dm.u32(), dp.u32())
    }

    @Test func mountPointMarkedWhenAgreed() throws {
        guard let r = try attrFlags(announce: true, clientOffers: true) else { return }
        #expect(r.mount & FUSEAttrFlag.submount != 0, "the tmpfs mount point is announced")
        #expect(r.plain & FUSEAttrFlag.submount == 0, "a directory on the share's own file system is not")
    }

    @Test func notMarkedWhenOffOrNotOffered() throws {
        guard let off = try attrFlags(announce: false, clientOffers: true) else { return }
        #expect(off.mount & FUSEAttrFlag.submount == 0)
        guard let unknown = try attrFlags(announce: true, clientOffers: false) else { return }
        #expect(unknown.mount & FUSEAttrFlag.submount == 0, "a client without FUSE_SUBMOUNTS never sees the flag")
    }
}

@Suite struct OpenFlagParityTests {
    @Test func cacheMetadataCachesAttributesNotData() throws {
        let f = try Fixture(options: PassthroughOptions(cache: .metadata))
        f.writeHost("a", "x")
        #expect(mkdir(f.path("d"), 0o755) == 0)
        let e = f.client.lookup(1, "a")
        var d = Decoder(e.body, at: 16)
        #expect(d.u64() == 86400, "entry timeout a day")
        #expect(f.client.open(e.nodeID, flags: UInt32(O_RDONLY)).openFlags == UInt32(FOPEN_DIRECT_IO), "file data not cached")
        let dir = f.client.opendir(f.client.lookup(1, "d").nodeID)
        #expect(dir.openFlags == UInt32(FOPEN_KEEP_CACHE) | UInt32(FOPEN_CACHE_DIR), "listings cached")
    }

    @Test func directIOOnlyWhenAllowed() throws {
        for allowed in [false, true] {
            var o = PassthroughOptions()
            o.allowDirectIO = allowed
            let f = try Fixture(options: o)
            f.writeHost("a", "x")
            let node = f.client.lookup(1, "a").nodeID
            let r = f.client.open(node, flags: UInt32(O_RDWR | HostFSFlag.direct))
            #expect(r.ok)
            #expect((r.openFlags & UInt32(FOPEN_DIRECT_IO) != 0) == allowed, "allowed \(allowed): FOPEN_DIRECT_IO")
            let flags = hostOpenFlags(of: f.path("a"))
            #expect(flags.count == 1, "one host fd on the file: \(flags)")
            #expect(flags.allSatisfy { ($0 & HostFSFlag.direct != 0) == allowed }, "allowed \(allowed): host O_DIRECT \(flags)")
            // Without O_DIRECT asked, never.
            let plain = f.client.open(node, flags: UInt32(O_RDONLY))
            #expect(plain.openFlags & UInt32(FOPEN_DIRECT_IO) == 0)
        }
    }

    @Test func noatimeKeptOrDropped() throws {
        for keep in [false, true] {
            var o = PassthroughOptions()
            o.keepNoatime = keep
            let f = try Fixture(options: o)
            f.writeHost("a", "x")
            let r = f.client.open(f.client.lookup(1, "a").nodeID, flags: UInt32(O_RDONLY | HostFSFlag.noatime))
            #expect(r.ok)
            let flags = hostOpenFlags(of: f.path("a"))
            #expect(flags.count == 1 && flags.allSatisfy { ($0 & HostFSFlag.noatime != 0) == keep }, "keep \(keep): \(flags)")
        }
    }
}

@Suite struct FileHandleModeTests {
    /// ramfs has no file handles (no export operations).
    private func ramfs(_ path: String) -> Bool {
        mkdir(path, 0o755) == 0 && Glibc.mount("none", path, "ramfs", 0, nil) == 0
    }

    @Test func mandatoryRefusesARootWithoutHandles() throws {
        let work = try Fixture()
        guard ramfs(work.path("r")) else {
            Issue.record("cannot mount ramfs (needs root): errno \(errno)")
            return
        }
        defer { _ = umount2(work.path("r"), Int32(MNT_DETACH)) }
        var o = PassthroughOptions()
        o.requireFileHandles = true
        #expect(throws: PassthroughError.noFileHandles(path: work.path("r"))) {
            try PassthroughFileSystem(root: work.path("r"), options: o)
        }
        #expect(PassthroughError.noFileHandles(path: "/x").description.contains("--inode-file-handles=mandatory"))
        // prefer and never serve it.
        #expect(throws: Never.self) { try PassthroughFileSystem(root: work.path("r")) }
        #expect(throws: Never.self) { try PassthroughFileSystem(root: work.path("r"), options: PassthroughOptions(fileHandles: false)) }
    }

    @Test func mandatoryRefusesAnInodeWithoutHandleInside() throws {
        var o = PassthroughOptions()
        o.requireFileHandles = true
        let f = try Fixture(options: o)
        guard ramfs(f.path("r")) else {
            Issue.record("cannot mount ramfs (needs root): errno \(errno)")
            return
        }
        defer { _ = umount2(f.path("r"), Int32(MNT_DETACH)) }
        f.writeHost("ok", "x")
        #expect(f.client.lookup(1, "ok").ok, "the share's own file system has handles")
        #expect(f.client.lookup(1, "r").errno == EOPNOTSUPP, "the ramfs mount point has none")
        // prefer: the same tree is served.
        let g = try Fixture()
        guard ramfs(g.path("r")) else { return }
        defer { _ = umount2(g.path("r"), Int32(MNT_DETACH)) }
        #expect(g.client.lookup(1, "r").ok)
    }
}
