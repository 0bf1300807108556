import VfsvmFUSETestSupport
import Glibc
import Testing
import VfsvmFUSE
import VfsvmPassthroughFS
import VfsvmSys

@Suite struct BasicTests {
    @Test func createWriteReadThroughTheServer() throws {
        let f = try Fixture()
        let c = f.client
        let r = c.create(1, "hello.txt", mode: 0o640)
        #expect(r.ok)
        let node = r.nodeID, fh = r.createHandle
        #expect(node >= 2)
        #expect(r.entryAttr.mode == 0o100640)
        let w = c.write(node, fh: fh, offset: 0, Array("hello, world".utf8))
        #expect(w.ok)
        #expect(w.u32 == 12)
        #expect(f.readHost("hello.txt") == "hello, world")
        let rd = c.read(node, fh: fh, offset: 7, size: 100)
        #expect(rd.ok)
        #expect(String(decoding: rd.body, as: UTF8.self) == "world")
        #expect(c.release(node, fh: fh).ok)
        let l = c.lookup(1, "hello.txt")
        #expect(l.ok && l.nodeID == node)
        #expect(l.entryAttr.size == 12)
    }
}

@Suite struct SessionTests {
    @Test func destroyDropsEverythingAndASecondInitStartsAfresh() throws {
        let f = try Fixture()
        f.writeHost("a", "x")
        let c = f.client
        let n = c.lookup(1, "a").nodeID
        let fh = c.open(n).openHandle
        #expect(f.fs.inodeCount == 2)
        #expect(c.call(.destroy, node: 0).ok)
        #expect(f.fs.inodeCount == 1)
        #expect(c.getattr(1).errno == EIO)  // no session
        #expect(c.initSession().ok)
        #expect(c.getattr(n).errno == ESTALE)
        #expect(c.read(n, fh: fh, offset: 0, size: 1).errno == EBADF)
        #expect(c.lookup(1, "a").ok)
    }
}
