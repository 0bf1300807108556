import Glibc
import Testing
import VfsvmSys

/// A file server that is not root (`vfsvm run --accel kvm` by a user in
/// the kvm group, `vfsvm serve` started by an unprivileged user) has no
/// CAP_DAC_READ_SEARCH, so open_by_handle_at fails with EPERM although
/// name_to_handle_at works: inodes must then be named by (parent, name),
/// or every OPEN fails.
@Suite(.serialized) struct UnprivilegedServerTests {
    @Test func lookupThenOpenAndReadAsNobody() throws {
        guard getuid() == 0, access("/usr/bin/setpriv", X_OK) == 0 else {
            Issue.record("needs root and setpriv(1) to run the server as an unprivileged user; cannot run here")
            return
        }
        let errors = try makePipe()
        // fuse-request-loop read N: INIT, LOOKUP f, OPEN f, then N READs of
        // 4 KiB, on a share it makes in /tmp as the user it runs as.
        let child = try ChildProcess(path: "/usr/bin/setpriv",
                                     arguments: ["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                                                 try builtExecutable("fuse-request-loop"), "read", "3"],
                                     stderr: errors.write)
        let status = child.wait(timeoutMilliseconds: 30_000)
        let stderr = availableText(errors.read)
        #expect(status.map { $0 & 0x7f == 0 && ($0 >> 8) & 0xff == 0 } == true,
                "status \(String(describing: status)); stderr: \(stderr)")
        #expect(!stderr.contains("failed"), "stderr: \(stderr)")
    }
}
