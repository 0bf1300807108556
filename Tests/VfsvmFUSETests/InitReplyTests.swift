import CVfsvmLinux
import Glibc
import Testing
import VfsvmFUSE
import VfsvmFUSETestSupport

/// What the INIT reply offers a Linux virtio-fs client (the guest of
/// bench-serve offers 0xb7bfffffb: everything below), field by field, and
/// how the server options that bench-serve toggles change it.
@Suite struct InitReplyTests {
    private struct Reply {
        var flags: UInt64, maxBackground: UInt32, congestion: UInt32, maxWrite: UInt32, maxPages: UInt32
    }

    private func negotiate(_ options: FUSEServerOptions = FUSEServerOptions()) -> Reply? {
        let c = Client(FUSEServer(fileSystem: MockFS(), options: options))
        // The flags a Linux 6.1 guest sends (bench-serve's -d log), flags2 0xb.
        let r = c.initSession(minor: 38, flags: 0x7bff_fffb, flags2: 0xb)
        guard r.ok, r.body.count == 64 else { return nil }
        var d = Decoder(r.body, at: 12)
        let lo = UInt64(d.u32())
        let bg = d.u32()
        let maxWrite = d.u32()
        d.skip(4)  // time_gran
        let pages = d.u32()
        let hi = UInt64(d.u32())
        return Reply(flags: lo | hi << 32, maxBackground: bg & 0xffff, congestion: bg >> 16, maxWrite: maxWrite, maxPages: pages & 0xffff)
    }

    @Test func defaultsOfferWhatCutsRoundTrips() throws {
        let r = try #require(negotiate())
        for (flag, name) in [(FUSE_ASYNC_READ, "async read"), (FUSE_PARALLEL_DIROPS, "parallel dirops"),
                             (FUSE_DO_READDIRPLUS, "readdirplus"), (FUSE_READDIRPLUS_AUTO, "readdirplus auto"),
                             (FUSE_MAX_PAGES, "max_pages"), (FUSE_AUTO_INVAL_DATA, "auto inval data"),
                             (FUSE_ASYNC_DIO, "async direct I/O"), (FUSE_BIG_WRITES, "big writes"),
                             (FUSE_ATOMIC_O_TRUNC, "atomic O_TRUNC"), (FUSE_HANDLE_KILLPRIV_V2, "killpriv v2"),
                             (FUSE_CACHE_SYMLINKS, "cached symlinks")] {
            #expect(r.flags & UInt64(flag) != 0, "\(name) offered by default")
        }
        #expect(r.flags & UInt64(FUSE_WRITEBACK_CACHE) == 0, "writeback cache only when asked for")
        #expect(r.flags & UInt64(FUSE_NO_OPEN_SUPPORT) == 0 && r.flags & UInt64(FUSE_EXPLICIT_INVAL_DATA) == 0)
        #expect(r.maxPages == 256 && r.maxWrite == 1 << 20)
        #expect(r.maxBackground == 64 && r.congestion == 48)
    }

    @Test func asyncReadAndParallelDiropsCanBeWithheld() throws {
        var o = FUSEServerOptions()
        o.asyncRead = false
        let noAsync = try #require(negotiate(o))
        #expect(noAsync.flags & UInt64(FUSE_ASYNC_READ) == 0)
        #expect(noAsync.flags & UInt64(FUSE_PARALLEL_DIROPS) != 0)
        o = FUSEServerOptions()
        o.parallelDirops = false
        let serial = try #require(negotiate(o))
        #expect(serial.flags & UInt64(FUSE_PARALLEL_DIROPS) == 0)
        #expect(serial.flags & UInt64(FUSE_ASYNC_READ) != 0)
    }

    @Test func readdirplusAutoAlwaysOff() throws {
        var o = FUSEServerOptions()
        o.readdirplusAuto = false
        let always = try #require(negotiate(o))
        #expect(always.flags & UInt64(FUSE_DO_READDIRPLUS) != 0 && always.flags & UInt64(FUSE_READDIRPLUS_AUTO) == 0)
        o = FUSEServerOptions()
        o.readdirplus = false
        let off = try #require(negotiate(o))
        #expect(off.flags & UInt64(FUSE_DO_READDIRPLUS) == 0 && off.flags & UInt64(FUSE_READDIRPLUS_AUTO) == 0,
                "READDIRPLUS_AUTO means nothing without DO_READDIRPLUS")
    }

    @Test func maxPagesFollowsMaxWrite() throws {
        var o = FUSEServerOptions()
        o.maxWrite = 32 * 4096
        let r = try #require(negotiate(o))
        #expect(r.maxPages == 32 && r.maxWrite == 131_072)
        o.maxWrite = 4 << 20  // more than the kernel's 256 pages
        let big = try #require(negotiate(o))
        #expect(big.maxPages == 256)
    }

    @Test func maxBackgroundAndItsThreshold() throws {
        var o = FUSEServerOptions()
        o.maxBackground = 12
        let linux = try #require(negotiate(o))
        #expect(linux.maxBackground == 12 && linux.congestion == 9, "Linux's own defaults, as libfuse derives the threshold")
        o.maxBackground = 0
        let kernelDefault = try #require(negotiate(o))
        #expect(kernelDefault.maxBackground == 0 && kernelDefault.congestion == 0, "0 leaves both to the kernel")
    }
}
