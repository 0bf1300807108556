import Glibc
import Testing
import VfsvmConfig
@testable import vfsvm

/// A plan for the tcg path with these shares and disks (nothing is read:
/// the command line is built from the plan alone).
func tcgPlan(shares: [ShareSpec] = [], disks: [DiskSpec] = []) -> RunPlan {
    RunPlan(image: GuestImage(kernel: []), kernelPath: "/k", initrdPath: nil, cmdline: "console=ttyS0",
            shares: shares, disks: disks, memoryBytes: 256 << 20, cpus: 1, transport: nil, ring: .split,
            requestQueues: 1, debug: false)
}

func qemuArguments(_ plan: RunPlan, sockets: [String]? = nil) -> [String] {
    QEMUCommandLine.arguments(for: plan, paths: QEMUCommandLine.Paths(
        memoryFD: 3, kernel: "/k", initrd: nil, shareSockets: sockets ?? plan.shares.indices.map { "/tmp/d/fs\($0).sock" }))
}

/// The values of every `flag` in argv.
func values(of flag: String, in argv: [String]) -> [String] {
    zip(argv, argv.dropFirst()).filter { $0.0 == flag }.map(\.1)
}

@Suite struct QEMUCommandLineTests {
    /// The attacker review's finding 1: a ',' in a tag became a second
    /// -device option (romfile= makes QEMU read a host file the guest can
    /// read). The tag is refused when parsed; the command line also
    /// escapes what reaches it.
    @Test func aTagCannotAddDeviceOptions() throws {
        #expect(throws: ConfigError.self) { try ShareSpec(parsing: "/tmp/s:x,romfile=/etc/shadow") }
        let argv = qemuArguments(tcgPlan(shares: [try ShareSpec(parsing: "/tmp/s:x")]))
        #expect(values(of: "-device", in: argv).contains("vhost-user-fs-pci,chardev=fs0,tag=x,queue-size=1024,num-request-queues=1,packed=off"))
        #expect(QEMUCommandLine.escapeOption("x,romfile=/etc/shadow") == "x,,romfile=/etc/shadow")
    }

    /// Low 10: a ',' in $TMPDIR (the sockets' directory) split -chardev.
    @Test func aCommaInTheSocketPathIsDoubled() throws {
        let argv = qemuArguments(tcgPlan(shares: [try ShareSpec(parsing: "/tmp/s:x")]), sockets: ["/tmp/a,server=on/fs0.sock"])
        #expect(values(of: "-chardev", in: argv).first == "socket,id=fs0,path=/tmp/a,,server=on/fs0.sock")
    }

    /// Medium 7: a disk file named like a QEMU protocol (`nbd:...`,
    /// `fat:rw:DIR`) is opened as a file, never as that protocol.
    @Test(arguments: ["nbd:localhost:10809", "fat:rw:/etc", "json:{\"driver\":\"nbd\"}"])
    func aDiskNamedLikeAProtocolIsAFile(name: String) {
        let argv = qemuArguments(tcgPlan(disks: [DiskSpec(path: name, readOnly: true)]))
        let drive = values(of: "-drive", in: argv)
        #expect(drive.count == 1)
        #expect(drive.first?.hasPrefix("file.driver=file,file.filename=\(name),format=raw,") == true, "\(drive)")
        #expect(drive.first?.contains(",file=") == false && drive.first?.hasPrefix("file=") == false)
    }

    @Test func aCommaInADiskNameIsDoubled() {
        let argv = qemuArguments(tcgPlan(disks: [DiskSpec(path: "/d/a,b.img")]))
        #expect(values(of: "-drive", in: argv).first?.hasPrefix("file.driver=file,file.filename=/d/a,,b.img,format=raw,") == true)
    }
}

@Suite struct RunArgumentTests {
    /// Low 13: a share directory named "-x" became an option of serve's.
    @Test func aShareDirectoryStartingWithADashIsAValue() throws {
        let share = ShareSpec(hostPath: "-rf", tag: try VirtioFSTag("t"), readOnly: true)
        let argv = Run.serveArguments(share, listener: 5, requestQueues: 2)
        #expect(argv == ["serve", "--fd", "5", "--shared-dir=-rf", "--request-queues", "2", "--log-level", "warn", "--readonly"])
        // serve's parser takes it as the directory.
        let serve = try Serve.parse(Array(argv.dropFirst()))
        #expect(serve.sharedDir == "-rf")
    }

    /// Low 14: `--timeout 4294967296` crashed the KVM path (sleep's UInt32);
    /// now it is a usage error (exit 64) before anything starts.
    @Test(arguments: ["4294967296", "31536000", "0", "-1"])
    func aTimeoutOutOfRangeIsAUsageError(timeout: String) {
        do {
            _ = try Run.parse(["--timeout=\(timeout)", "/nonexistent-guest"])
            Issue.record("--timeout \(timeout) accepted")
        } catch {
            #expect(Run.exitCode(for: error).rawValue == 64)
            #expect(Run.message(for: error) == "--timeout must be a positive number of seconds below a year (31536000), got \(timeout)")
        }
    }

    @Test func aTimeoutBelowAYearIsAccepted() throws {
        #expect(try Run.parse(["--timeout", "31535999", "/nonexistent-guest"]).timeout == 31535999)
    }
}

@Suite struct RunPlanShareTests {
    /// `vfsvm run` refuses a share path through a symbolic link before
    /// anything starts, with serve's sentence (serve would refuse it later).
    @Test func aSymlinkedShareIsRefusedBeforeAnythingStarts() throws {
        var template = Array("/tmp/vfsvm-plan-XXXXXX".utf8CString)
        let dir = String(cString: try #require(mkdtemp(&template)))
        defer { unlink(dir + "/link"); rmdir(dir + "/real"); rmdir(dir) }
        try #require(mkdir(dir + "/real", 0o755) == 0 && symlink(dir + "/real", dir + "/link") == 0)
        let plan = tcgPlan(shares: [try ShareSpec(parsing: dir + "/link:t")])
        #expect(throws: PlanError(description: "cannot share \(dir)/link: it is a symbolic link (to \(dir)/real); give the directory's real path", status: 66)) {
            try plan.checkInputs()
        }
        #expect(throws: Never.self) { try tcgPlan(shares: [try ShareSpec(parsing: dir + "/real:t")]).checkInputs() }
    }
}
