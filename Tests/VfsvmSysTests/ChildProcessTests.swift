import Glibc
import Testing
@testable import VfsvmSys

/// The fds a child of ours holds: QEMU and the sandboxed serve got every fd
/// of vfsvm's that was not close-on-exec (the attacker review saw fd 3,
/// the flock lock file, and a pipe at fd 251 inside QEMU).
@Suite struct ChildProcessTests {
    /// The fd numbers `ls /proc/self/fd` lists in a child started with
    /// `inherit` (ls's own directory fd included).
    func childFDs(inherit: [FileDescriptor]) throws -> Set<Int32> {
        let out = try makePipe()
        let child = try ChildProcess(path: "/bin/ls", arguments: ["/proc/self/fd"], stdout: out.write, inherit: inherit)
        _ = child.wait(timeoutMilliseconds: 10_000)
        #expect(child.exitCode == 0)
        var text = ""
        while (try? pollReadable([out.read], timeoutMilliseconds: 0)) == [true] {
            let bytes = try out.read.readSome()
            if bytes.isEmpty { break }
            text += String(decoding: bytes, as: UTF8.self)
        }
        return Set(text.split(whereSeparator: { $0 == "\n" || $0 == " " }).compactMap { Int32($0) })
    }

    @Test func fdsThatAreNotCloseOnExecStayWithUs() throws {
        // Not close-on-exec, as a library might leave them: one low, one high.
        let low = open("/dev/null", O_RDONLY)
        let high = fcntl(low, F_DUPFD, 251)
        try #require(low >= 3 && high >= 251)
        defer { close(low); close(high) }
        let kept = try FileDescriptor.open("/dev/null", O_RDONLY)
        let fds = try childFDs(inherit: [kept])
        #expect(!fds.contains(low) && !fds.contains(high), "the child holds \(fds.sorted()) (leaked: \(low), \(high))")
        #expect(fds.contains(kept.rawValue), "the inherited fd \(kept.rawValue) is missing from \(fds.sorted())")
        // 0-2, the inherited fd and ls's own directory fd; nothing else.
        #expect(fds.subtracting([0, 1, 2, kept.rawValue]).count <= 1, "the child holds \(fds.sorted())")
    }
}
