import Glibc
import Testing
import VfsvmFUSE
import VfsvmFUSETestSupport
import VfsvmPassthroughFS
import VfsvmSys

/// LINK of a symlink links the symlink, never its target, which the guest
/// picks (here a host file outside the share, on the share's file
/// system). LINK goes through /proc/self/fd with AT_SYMLINK_FOLLOW (no
/// CAP_DAC_READ_SEARCH needed): the magic link lands on the symlink and is
/// not followed further. Both ways a node is named: by (parent, name), and
/// by file handle.
@Suite struct LinkSymlinkTests {
    @Test(arguments: [false, true])
    func linkingASymlinkToAHostFileLinksTheSymlink(fileHandles: Bool) throws {
        var template = Array("/tmp/vfsvm-outside-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        try #require(fd >= 0, "mkstemp: \(Errno.current)")
        close(fd)
        let outside = String(cString: template.withUnsafeBufferPointer { $0.baseAddress! })
        defer { unlink(outside) }

        let f = try Fixture(options: PassthroughOptions(fileHandles: fileHandles))
        try #require(symlink(outside, f.path("evil")) == 0)
        let c = f.client
        let evil = c.lookup(1, "evil").nodeID
        let body = Bytes()
        body.u64(evil).name("copy")
        let r = c.call(.link, node: 1, body)
        #expect(r.ok, "LINK of a symlink: errno \(r.errno)")

        var st = stat()
        #expect(lstat(outside, &st) == 0 && st.st_nlink == 1, "the host file outside the share got a second name (nlink \(st.st_nlink))")
        #expect(lstat(f.path("copy"), &st) == 0 && st.st_mode & S_IFMT == S_IFLNK, "the new name is not a symlink")
        var buf = [CChar](repeating: 0, count: 512)
        let n = readlink(f.path("copy"), &buf, 511)
        #expect(n > 0 && String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) == outside)
        if r.ok { #expect(r.nodeID == evil && r.entryAttr.nlink == 2, "the same node, now with two names") }
    }
}
