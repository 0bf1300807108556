import CVfsvmLinux
import Glibc
import Testing
import VfsvmSys

@Suite(.serialized) struct SyslogSinkTests {
    /// A datagram socket bound at a fresh path, standing in for /dev/log.
    private func logger() throws -> (path: String, fd: FileDescriptor) {
        var template = Array("/tmp/vfsvm-log-XXXXXX".utf8CString)
        let dir = try #require(template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }.map { String(cString: $0) })
        let path = dir + "/log"
        let fd = FileDescriptor(owning: Glibc.socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0))
        try #require(vfsvm_unix_bind(fd.rawValue, path) == 0, "bind \(path): \(Errno.current)")
        return (path, fd)
    }

    private func receive(_ fd: FileDescriptor) throws -> String {
        try #require((try? pollReadable([fd], timeoutMilliseconds: 2000)) == [true], "nothing reached the logger")
        return String(decoding: try fd.readSome(limit: 4096), as: UTF8.self)
    }

    @Test func logLinesGoToTheLoggerInSyslogFormat() throws {
        let l = try logger()
        defer { unlink(l.path) }
        let sink = try SyslogSink(path: l.path, ident: "vfsvm")
        logToSyslog(sink)
        defer { logToSyslog(nil) }
        logLine("vfsvm serve: sharing /srv")
        // <PRI> = LOG_USER (1) * 8 + LOG_INFO (6).
        #expect(try receive(l.fd) == "<14>vfsvm[\(getpid())]: vfsvm serve: sharing /srv")
    }

    @Test func noLoggerIsAnErrorNamingThePath() {
        #expect(throws: SystemError.self) { try SyslogSink(path: "/tmp/vfsvm-no-such-logger/log") }
    }
}
