import Glibc
import Testing
import VfsvmSys

/// The capabilities a running serve keeps, read from /proc/<pid>/task/*/status
/// of every thread: effective, permitted and bounding sets hold exactly what
/// the share needs, the inheritable and ambient sets are empty.
@Suite(.serialized) struct CapabilityTests {
    static let readWrite: UInt64 = 0x8800_00db  // chown dac_override fowner fsetid setgid setuid mknod setfcap
    static let readOnly: UInt64 = 0xa           // dac_override fowner
    /// dac_read_search: only for open_by_handle_at, with file handles on.
    static let readSearch: UInt64 = 1 << 2

    func expectCapabilities(_ serve: ServeUnderTest, _ expected: UInt64, _ what: String) throws {
        let hex = String(expected, radix: 16)
        let want = String(repeating: "0", count: 16 - hex.count) + hex
        for field in ["CapEff", "CapPrm", "CapBnd"] {
            let values = try serve.statusField(field)
            try #require(!values.isEmpty, "no \(field) in /proc/\(serve.process.pid)/task/*/status")
            #expect(values.allSatisfy { $0 == want }, "\(what): \(field) \(values), expected \(want)")
        }
        for field in ["CapInh", "CapAmb"] {
            let values = try serve.statusField(field)
            #expect(values.allSatisfy { $0 == "0000000000000000" }, "\(what): \(field) \(values), expected none")
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func writableShareKeepsWhatItNeeds() throws {
        try expectCapabilities(try ServeUnderTest(), Self.readWrite, "writable share")
    }

    @Test(.timeLimit(.minutes(1)))
    func readOnlyShareKeepsOverrideAndFowner() throws {
        try expectCapabilities(try ServeUnderTest(["--readonly"]), Self.readOnly, "--readonly share")
    }

    /// The attack DAC_READ_SEARCH allows (open_by_handle_at of a forged
    /// handle, past the mount namespace) is kept only where the user asked
    /// for file handles.
    @Test(.timeLimit(.minutes(1)))
    func onlyFileHandlesKeepReadSearch() throws {
        try expectCapabilities(try ServeUnderTest(["--inode-file-handles=prefer"]), Self.readWrite | Self.readSearch, "--inode-file-handles=prefer")
        try expectCapabilities(try ServeUnderTest(["--readonly", "--inode-file-handles=mandatory"]), Self.readOnly | Self.readSearch,
                               "--readonly --inode-file-handles=mandatory")
    }

    @Test(.timeLimit(.minutes(1)))
    func chrootSandboxDropsTheSame() throws {
        try expectCapabilities(try ServeUnderTest(["--sandbox", "chroot"]), Self.readWrite, "chroot sandbox")
    }

    @Test(.timeLimit(.minutes(1)))
    func modcapsChangesTheSet() throws {
        let serve = try ServeUnderTest(["--modcaps=-mknod:+sys_admin", "-o", "modcaps=-setfcap"])
        try expectCapabilities(serve, Self.readWrite & ~(1 << 27 | 1 << 31) | 1 << 21, "--modcaps -mknod:+sys_admin, -o modcaps=-setfcap")
    }

    @Test(.timeLimit(.minutes(1)))
    func badModcapsIsAClearError() throws {
        let result = try serveFailing(["--modcaps=+sys_adnim"])
        #expect(result.exitCode == 64, "exit \(String(describing: result.exitCode)) (usage errors exit 64)")
        #expect(result.stderr.contains("unknown capability 'sys_adnim'"), "stderr: \(result.stderr)")
    }
}
