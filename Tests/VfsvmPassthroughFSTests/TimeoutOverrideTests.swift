import Glibc
import Testing
import VfsvmFUSE
import VfsvmFUSETestSupport
import VfsvmPassthroughFS

/// PassthroughOptions.timeout (the VFSVM_BENCH_INIT timeout= knob) replaces
/// the cache mode's entry and attribute timeouts in every reply that
/// carries them, to the nanosecond; without it the cache mode decides.
@Suite struct TimeoutOverrideTests {
    /// (entry_valid, entry_valid_nsec, attr_valid, attr_valid_nsec) of a
    /// LOOKUP and (attr_valid, attr_valid_nsec) of a GETATTR of "a".
    private func timeouts(_ o: PassthroughOptions) throws -> (lookup: [UInt64], getattr: [UInt64]) {
        let f = try Fixture(options: o)
        f.writeHost("a", "x")
        let e = f.client.lookup(1, "a")
        try #require(e.ok)
        var d = Decoder(e.body, at: 16)
        let entry = d.u64(), attr = d.u64(), entryNsec = d.u32(), attrNsec = d.u32()
        let g = f.client.getattr(e.nodeID)
        try #require(g.ok)
        var dg = Decoder(g.body)
        let gattr = dg.u64(), gnsec = dg.u32()
        return ([entry, UInt64(entryNsec), attr, UInt64(attrNsec)], [gattr, UInt64(gnsec)])
    }

    @Test func cacheModesWithoutOverride() throws {
        #expect(try timeouts(PassthroughOptions(cache: .auto)) == ([1, 0, 1, 0], [1, 0]))
        #expect(try timeouts(PassthroughOptions(cache: .always)) == ([86400, 0, 86400, 0], [86400, 0]))
        #expect(try timeouts(PassthroughOptions(cache: .never)) == ([0, 0, 0, 0], [0, 0]))
    }

    @Test func overrideWinsInEveryCacheMode() throws {
        for cache in [PassthroughOptions.Cache.auto, .always, .never] {
            var o = PassthroughOptions(cache: cache)
            o.timeout = FUSETimeout(seconds: 5, nanoseconds: 250_000_000)
            #expect(try timeouts(o) == ([5, 250_000_000, 5, 250_000_000], [5, 250_000_000]), "cache \(cache)")
        }
    }
}

/// FUSEServerOptions.negativeEntryTimeout (the negative_timeout= knob): a
/// missing name is an entry with node 0 and that entry timeout, which the
/// client keeps as a negative dentry; other errors and hits are unchanged.
@Suite struct NegativeEntryTests {
    @Test func missIsENOENTByDefault() throws {
        let f = try Fixture()
        #expect(f.client.lookup(1, "nope").errno == ENOENT)
    }

    @Test func missIsANodeZeroEntryWithTheTimeout() throws {
        var s = FUSEServerOptions()
        s.negativeEntryTimeout = FUSETimeout(seconds: 2, nanoseconds: 500_000_000)
        let f = try Fixture(server: s)
        f.writeHost("a", "x")
        let miss = f.client.lookup(1, "nope")
        #expect(miss.ok && miss.body.count == 128, "a full fuse_entry_out")
        var d = Decoder(miss.body)
        #expect(d.u64() == 0, "node 0: negative")
        d.skip(8)
        #expect(d.u64() == 2 && d.u64() == 0, "entry_valid 2 s, attr_valid 0")
        #expect(d.u32() == 500_000_000 && d.u32() == 0)
        let hit = f.client.lookup(1, "a")
        #expect(hit.ok && hit.nodeID > 1, "a present name is still entered")
        #expect(f.client.lookup(hit.nodeID, "x").errno == ENOTDIR, "other errors stay errors")
    }
}
