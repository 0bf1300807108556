import Glibc
import Testing
@testable import VfsvmSys

@Suite struct UnixSocketTests {
    /// bind(2) makes the socket file 0777 & ~umask; listen's is 0600 under
    /// any umask (only its owner may connect; the libvirt hook hands it on).
    @Test func theListeningSocketIsTheOwnersOnly() throws {
        var template = Array("/tmp/vfsvm-sock-XXXXXX".utf8CString)
        let dir = String(cString: try #require(mkdtemp(&template)))
        defer { unlink(dir + "/s"); rmdir(dir) }
        let old = umask(0)
        let listener = try UnixSocket.listen(path: dir + "/s")
        umask(old)
        var st = stat()
        try #require(lstat(dir + "/s", &st) == 0)
        #expect(st.st_mode & S_IFMT == S_IFSOCK && st.st_mode & 0o7777 == 0o600, "mode \(String(st.st_mode & 0o7777, radix: 8))")
        withExtendedLifetime(listener) {}
    }

    @Test func fdsTravelWithTheBytes() throws {
        let (a, b) = try UnixSocket.pair()
        let event = try EventFD(nonBlocking: true)
        try a.send(Array("hdr".utf8), fds: [event.fd])
        let (bytes, got) = try b.receive(upTo: 8, maxFDs: 4)
        #expect(got.count == 3 && bytes == Array("hdr".utf8))
        #expect(got.fds.count == 1 && !got.fdsTruncated)
        // The received fd is the same eventfd: signalling it wakes ours.
        try EventFD(adopting: try #require(got.fds.first)).signal()
        #expect(try event.drain() == 1)
        #expect(fcntl(got.fds[0].rawValue, F_GETFD) & FD_CLOEXEC != 0, "received close-on-exec")
    }

    @Test func surplusFdsAreReportedAndClosed() throws {
        let (a, b) = try UnixSocket.pair()
        // Three copies of a pipe's write end, of which the receiver takes two.
        func sendThreeCopies() throws -> FileDescriptor {
            let pipe = try makePipe()
            try a.send([1], fds: [pipe.write, pipe.write, pipe.write])
            return pipe.read
        }
        func receiveTwo() throws -> (fds: Int, truncated: Bool) {
            let (_, got) = try b.receive(upTo: 1, maxFDs: 2)
            return (got.fds.count, got.fdsTruncated)
        }
        let readEnd = try sendThreeCopies()
        let got = try receiveTwo()
        #expect(got.fds == 2 && got.truncated)
        // Every copy of the write end is closed now, the surplus one
        // included: the read end sees end-of-file instead of blocking.
        #expect(try pollReadable([readEnd], timeoutMilliseconds: 2000) == [true])
        #expect(try readEnd.readSome(limit: 1).isEmpty)
    }

    @Test func readExactlyDistinguishesCleanAndTruncatedEnds() throws {
        let (a, b) = try UnixSocket.pair()
        try a.send([1, 2, 3])
        a.shutdownSocket()
        #expect(try b.readExactly(2) == [1, 2])
        #expect(throws: SystemError("read: connection closed after 1 of 2 bytes", .EPROTO)) { try b.readExactly(2) }
        #expect(try b.readExactly(2) == nil)
    }

    @Test func listenConnectAccept() throws {
        let path = "/tmp/vfsvm-sys-test-\(getpid()).sock"
        defer { unlink(path) }
        let listener = try UnixSocket.listen(path: path)
        #expect(UnixSocket.isListening(listener))
        let client = try UnixSocket.connect(path: path)
        #expect(!UnixSocket.isListening(client))
        let server = try listener.accept()
        try client.send(Array("ping".utf8))
        #expect(try server.readExactly(4) == Array("ping".utf8))
        #expect(try pollReadable([server, client], timeoutMilliseconds: 0) == [false, false])
        try server.send([9])
        #expect(try pollReadable([server, client], timeoutMilliseconds: 1000) == [false, true])
    }

    @Test func socketPathTooLongIsRefused() {
        let path = "/tmp/" + String(repeating: "x", count: 200)
        #expect(throws: SystemError("bind(\(path))", .ENAMETOOLONG)) { _ = try UnixSocket.listen(path: path) }
    }

    @Test func threadRunsAndJoins() throws {
        let event = try EventFD()
        let t = try OSThread { try? event.signal() }
        t.join()
        #expect(try event.drain() == 1)
    }
}
