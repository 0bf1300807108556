import Glibc
import CVfsvmLinux
import Testing
import VfsvmFUSE
import VfsvmFUSETestSupport
import VfsvmPassthroughFS

/// --xattrmap at the FUSE level: what the host stores, what the guest sees.
@Suite struct XattrMapTests {
    static func fixture(_ rules: String) throws -> Fixture {
        var o = PassthroughOptions()
        o.xattrMap = try XattrNameMap(parsing: rules)
        return try Fixture(options: o)
    }

    func set(_ c: Client, _ n: UInt64, _ name: String, _ value: String) -> Reply {
        let s = Bytes(); s.u32(UInt32(value.utf8.count)).u32(0).u32(0).u32(0).name(name).raw(Array(value.utf8))
        return c.call(.setxattr, node: n, s)
    }

    func get(_ c: Client, _ n: UInt64, _ name: String) -> Reply {
        let g = Bytes(); g.u32(256).u32(0).name(name)
        return c.call(.getxattr, node: n, g)
    }

    func list(_ c: Client, _ n: UInt64, size: UInt32 = 4096) -> Reply {
        let l = Bytes(); l.u32(size).u32(0)
        return c.call(.listxattr, node: n, l)
    }

    func hostValue(_ path: String, _ name: String) -> String? {
        var buf = [UInt8](repeating: 0, count: 256)
        let n = getxattr(path, name, &buf, buf.count)
        return n < 0 ? nil : String(decoding: buf.prefix(n), as: UTF8.self)
    }

    @Test func mapEverythingUnderAPrefix() throws {
        let f = try Self.fixture(":map::user.virtiofs.:")
        f.writeHost("a", "")
        #expect(setxattr(f.path("a"), "user.host-only", "h", 1, 0) == 0)
        let c = f.client
        let n = c.lookup(1, "a").nodeID
        #expect(set(c, n, "trusted.overlay.opaque", "y").ok)
        #expect(hostValue(f.path("a"), "user.virtiofs.trusted.overlay.opaque") == "y", "stored under the prefix on the host")
        #expect(hostValue(f.path("a"), "trusted.overlay.opaque") == nil)
        #expect(String(decoding: get(c, n, "trusted.overlay.opaque").body, as: UTF8.self) == "y")
        let names = list(c, n).body.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        #expect(names == ["trusted.overlay.opaque"], "the prefix is stripped, unprefixed host names hidden: \(names)")
        // Size 0 answers the mapped list's length.
        let sized = list(c, n, size: 0)
        #expect(sized.ok && sized.u32 == UInt32("trusted.overlay.opaque".utf8.count + 1))
        #expect(list(c, n, size: 4).errno == ERANGE)
        // The guest cannot reach the host-only name, even by its full name.
        #expect(get(c, n, "user.host-only").errno == ENODATA, "asks for user.virtiofs.user.host-only, which is absent")
        let rm = Bytes(); rm.name("trusted.overlay.opaque")
        #expect(c.call(.removexattr, node: n, rm).ok && hostValue(f.path("a"), "user.virtiofs.trusted.overlay.opaque") == nil)
    }

    @Test func badUnsupportedAndUnmatchedNames() throws {
        let f = try Self.fixture("/bad/client/security.// /unsupported/client/system.// /ok/client/user.//")
        f.writeHost("a", "")
        let c = f.client
        let n = c.lookup(1, "a").nodeID
        #expect(set(c, n, "security.selinux", "x").errno == EPERM)
        #expect(set(c, n, "system.posix_acl_access", "x").errno == EOPNOTSUPP)
        #expect(set(c, n, "trusted.t", "x").errno == EPERM, "no rule matches: refused")
        #expect(set(c, n, "user.ok", "x").ok && hostValue(f.path("a"), "user.ok") == "x")
        // No server rules: the host list is hidden entirely.
        #expect(list(c, n, size: 0).u32 == 0)
    }

    @Test func remappedCapabilityDropsOnWriteAsTheKernelWould() throws {
        let f = try Self.fixture(":map::user.virtiofs.:")
        f.writeHost("bin", "#!")
        let c = f.client
        let n = c.lookup(1, "bin").nodeID
        #expect(set(c, n, "security.capability", "caps").ok)
        #expect(hostValue(f.path("bin"), "user.virtiofs.security.capability") == "caps")
        let fh = c.open(n, flags: UInt32(O_RDWR)).openHandle
        #expect(c.write(n, fh: fh, offset: 0, Array("xx".utf8)).ok)
        #expect(hostValue(f.path("bin"), "user.virtiofs.security.capability") == nil, "gone after a write")
        #expect(set(c, n, "security.capability", "caps").ok)
        #expect(c.setattr(n, valid: 1 << 3, size: 0).ok)  // FATTR_SIZE
        #expect(hostValue(f.path("bin"), "user.virtiofs.security.capability") == nil, "gone after a truncate")
        #expect(XattrNameMap(rules: []).remappedCapability == nil)
        #expect(try XattrNameMap(parsing: ":ok:all:::").remappedCapability == nil, "not remapped: the host kernel drops it")
    }

    @Test func parsesTheDocumentedForms() throws {
        let two = try XattrNameMap(parsing: ":prefix:all::user.virtiofs.::bad:all:::")
        #expect(two == (try XattrNameMap(parsing: ":map::user.virtiofs.:")), "the map rule is that pair")
        let four = try XattrNameMap(parsing: "/prefix/all/trusted./user.virtiofs./\n /bad/server//trusted./\n /bad/client/user.virtiofs.//\n /ok/all///")
        #expect(four.client(Array("trusted.a".utf8)) == .host(Array("user.virtiofs.trusted.a".utf8)))
        #expect(four.client(Array("user.virtiofs.x".utf8)) == .refused(.EPERM))
        #expect(four.client(Array("user.x".utf8)) == .host(Array("user.x".utf8)))
        #expect(four.server(Array("trusted.a".utf8)) == nil)
        #expect(four.server(Array("user.virtiofs.trusted.a".utf8)) == Array("trusted.a".utf8))
        let cases: [(String, String)] = [
            ("", "rule 0: no rules"),
            (":prefix:everywhere:a:b:", "rule 1: unknown scope 'everywhere' (client, server or all)"),
            (":ok:all:::/renamed/all///", "rule 2: unknown type 'renamed' (prefix, ok, bad, unsupported or map)"),
            (":ok:all::", "rule 1: unterminated: each field ends with the rule's separator ':'"),
            (":map::a: :ok:all:::", "rule 1: a map rule must be the last rule"),
        ]
        for (text, message) in cases {
            #expect(throws: XattrNameMap.ParseError.self) { try XattrNameMap(parsing: text) }
            do { _ = try XattrNameMap(parsing: text) } catch { #expect(error.description == message, "\(text)") }
        }
    }
}
