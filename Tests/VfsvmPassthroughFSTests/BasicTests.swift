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
