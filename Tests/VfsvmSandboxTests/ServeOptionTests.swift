import Glibc
import Testing

/// virtiofsd options `vfsvm serve` does not implement, as a user meets
/// them: exit 64 and one sentence naming the option and what it does.
@Suite(.serialized) struct ServeOptionRefusalTests {
    /// The long options of the refusal table (VirtiofsdCompat.unimplemented),
    /// spelled out here as a user would type them.
    static let refusedLong: [[String]] = [
        ["--posix-acl"], ["--security-label"], ["--xattrmap", ":map::user.virtiofs.:"], ["--uid-map", ":0:100000:65536:"],
        ["--gid-map", ":0:100000:65536:"], ["--translate-uid", "map:0:1000:1"], ["--translate-gid", "map:0:1000:1"],
        ["--migration-mode", "file-handles"], ["--migration-on-error", "guest-error"], ["--migration-verify-handles"],
        ["--migration-confirm-paths"], ["--announce-submounts"], ["--inode-file-handles=prefer"], ["--allow-mmap"],
        ["--no-readdirplus"], ["--allow-direct-io"], ["--killpriv-v2"], ["--no-killpriv-v2"], ["--preserve-noatime"],
        ["--socket", "/tmp/x.sock"], ["--socket-group", "kvm"], ["--syslog"], ["--daemonize"],
    ]

    @Test(.timeLimit(.minutes(2)), arguments: refusedLong)
    func refusedByName(_ arguments: [String]) throws {
        let name = String(arguments[0].prefix { $0 != "=" })
        let r = try serveFailing(arguments)
        #expect(r.exitCode == 64, "\(arguments): exit \(String(describing: r.exitCode)) (usage errors exit 64)")
        let first = r.stderr.split(separator: "\n").first.map(String.init) ?? ""
        #expect(first.hasPrefix("Error: vfsvm serve does not implement \(name) (virtiofsd: "), "stderr: \(r.stderr)")
    }

    @Test(.timeLimit(.minutes(1)), arguments: ["posix_acl", "announce_submounts", "xattrmap=:map::user.virtiofs.:", "timeout=5"])
    func refusedInTheOptionList(_ option: String) throws {
        let name = String(option.prefix { $0 != "=" })
        let r = try serveFailing(["-o", "cache=auto,\(option)"])
        #expect(r.exitCode == 64, "-o \(option): exit \(String(describing: r.exitCode))")
        #expect(r.stderr.hasPrefix("Error: vfsvm serve does not implement -o \(name) (virtiofsd: "), "stderr: \(r.stderr)")
    }

    @Test(.timeLimit(.minutes(1)))
    func garbageIsStillAnUnknownOption() throws {
        let r = try serveFailing(["--frobnicate"])
        #expect(r.exitCode == 64, "exit \(String(describing: r.exitCode))")
        #expect(r.stderr.contains("--frobnicate") && !r.stderr.contains("does not implement"), "stderr: \(r.stderr)")
    }
}
