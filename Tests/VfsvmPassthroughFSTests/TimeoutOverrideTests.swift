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
