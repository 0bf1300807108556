import VfsvmFUSETestSupport
import Glibc
import Testing
import VfsvmFUSE
import VfsvmPassthroughFS
import VfsvmSys

/// READDIRPLUS of a directory listed before answers every entry from the
/// inodes the table holds (`enterHeld`, one stat per name): the same nodes,
/// one more lookup each, fresh attributes, and no more fds held than the
/// cache's bound. (LOOKUP of known and replaced names, with file handles
/// and without: StatLookupTests.)
@Suite struct HeldInodeTests {
    @Test func readdirplusAgainReusesEveryNodeWithOneMoreLookup() throws {
        let f = try Fixture()
        let names = (0..<40).map { "entry-\($0)" }
        for n in names { f.writeHost(n, "") }
        let c = f.client
        let dh = c.opendir(1).openHandle
        func listing() -> [String: UInt64] {
            let r = c.readdir(1, fh: dh, offset: 0, plus: true)
            #expect(r.ok)
            var out: [String: UInt64] = [:]
            for e in parseDirents(r.body, plus: true) where e.name.hasPrefix("entry-") { out[e.name] = e.nodeID }
            return out
        }
        let first = listing()
        #expect(Set(first.keys) == Set(names))
        f.writeHost("entry-7", "grown")
        let second = listing()
        #expect(second == first)
        for (_, node) in first { #expect(f.fs.lookupCount(of: node) == 2) }
        #expect(c.getattr(first["entry-7"]!).attr.size == 5)
        // The O_PATH fds held stay within the cache's bound (plus the root's).
        #expect(f.fs.heldPathFDCount <= PassthroughOptions().pathFDCacheSize + 1)
    }
}
