import Testing
import Glibc
@testable import VfsvmSys

@Suite struct SysTests {
    @Test func pollOfThreeFdsSaysWhichAreReadyAndIgnoresANegativeOne() throws {
        let a = try EventFD(nonBlocking: true), b = try EventFD(nonBlocking: true), c = try EventFD(nonBlocking: true)
        #expect(try pollReadable(a.fd.rawValue, b.fd.rawValue, c.fd.rawValue, timeoutMilliseconds: 0) == 0)
        try b.signal()
        #expect(try pollReadable(a.fd.rawValue, b.fd.rawValue, c.fd.rawValue, timeoutMilliseconds: 1000) == 2)
        try c.signal()
        #expect(try pollReadable(a.fd.rawValue, b.fd.rawValue, c.fd.rawValue, timeoutMilliseconds: 0) == 6)
        #expect(try pollReadable(a.fd.rawValue, -1, c.fd.rawValue, timeoutMilliseconds: 0) == 4)
        _ = try b.drain(); _ = try c.drain()
        try a.signal()
        #expect(try pollReadable(a.fd.rawValue, b.fd.rawValue, -1, timeoutMilliseconds: 0) == 1)
    }

    /// The queue threads' wait: a kick eventfd that is never read still
    /// wakes the next wait after each new write, and only then.
    @Test func edgeTriggeredWaitWakesOncePerWriteWithoutReads() throws {
        let a = try EventFD(nonBlocking: true), b = try EventFD(nonBlocking: true), c = try EventFD(nonBlocking: true)
        try c.signal()  // readable before the set exists: reported by the first wait
        let w = try EdgeTriggeredWait([a.fd.rawValue, -1, b.fd.rawValue, c.fd.rawValue])
        #expect(try w.wait(timeoutMilliseconds: 1000) == (8, 0))
        #expect(try w.wait(timeoutMilliseconds: 0) == (0, 0), "c is still readable (never read), but nothing new was written")
        try b.signal()
        #expect(try w.wait(timeoutMilliseconds: 1000) == (4, 0))
        try b.signal()
        try a.signal()
        #expect(try w.wait(timeoutMilliseconds: 1000) == (5, 0), "b woke again without being read, with a")
        #expect(try w.wait(timeoutMilliseconds: 0) == (0, 0))
        w.remove(a.fd.rawValue)
        try a.signal()
        #expect(try w.wait(timeoutMilliseconds: 0) == (0, 0), "a removed fd no longer wakes")
        #expect(try b.drain() == 2, "the set never read the counter")
    }

    @Test func edgeTriggeredWaitReportsAHungUpPipeAsFailed() throws {
        let readEnd: FileDescriptor
        var writer: FileDescriptor?
        do { let p = try makePipe(); readEnd = p.read; writer = p.write }
        let w = try EdgeTriggeredWait([readEnd.rawValue])
        #expect(try w.wait(timeoutMilliseconds: 0) == (0, 0))
        withExtendedLifetime(writer) {}
        writer = nil  // the last reference: closed, the read end hangs up
        #expect(try w.wait(timeoutMilliseconds: 1000) == (1, 1))
        #expect(try w.wait(timeoutMilliseconds: 0) == (0, 0), "a hang-up is reported once, not on every wait")
    }

    @Test func eventfdCountsSignals() throws {
        let e = try EventFD(nonBlocking: true)
        #expect(try e.drain() == 0, "a fresh non-blocking eventfd drains to zero instead of failing")
        try e.signal()
        try e.signal()
        #expect(try e.drain() == 2)
        #expect(try e.drain() == 0)
    }

    @Test func failedCallCarriesNameAndErrno() {
        #expect(throws: SystemError("open(/nonexistent/vfsvm)", .ENOENT)) {
            _ = try FileDescriptor.open("/nonexistent/vfsvm", O_RDONLY)
        }
    }

    @Test func memfdMappingIsSharedThroughTheFd() throws {
        let fd = try MemFD.create(name: "test", size: 8192)
        let a = try MemoryMapping(fd: fd, count: 8192)
        let b = try MemoryMapping(fd: fd, count: 8192)
        a.base.storeBytes(of: 0xdead_beef as UInt32, toByteOffset: 4096, as: UInt32.self)
        #expect(b.base.load(fromByteOffset: 4096, as: UInt32.self) == 0xdead_beef)
        var byte: UInt8 = 0
        let n = try withUnsafeMutableBytes(of: &byte) { try fd.pread(into: $0, at: 4096) }
        #expect(n == 1 && byte == 0xef)
    }

    @Test func pipeRoundTrip() throws {
        let (r, w) = try makePipe()
        try w.writeAll(Array("hello".utf8))
        var buf = [UInt8](repeating: 0, count: 16)
        let n = try buf.withUnsafeMutableBytes { try r.read(into: $0) }
        #expect(Array(buf[0..<n]) == Array("hello".utf8))
    }
}
