import Glibc
import Testing
@testable import VfsvmSys

/// The fds a child of ours holds: QEMU and the sandboxed serve got every fd
/// of vfsvm's that was not close-on-exec (the attacker review saw fd 3,
/// the flock lock file, and a pipe at fd 251 inside QEMU).
@Suite struct ChildProcessTests {
    /// What `ls -l /proc/self/fd` shows in a child started with `inherit`:
    /// fd number -> target.
    func childFDs(inherit: [FileDescriptor]) throws -> [Int32: String] {
        let out = try makePipe()
        let child = try ChildProcess(path: "/bin/ls", arguments: ["-l", "/proc/self/fd"], stdout: out.write, inherit: inherit)
        _ = child.wait(timeoutMilliseconds: 10_000)
        #expect(child.exitCode == 0)
        var text = ""
        while (try? pollReadable([out.read], timeoutMilliseconds: 0)) == [true] {
            let bytes = try out.read.readSome()
            if bytes.isEmpty { break }
            text += String(decoding: bytes, as: UTF8.self)
        }
        var fds: [Int32: String] = [:]
        for line in text.split(separator: "\n") {
            // "lr-x------ 1 root root 64 Dec  3 09:42 3 -> /tmp/x"
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard let arrow = parts.firstIndex(of: "->"), arrow > 0, let n = Int32(parts[arrow - 1]) else { continue }
            fds[n] = parts[(arrow + 1)...].joined(separator: " ")
        }
        return fds
    }

    func tempFile(_ name: String) throws -> String {
        var template = Array("/tmp/vfsvm-\(name)-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        try #require(fd >= 0)
        close(fd)
        return template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    @Test func fdsThatAreNotCloseOnExecStayWithUs() throws {
        // Not close-on-exec, as a library might leave them: one low, one
        // high, on a file of their own (ls's own fds may reuse the numbers).
        let leakedPath = try tempFile("leak"), keptPath = try tempFile("kept")
        defer { unlink(leakedPath); unlink(keptPath) }
        let low = open(leakedPath, O_RDONLY)
        let high = fcntl(low, F_DUPFD, 251)
        try #require(low >= 3 && high >= 251)
        defer { close(low); close(high) }
        let kept = try FileDescriptor.open(keptPath, O_RDONLY)
        let fds = try childFDs(inherit: [kept])
        #expect(!fds.values.contains(leakedPath), "the child holds \(fds) (leaked: \(low), \(high))")
        #expect(fds[kept.rawValue] == keptPath, "the inherited fd \(kept.rawValue) is missing from \(fds)")
    }
}
