import FuzzSupport
import Glibc

/// Seeds after the requests of the FUSE core's unit tests (Tests/
/// VfsvmFUSETests, VfsvmPassthroughFSTests): lookups, create/write/read,
/// directories, renames, links, xattrs, locks, and the confinement attacks
/// (".." of the root, names with '/', symlinks leading out, special files).
enum FUSESeeds {
    typealias B = FUSERequestBuilder

    static func u32(_ v: UInt32) -> [UInt8] { B.fields([(32, UInt64(v))]) }
    static func u64(_ v: UInt64) -> [UInt8] { B.fields([(64, v)]) }

    static func seed(_ flags: FUSEFuzzCase = FUSEFuzzCase(), _ build: (inout B) -> [[UInt8]]) -> [UInt8] {
        var b = B()
        _ = b.initRequest()
        var c = flags
        c.requests = build(&b).map { (true, $0) }
        return c.encoded
    }

    static var all: [(name: String, bytes: [UInt8])] {
        let root: UInt64 = 1
        let rw = UInt32(O_RDWR)
        let readIn = { (fh: UInt64, off: UInt64, size: UInt32) in u64(fh) + u64(off) + u32(size) + u32(0) + u64(0) + u32(0) + u32(0) }
        var seeds: [(String, [UInt8])] = []
        seeds.append(("lookup-getattr", seed { b in [
            b.request(1, node: root, B.name("a")),
            b.request(3, node: 2, u32(0) + u32(0) + u64(0)),
            b.request(1, node: root, B.name("d")),
            b.request(1, node: 3, B.name("b")),
        ] }))
        seeds.append(("open-read", seed { b in [
            b.request(1, node: root, B.name("a")),
            b.request(14, node: 2, u32(UInt32(O_RDONLY)) + u32(0)),
            b.request(15, node: 2, readIn(1, 0, 4096)),
            b.request(18, node: 2, u64(1) + u32(0) + u32(0) + u64(0)),
        ] }))
        seeds.append(("create-write-read", seed { b in [
            b.request(35, node: root, u32(rw) + u32(0o644) + u32(0o022) + u32(0) + B.name("new")),
            b.request(16, node: 2, u64(1) + u64(0) + u32(5) + u32(0) + u64(0) + u32(0) + u32(0) + Array("hello".utf8)),
            b.request(15, node: 2, readIn(1, 0, 5)),
            b.request(4, node: 2, u32(1 << 3) + u32(0) + u64(1) + u64(2) + u64(0) + u64(0) + u64(0) + u64(0) + [UInt8](repeating: 0, count: 32)),
            b.request(25, node: 2, u64(1) + u32(0) + u32(0) + u64(7)),
        ] }))
        seeds.append(("mkdir-readdirplus-rmdir", seed { b in [
            b.request(9, node: root, u32(0o755) + u32(0) + B.name("sub")),
            b.request(27, node: root, u32(UInt32(O_RDONLY)) + u32(0)),
            b.request(44, node: root, readIn(1, 0, 65536)),
            b.request(28, node: root, readIn(1, 0, 4096)),
            b.request(29, node: root, u64(1) + u32(0) + u32(0) + u64(0)),
            b.request(11, node: root, B.name("sub")),
        ] }))
        seeds.append(("rename-link-symlink-unlink", seed { b in [
            b.request(1, node: root, B.name("a")),
            b.request(12, node: root, u64(root) + B.name("a") + B.name("a2")),
            b.request(45, node: root, u64(root) + u32(2) + u32(0) + B.name("a2") + B.name("d")),
            b.request(13, node: root, u64(2) + B.name("hard")),
            b.request(6, node: root, B.name("sl") + B.name("../../etc/passwd")),
            b.request(5, node: 3, []),
            b.request(10, node: root, B.name("hard")),
        ] }))
        seeds.append(("xattrs", seed { b in [
            b.request(1, node: root, B.name("a")),
            b.request(21, node: 2, u32(3) + u32(0) + u32(0) + u32(0) + B.name("user.k") + [1, 2, 3]),
            b.request(22, node: 2, u32(64) + u32(0) + B.name("user.k")),
            b.request(23, node: 2, u32(256) + u32(0)),
            b.request(24, node: 2, B.name("user.k")),
        ] }))
        seeds.append(("locks", seed { b in [
            b.request(1, node: root, B.name("a")),
            b.request(14, node: 2, u32(rw) + u32(0)),
            b.request(32, node: 2, u64(1) + u64(7) + u64(0) + u64(100) + u32(1) + u32(1) + u32(0) + u32(0)),
            b.request(31, node: 2, u64(1) + u64(8) + u64(0) + u64(100) + u32(1) + u32(1) + u32(0) + u32(0)),
            b.request(33, node: 2, u64(1) + u64(9) + u64(0) + u64(0) + u32(1) + u32(1) + u32(1) + u32(0)),
            b.request(46, node: 2, u64(1) + u64(0) + u32(3) + u32(0)),
            b.request(43, node: 2, u64(1) + u64(0) + u64(8192) + u32(0) + u32(0)),
            b.request(20, node: 2, u64(1) + u32(1) + u32(0)),
        ] }))
        seeds.append(("escape-attempts", seed { b in [
            b.request(1, node: root, B.name("..")),
            b.request(1, node: root, B.name("../canary")),
            b.request(1, node: root, B.name("up")),
            b.request(14, node: 2, u32(rw) + u32(0)),
            b.request(1, node: root, B.name("abs")),
            b.request(1, node: root, B.name("fifo")),
            b.request(14, node: 3, u32(UInt32(O_RDONLY)) + u32(0)),
            b.request(35, node: root, u32(rw) + u32(0o644) + u32(0) + u32(0) + B.name("../x")),
            b.request(9, node: root, u32(0o755) + u32(0) + B.name("/tmp")),
            b.request(8, node: root, u32(0o20644) + u32(0x0801) + u32(0) + u32(0) + B.name("blk")),
            b.request(51, node: root, u32(rw) + u32(0o600) + u32(0) + u32(0) + B.name("")),
        ] }))
        seeds.append(("copy-range-statfs", seed { b in [
            b.request(1, node: root, B.name("a")),
            b.request(14, node: 2, u32(rw) + u32(0)),
            b.request(47, node: 2, u64(1) + u64(0) + u64(2) + u64(1) + u64(6) + u64(6) + u64(0)),
            b.request(17, node: root, []),
            b.request(34, node: 2, u32(4) + u32(0)),
            b.request(42, node: 0, u32(1) + u32(0) + u64(2) + u64(1)),
            b.request(2, node: 2, u64(1)),
            b.request(38, node: 0, []),
        ] }))
        var ro = FUSEFuzzCase()
        ro.readOnly = true
        ro.noFileHandles = true
        seeds.append(("read-only-name-inodes", seed(ro) { b in [
            b.request(1, node: root, B.name("d")),
            b.request(1, node: 2, B.name("b")),
            b.request(35, node: 2, u32(rw) + u32(0o644) + u32(0) + u32(0) + B.name("w")),
            b.request(14, node: 3, u32(rw) + u32(0)),
        ] }))
        // --security-label: creates carrying a security context (the
        // layout Linux sends: fuse_secctx_header, fuse_secctx, name,
        // value, padded to 8), one with nr_secctx 0, one malformed.
        var labels = FUSEFuzzCase()
        labels.securityLabel = true
        let value = Array("system_u:object_r:container_file_t:s0".utf8) + [0]
        var body = u32(UInt32(value.count)) + u32(0) + B.name("security.selinux") + value
        body += [UInt8](repeating: 0, count: (8 - body.count % 8) % 8)
        let context = u32(UInt32(8 + body.count)) + u32(1) + body
        seeds.append(("security-label", seed(labels) { b in [
            b.request(9, node: root, u32(0o755) + u32(0) + B.name("d") + context),
            b.request(35, node: root, u32(rw) + u32(0o644) + u32(0) + u32(0) + B.name("f") + context),
            b.request(8, node: root, u32(0o010644) + u32(0) + u32(0) + u32(0) + B.name("p") + u32(8) + u32(0)),
            b.request(6, node: root, B.name("l") + B.name("target") + context),
            b.request(9, node: root, u32(0o755) + u32(0) + B.name("e") + u32(4096) + u32(1) + u32(4) + u32(0)),
        ] }))
        var raw = FUSEFuzzCase()
        raw.skipInit = true
        seeds.append(("no-init", seed(raw) { b in [b.request(1, node: root, B.name("a")), b.initRequest()] }))
        return seeds
    }
}
