import Glibc
import Testing
import VfsvmSys

/// `vfsvm run --accel tcg` with a stdout that does not take the console
/// (the attacker review's Low 15): the console pump was joined without
/// bound after a stop, so a stdout nobody drained kept vfsvm (and its
/// --timeout) waiting forever, and a closed stdout killed vfsvm by SIGPIPE
/// before its cleanup. QEMU is replaced by a script that floods its stdout
/// (COM1) and ignores its arguments ($VFSVM_QEMU).
@Suite(.serialized) struct TCGConsoleTests {
    static let guest: String = {
        let here = #filePath.split(separator: "/", omittingEmptySubsequences: false).dropLast(3).joined(separator: "/")
        return getenv("VFSVM_GUEST").map { String(cString: $0) } ?? here + "/Images/out/guest.img"
    }()

    /// Runs vfsvm with the flooding QEMU, its stdout the write end of a
    /// pipe whose read end `reader` decides about, TMPDIR in the work
    /// directory. Returns the wait status (nil: still running after
    /// `limit` ms, then killed), the elapsed time and what is left in TMPDIR.
    func run(_ extra: [String], closeReader: Bool, limit: Int) throws -> (status: Int32?, exitCode: Int32?, ms: Int, left: [String]) {
        try #require(access(Self.guest, R_OK) == 0, "no guest at \(Self.guest): build Images (make images) or set VFSVM_GUEST")
        let work = try TemporaryDirectory("vfsvm-tcg-console")
        let qemu = work.path + "/fake-qemu"
        try FileDescriptor.open(qemu, O_WRONLY | O_CREAT, mode: 0o755).writeAll(Array("#!/bin/sh\nexec yes 'vfsvm console flood line'\n".utf8))
        let tmp = work.path + "/tmp"
        try #require(mkdir(tmp, 0o700) == 0)
        var out: (read: FileDescriptor, write: FileDescriptor)? = try makePipe()
        let writer = out!.write
        // The read end: kept (never read) or closed before vfsvm starts.
        let held: FileDescriptor? = closeReader ? nil : out!.read
        out = nil
        let devnull = try FileDescriptor.open("/dev/null", O_WRONLY)
        let start = ContinuousClock.now
        let child = try ChildProcess(path: "/usr/bin/env",
                                     arguments: ["TMPDIR=\(tmp)", "VFSVM_QEMU=\(qemu)", try builtExecutable("vfsvm"), "run", "--accel", "tcg"]
                                        + extra + [Self.guest],
                                     stdout: writer, stderr: devnull)
        withExtendedLifetime(writer) {}
        let status = child.wait(timeoutMilliseconds: limit)
        let ms = Int((ContinuousClock.now - start).components.seconds * 1000)
        if status == nil { child.send(signal: SIGKILL) }
        withExtendedLifetime(held) {}
        var left: [String] = []
        if let d = opendir(tmp) {
            while let e = readdir(d) {
                let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if name != "." && name != ".." { left.append(name) }
            }
            closedir(d)
        }
        return (status, child.exitCode, ms, left)
    }

    @Test(.timeLimit(.minutes(1)))
    func aStdoutNobodyDrainsDoesNotHoldTheTimeout() throws {
        let r = try run(["--timeout", "2"], closeReader: false, limit: 20_000)
        #expect(r.status != nil, "vfsvm was still running 20 s after a 2 s --timeout (its stdout full)")
        #expect(r.exitCode == 124, "wait status \(String(describing: r.status))")
        #expect(r.left.isEmpty, "left in TMPDIR: \(r.left)")
    }

    @Test(.timeLimit(.minutes(1)))
    func aClosedStdoutStopsTheGuestAndCleansUp() throws {
        let r = try run(["--timeout", "30"], closeReader: true, limit: 20_000)
        #expect(r.status != nil, "vfsvm was still running 20 s after its stdout closed")
        #expect(r.exitCode == 141, "wait status \(String(describing: r.status)) (141: the exit status SIGPIPE would give, without dying of it)")
        #expect(r.ms < 15_000, "took \(r.ms) ms")
        #expect(r.left.isEmpty, "left in TMPDIR: \(r.left)")
    }
}
