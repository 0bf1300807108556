import VfsvmFUSETestSupport
import Glibc
import Testing
import VfsvmFUSE
import VfsvmPassthroughFS
import VfsvmSys

/// Open files and directories are bounded per session, below the process's
/// fd limit, so a guest that opens everything gets EMFILE while the server
/// keeps the fds it needs itself.
@Suite(.serialized) struct HandleLimitTests {
    /// Runs `body` with RLIMIT_NOFILE's soft limit at `soft`, restoring it
    /// afterwards.
    private func withFileLimit(_ soft: rlim_t, _ body: () throws -> Void) rethrows {
        var old = rlimit()
        _ = getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &old)
        var low = old
        low.rlim_cur = soft
        #expect(setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &low) == 0)
        defer { _ = setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &old) }
        try body()
    }

    /// The attack: a guest opens files until it cannot. It must get EMFILE
    /// while the server still has fds of its own: a LOOKUP (an O_PATH fd)
    /// and a queue restart (new eventfds) still work, and closing one file
    /// lets the guest open another.
    @Test func openingEverythingLeavesTheServerItsFDs() throws {
        try withFileLimit(300) {
            let f = try Fixture()
            let c = f.client
            f.writeHost("later", "made by the host")
            var handles: [(node: UInt64, fh: UInt64)] = []
            var refusal: Int32 = 0
            for i in 0..<400 {
                let r = c.create(1, "f\(i)")
                guard r.ok else { refusal = r.errno; break }
                handles.append((r.nodeID, r.createHandle))
            }
            #expect(refusal == EMFILE, "the guest is told: too many open files")
            #expect(handles.count > 50, "\(handles.count) files opened first")
            #expect(!f.exists("f\(handles.count)"), "the refused CREATE made no file")
            let later = c.lookup(1, "later")
            #expect(later.ok, "a LOOKUP still works (errno \(later.errno))")
            #expect(c.opendir(1).errno == EMFILE)
            // What a queue restart needs: new eventfds.
            let events = (0..<8).compactMap { _ in try? EventFD(nonBlocking: true) }
            #expect(events.count == 8, "the process can still make fds")
            let (node, fh) = try #require(handles.last)
            #expect(c.release(node, fh: fh).ok)
            #expect(c.create(1, "again").ok, "one released, one more open")
        }
    }

    /// A configured limit: every kind of open counts, and a release frees
    /// a slot.
    @Test func theConfiguredLimitCoversFilesDirectoriesAndTmpfiles() throws {
        let f = try Fixture(options: PassthroughOptions(maxOpenHandles: 3))
        let c = f.client
        let a = c.create(1, "a")
        #expect(a.ok && c.create(1, "b").ok)
        let dir = c.opendir(1)
        #expect(dir.ok)
        #expect(f.fs.openHandleCount == 3)
        #expect(c.create(1, "c").errno == EMFILE)
        #expect(!f.exists("c"))
        #expect(c.open(a.nodeID).errno == EMFILE)
        #expect(c.opendir(1).errno == EMFILE)
        let tmp = Bytes()
        tmp.u32(UInt32(O_RDWR)).u32(0o600).u32(0).u32(0)
        #expect(c.call(.tmpfile, node: 1, tmp).errno == EMFILE)
        #expect(c.lk(.setlk, node: a.nodeID, fh: a.createHandle, owner: 9, start: 0, end: 0, type: UInt32(F_WRLCK)).errno == ENOLCK)
        #expect(c.release(1, fh: dir.openHandle, dir: true).ok)
        #expect(c.create(1, "c").ok)
        #expect(f.fs.openHandleCount == 3)
    }

    /// The default follows RLIMIT_NOFILE as it is when a session starts
    /// (the sandbox may raise it before the first INIT).
    @Test func theDefaultLimitFollowsRLIMIT_NOFILEAtEachINIT() throws {
        var now = rlimit()
        _ = getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &now)
        let soft = Int(now.rlim_cur)
        try withFileLimit(1000) {
            let f = try Fixture()
            #expect(f.fs.openHandleLimit == 1000 - 250 - PassthroughFileSystem.fdReserve)
            var raised = rlimit()
            _ = getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &raised)
            raised.rlim_cur = rlim_t(min(soft, Int(raised.rlim_max)))
            #expect(setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &raised) == 0)
            #expect(f.client.initSession().ok)
            #expect(f.fs.openHandleLimit == PassthroughFileSystem.fdBudget(softLimit: Int(raised.rlim_cur), pathFDCacheSize: 512).guest)
        }
        #expect(PassthroughFileSystem.fdBudget(softLimit: 1024, pathFDCacheSize: 512) == (1024 - 256 - 64, 256))
        #expect(PassthroughFileSystem.fdBudget(softLimit: 1 << 20, pathFDCacheSize: 512) == ((1 << 20) - 512 - 64, 512))
        #expect(PassthroughFileSystem.fdBudget(softLimit: 40, pathFDCacheSize: 512).guest == 16, "never below 16")
    }
}
