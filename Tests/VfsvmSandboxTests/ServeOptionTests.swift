import Glibc
import VfsvmSys
import Testing

/// virtiofsd options `vfsvm serve` does not implement, as a user meets
/// them: exit 64 and one sentence naming the option and what it does.
@Suite(.serialized) struct ServeOptionRefusalTests {
    /// The long options of the refusal table (VirtiofsdCompat.unimplemented),
    /// spelled out here as a user would type them.
    static let refusedLong: [[String]] = [
        ["--uid-map", ":0:100000:65536:"],
        ["--gid-map", ":0:100000:65536:"],
        ["--migration-mode", "file-handles"], ["--migration-on-error", "guest-error"], ["--migration-verify-handles"],
        ["--migration-confirm-paths"], ["--daemonize"],
    ]

    @Test(.timeLimit(.minutes(2)), arguments: refusedLong)
    func refusedByName(_ arguments: [String]) throws {
        let name = String(arguments[0].prefix { $0 != "=" })
        let r = try serveFailing(arguments)
        #expect(r.exitCode == 64, "\(arguments): exit \(String(describing: r.exitCode)) (usage errors exit 64)")
        let first = r.stderr.split(separator: "\n").first.map(String.init) ?? ""
        #expect(first.hasPrefix("Error: vfsvm serve does not implement \(name) (virtiofsd: "), "stderr: \(r.stderr)")
    }

    @Test(.timeLimit(.minutes(1)), arguments: ["allow_root", "max_idle_threads=4"])
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

/// virtiofsd options `vfsvm serve` implements: a virtiofsd command line
/// using them starts (and says so on stderr).
@Suite(.serialized) struct ServeOptionAcceptedTests {
    static let accepted: [[String]] = [
        ["--no-readdirplus"], ["--killpriv-v2"], ["--no-killpriv-v2"], ["--announce-submounts"], ["--no-announce-submounts"],
        ["--allow-direct-io"], ["--allow-mmap", "--cache", "metadata"], ["--preserve-noatime"], ["--inode-file-handles=never"],
        ["--inode-file-handles=prefer"], ["--inode-file-handles=fallback"], ["--inode-file-handles=mandatory"],
        ["--log-level", "trace"], ["--translate-uid", "map:0:1000:1", "--translate-gid=squash-guest:0:100:65536", "--translate-uid", "forbid-guest:5:1"],
        ["-o", "readdirplus,no_readdirplus,killpriv_v2,no_killpriv_v2,allow_direct_io,no_allow_direct_io,announce_submounts"],
        ["-o", "no_posix_acl,no_security_label,cache=metadata,log_level=info,loglevel=info"], ["-o", "cache=auto,timeout=2.5"],
        ["--xattrmap", ":map::user.virtiofs.:"], ["--posix-acl"], ["-o", "posix_acl,no_posix_acl"],
        ["--security-label"], ["-o", "security_label"], ["--security-label", "--xattrmap", ":map:security.:user.virtiofs.:"],
        // virtiofsd's README, unchanged: squash every guest id onto one host user, show it as 1000.
        ["--translate-uid", "squash-guest:0:1001:4294967295", "--translate-gid", "squash-guest:0:100:4294967295",
         "--translate-uid", "host:1001:1000:1", "--translate-gid", "host:100:1000:1"], ["-o", "xattrmap=/prefix/all/trusted./user.virtiofs./ /bad/server//trusted./ /bad/client/user.virtiofs.// /ok/all///"],
    ]

    @Test(.timeLimit(.minutes(2)), arguments: accepted)
    func starts(_ arguments: [String]) throws {
        let s = try ServeUnderTest(arguments)
        #expect(s.process.isRunning, "\(arguments): \(s.drainStderr())")
    }

    @Test(.timeLimit(.minutes(1)))
    func badValuesSayWhatIsAccepted() throws {
        let r = try serveFailing(["--inode-file-handles=sometimes"])
        #expect(r.exitCode == 64 && r.stderr.contains("--inode-file-handles"), "stderr: \(r.stderr)")
        let t = try serveFailing(["--translate-uid", "map:0:1000"])
        #expect(t.exitCode == 64 && t.stderr.contains("--translate-uid map:0:1000") && t.stderr.contains("expected map:A:B:COUNT"), "stderr: \(t.stderr)")
        let x = try serveFailing(["--xattrmap", ":prefix:everywhere:a:b:"])
        #expect(x.exitCode == 64 && x.stderr.contains("invalid --xattrmap") && x.stderr.contains("unknown scope 'everywhere'"), "stderr: \(x.stderr)")
        let a = try serveFailing(["--posix-acl", "--translate-uid", "map:0:1000:1"])
        #expect(a.exitCode == 64 && a.stderr.contains("--posix-acl cannot be used with --translate-uid"), "stderr: \(a.stderr)")
        let l = try serveFailing(["-o", "log_level=loud"])
        #expect(l.exitCode == 64 && l.stderr.contains("log_level=loud") && l.stderr.contains("expected off, error"), "stderr: \(l.stderr)")
    }
}

/// --socket, --socket-group and --syslog as virtiofsd has them.
@Suite(.serialized) struct ServeSocketAndLogTests {
    private func mode(_ path: String) -> (mode: mode_t, gid: gid_t)? {
        var st = stat()
        guard lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFSOCK else { return nil }
        return (st.st_mode & 0o777, st.st_gid)
    }

    @Test(.timeLimit(.minutes(1)))
    func socketIsTheOldNameOfSocketPath() throws {
        let s = try ServeUnderTest([], socketOption: "--socket")
        #expect(mode(s.socketPath) != nil, "a listening socket at --socket's path")
    }

    @Test(.timeLimit(.minutes(1)))
    func socketIsOwnerOnlyWithoutAGroup() throws {
        let s = try ServeUnderTest()
        #expect(mode(s.socketPath)?.mode == 0o600)
    }

    @Test(.timeLimit(.minutes(1)))
    func socketGroupGivesTheGroupAccess() throws {
        let group = try #require(getgrnam("disk"), "the test uses the group 'disk' (gid 6), which Debian always has")
        let gid = group.pointee.gr_gid
        let s = try ServeUnderTest(["--socket-group", "disk"])
        let m = try #require(mode(s.socketPath))
        #expect(m.mode == 0o660 && m.gid == gid, "mode \(String(m.mode, radix: 8)), gid \(m.gid)")
    }

    @Test(.timeLimit(.minutes(1)))
    func socketGroupRefusals() throws {
        let r = try serveFailing(["--socket-group", "no-such-group-vfsvm"])
        #expect(r.exitCode == 1 && r.stderr.contains("--socket-group no-such-group-vfsvm: no such group"), "stderr: \(r.stderr)")
        let both = try serveFailing(["--socket", "/tmp/other.sock"])
        #expect(both.exitCode == 64 && both.stderr.contains("exactly one of"), "stderr: \(both.stderr)")
    }

    @Test(.timeLimit(.minutes(1)))
    func syslogFallsBackToStderrWithoutALogger() throws {
        guard access("/dev/log", F_OK) != 0 else {
            print("syslogFallsBackToStderrWithoutALogger: /dev/log exists here, so the fallback to stderr cannot be seen; SyslogSinkTests cover the sink")
            return
        }
        let s = try ServeUnderTest(["--syslog"])
        #expect(s.drainStderr().contains("cannot log to syslog"), "stderr: \(s.stderrText)")
    }
}

@Suite struct ServeCapabilitiesTests {
    /// What QEMU and libvirt read (docs/interop/vhost-user.json): a file
    /// system backend taking separate options; no migrate-precopy, since
    /// vfsvm serve cannot migrate.
    @Test(.timeLimit(.minutes(1)))
    func printCapabilitiesListsExactlyWhatIsImplemented() throws {
        let out = try makePipe()
        let child = try ChildProcess(path: try builtExecutable("vfsvm"), arguments: ["serve", "--print-capabilities"], stdout: out.write)
        _ = child.wait(timeoutMilliseconds: 10_000)
        #expect(child.exitCode == 0)
        var text = ""
        while (try? pollReadable([out.read], timeoutMilliseconds: 0)) == [true] {
            let bytes = (try? out.read.readSome()) ?? []
            if bytes.isEmpty { break }
            text += String(decoding: bytes, as: UTF8.self)
        }
        let compact = text.filter { !$0.isWhitespace }
        #expect(compact == #"{"type":"fs","features":["separate-options"]}"#, "printed: \(text)")
    }
}
