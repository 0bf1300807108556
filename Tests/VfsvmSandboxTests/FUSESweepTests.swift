import CVfsvmLinux
import Glibc
import Testing
import VfsvmSys

/// Every FUSE request a guest can send, through the file server `vfsvm
/// serve` builds and under the seccomp filter serve installs (kill mode):
/// vfsvm-fuse-sweep (Tests/FUSESweepProbe) per I/O engine and per set of
/// options. A system call the server makes for some request and the
/// allow-list lacks kills the sweep by SIGSYS, with the reporter's line
/// naming the call: that is what a hostile guest's request would do to the
/// sandboxed serve.
@Suite(.serialized) struct FUSESweepTests {
    struct Run {
        var status: Int32?
        var stderr: String
        var exitedZero: Bool { status.map { $0 & 0x7f == 0 && ($0 >> 8) & 0xff == 0 } == true }
        /// The last lines: where the sweep stopped, and why.
        var tail: String { stderr.split(separator: "\n").suffix(12).joined(separator: "\n") }
    }

    func sweep(engine: String, variant: String, seccomp: String = "kill") throws -> Run {
        try #require(getuid() == 0, "the sweep enters serve's namespace sandbox, which needs root; it cannot run as uid \(getuid())")
        let work = try TemporaryDirectory("vfsvm-sweep")
        let share = work.path + "/share"
        try #require(mkdir(share, 0o755) == 0)
        let errors = try makePipe()
        let child = try ChildProcess(path: try builtExecutable("vfsvm-fuse-sweep"), arguments: [engine, variant, share, seccomp],
                                     stderr: errors.write)
        var text = ""
        var waited = 0
        // Read as it runs (a few hundred lines), until the pipe is done.
        while waited < 120_000 {
            if (try? pollReadable([errors.read], timeoutMilliseconds: 100)) == [true] {
                let bytes = (try? errors.read.readSome()) ?? []
                text += String(decoding: bytes, as: UTF8.self)
                if bytes.isEmpty && !child.isRunning { break }
            } else {
                waited += 100
                if !child.isRunning { break }
            }
        }
        let status = child.wait(timeoutMilliseconds: 10_000)
        while (try? pollReadable([errors.read], timeoutMilliseconds: 0)) == [true] {
            let bytes = (try? errors.read.readSome()) ?? []
            if bytes.isEmpty { break }
            text += String(decoding: bytes, as: UTF8.self)
        }
        return Run(status: status, stderr: text)
    }

    @Test(arguments: ["uring", "sync"], ["default", "options", "plain", "readonly"])
    func everyRequestRunsUnderTheFilter(engine: String, variant: String) throws {
        let r = try sweep(engine: engine, variant: variant)
        #expect(!r.stderr.contains("not on the sandbox's allow-list"), "a request needed a system call the filter refuses:\n\(r.tail)")
        let unexpected = r.stderr.split(separator: "\n").filter { $0.contains("UNEXPECTED") }
        #expect(unexpected.isEmpty, "\(unexpected.joined(separator: "\n"))")
        #expect(r.exitedZero, "wait status \(String(describing: r.status)); the sweep ended:\n\(r.tail)")
        // The filter was in place, and the sweep got to its end.
        #expect(r.stderr.contains("seccomp kill: filter in place"), "\(r.tail)")
        #expect(r.stderr.contains("every one answered as expected"), "\(r.tail)")
        #expect(r.stderr.contains("vfsvm-fuse-sweep: INIT after the second DESTROY: ok"), "\(r.tail)")
    }

    /// The sweep is not blind: with one call the server needs taken off the
    /// list (faccessat2, for ACCESS: the call a guest's first ACCESS request
    /// killed serve with before 18455da), it dies by SIGSYS naming it.
    @Test(arguments: ["uring", "sync"])
    func aMissingCallKillsTheSweep(engine: String) throws {
        let r = try sweep(engine: engine, variant: "default", seccomp: "kill-without:\(SYS_faccessat2)")
        #expect(r.status.map { $0 & 0x7f == SIGSYS } == true, "wait status \(String(describing: r.status)); the sweep ended:\n\(r.tail)")
        #expect(r.stderr.contains("vfsvm: seccomp: system call \(SYS_faccessat2) (arch 0xc000003e) is not on the sandbox's allow-list"), "\(r.tail)")
        #expect(!r.stderr.contains("every one answered"), "\(r.tail)")
    }
}
