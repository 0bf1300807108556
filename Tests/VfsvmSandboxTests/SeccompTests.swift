import CVfsvmLinux
import Glibc
import Testing
import VfsvmSys

/// The seccomp filter, installed for real: by vfsvm-seccomp-probe (the
/// filter with the file server's allow-list, then one system call), and in
/// a running serve (/proc/<pid>/status).
@Suite(.serialized) struct SeccompTests {
    /// getppid(2): harmless, nothing the file server calls, and its result
    /// (the test's pid) shows that it ran.
    static let forbidden = Int32(SYS_getppid)

    func probe(_ mode: String, _ call: String) throws -> (status: Int32?, stderr: String) {
        let errors = try makePipe()
        let child = try ChildProcess(path: try builtExecutable("vfsvm-seccomp-probe"), arguments: [mode, call], stderr: errors.write)
        let status = child.wait(timeoutMilliseconds: 10_000)
        let text = availableText(errors.read)
        return (status, text)
    }

    func diedBySIGSYS(_ status: Int32?) -> Bool {
        guard let status else { return false }
        return status & 0x7f == SIGSYS
    }

    @Test func forbiddenCallKillsWithAClearLine() throws {
        #expect(!SeccompAllowList.fileServer().contains(Self.forbidden))
        let r = try probe("kill", String(Self.forbidden))
        #expect(diedBySIGSYS(r.status), "wait status \(String(describing: r.status)); stderr: \(r.stderr)")
        #expect(r.stderr.contains("vfsvm: seccomp: system call \(Self.forbidden) (arch 0xc000003e) is not on the sandbox's allow-list"),
                "stderr: \(r.stderr)")
        #expect(!r.stderr.contains("returned"), "the call ran: \(r.stderr)")
    }

    @Test func allowedCallRuns() throws {
        let r = try probe("kill", String(SYS_getpid))
        #expect(r.status.map { $0 & 0x7f == 0 && ($0 >> 8) & 0xff == 0 } == true, "status \(String(describing: r.status)); \(r.stderr)")
        #expect(r.stderr.contains("call \(SYS_getpid) returned"), "stderr: \(r.stderr)")
    }

    /// FUSE ACCESS is a request a hostile guest may send whatever its
    /// mount options: the file server's own call for it must be allowed,
    /// not kill the sandboxed server.
    @Test func fuseAccessRunsUnderTheFilter() throws {
        let r = try probe("kill", "fs-access")
        #expect(r.status.map { $0 & 0x7f == 0 && ($0 >> 8) & 0xff == 0 } == true, "status \(String(describing: r.status)); \(r.stderr)")
        #expect(r.stderr.contains("call fs-access returned 0"), "stderr: \(r.stderr)")
    }

    @Test func logModeLetsTheCallRun() throws {
        let r = try probe("log", String(Self.forbidden))
        #expect(r.status.map { $0 & 0x7f == 0 && ($0 >> 8) & 0xff == 0 } == true, "status \(String(describing: r.status)); \(r.stderr)")
        #expect(r.stderr.contains("call \(Self.forbidden) returned \(getpid())"), "stderr: \(r.stderr)")
    }

    @Test(arguments: ["kill", "log"])
    func x32CallsAreKilledEvenForAnAllowedNumber(mode: String) throws {
        let r = try probe(mode, "x32:\(SYS_getpid)")
        #expect(diedBySIGSYS(r.status), "wait status \(String(describing: r.status)); stderr: \(r.stderr)")
        #expect(r.stderr.contains("vfsvm: seccomp: system call"), "stderr: \(r.stderr)")
    }

    /// tgkill is on the list for the process's own threads only: a SIGKILL
    /// to another process of the same uid (a child started before the
    /// filter) is refused, in the file server's list and the VMM's.
    @Test(arguments: ["kill", "vmm"])
    func tgkillOfAnotherProcessIsRefused(mode: String) throws {
        let r = try probe(mode, "tgkill-neighbour")
        #expect(diedBySIGSYS(r.status), "wait status \(String(describing: r.status)); stderr: \(r.stderr)")
        #expect(r.stderr.contains("vfsvm: seccomp: system call \(SYS_tgkill) "), "stderr: \(r.stderr)")
        #expect(!r.stderr.contains("returned"), "the signal was sent: \(r.stderr)")
    }

    @Test(arguments: ["kill", "log"])
    func i386CallsAreKilled(mode: String) throws {
        let r = try probe(mode, "i386-getpid")
        #expect(diedBySIGSYS(r.status), "wait status \(String(describing: r.status)); stderr: \(r.stderr)")
        #expect(r.stderr.contains("(arch 0x40000003)"), "stderr: \(r.stderr)")
    }

    @Test(.timeLimit(.minutes(1)))
    func serveRunsFilteredWithNoNewPrivs() throws {
        let serve = try ServeUnderTest()
        #expect(try serve.statusField("NoNewPrivs").allSatisfy { $0 == "1" })
        #expect(try serve.statusField("Seccomp").allSatisfy { $0 == "2" }, "2 is SECCOMP_MODE_FILTER")
        #expect(try serve.statusField("Seccomp_filters").allSatisfy { $0 == "1" })
    }

    /// virtiofsd's `--seccomp=trap` is accepted: our kill is a trap.
    @Test(.timeLimit(.minutes(1)))
    func virtiofsdTrapSpellingIsAccepted() throws {
        let serve = try ServeUnderTest(["--seccomp=trap"])
        #expect(try serve.statusField("Seccomp").allSatisfy { $0 == "2" })
    }

    @Test(.timeLimit(.minutes(1)))
    func seccompNoneLeavesServeUnfiltered() throws {
        let serve = try ServeUnderTest(["--seccomp", "none"])
        #expect(try serve.statusField("Seccomp").allSatisfy { $0 == "0" })
        // no_new_privs costs nothing and stays.
        #expect(try serve.statusField("NoNewPrivs").allSatisfy { $0 == "1" })
    }

    @Test(.timeLimit(.minutes(1)))
    func badSeccompValueIsAUsageError() throws {
        let r = try serveFailing(["--seccomp", "sometimes"])
        #expect(r.exitCode == 64, "exit \(String(describing: r.exitCode))")
        #expect(r.stderr.contains("--seccomp"), "stderr: \(r.stderr)")
    }
}
