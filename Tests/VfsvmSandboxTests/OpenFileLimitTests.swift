import Glibc
import Testing
import VfsvmSys

/// `--rlimit-nofile` (virtiofsd's option): serve raises RLIMIT_NOFILE at
/// start, soft and hard, so a guest's open files and the O_PATH cache do not
/// run into the usual soft limit of 1,024.
@Suite(.serialized) struct OpenFileLimitTests {
    /// "Max open files" of /proc/<pid>/limits: (soft, hard).
    func openFileLimit(of pid: pid_t) throws -> (soft: String, hard: String) {
        let text = try readTextFile("/proc/\(pid)/limits")
        let line = try #require(text.split(separator: "\n").first { $0.hasPrefix("Max open files") })
        let fields = line.dropFirst("Max open files".count).split(separator: " ")
        try #require(fields.count >= 2, "unexpected limits line: \(line)")
        return (String(fields[0]), String(fields[1]))
    }

    func fsNrOpen() throws -> String {
        try readTextFile("/proc/sys/fs/nr_open").split(separator: "\n").first.map(String.init) ?? ""
    }

    /// Whether this process (and so the serve it starts) may raise its hard
    /// limit: CAP_SYS_RESOURCE in its effective set. Some containers drop it
    /// from the bounding set.
    func mayRaiseHardLimit() throws -> Bool {
        let status = try readTextFile("/proc/self/status")
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("CapEff:") })
        let mask = try #require(UInt64(line.dropFirst("CapEff:".count).trimmingCharacters(in: " \t"), radix: 16))
        return mask & (1 << 24) != 0  // CAP_SYS_RESOURCE
    }

    /// min(1,000,000, fs.nr_open) where the hard limit may be raised, else
    /// the inherited hard limit (for soft and hard). Started with the usual
    /// soft limit of 1,024 (prlimit execs serve with it).
    @Test(.timeLimit(.minutes(1)))
    func defaultRaisesToAMillionOrAsFarAsAllowed() throws {
        try #require(access("/usr/bin/prlimit", X_OK) == 0, "prlimit (util-linux) is not installed: cannot start serve with a low limit")
        let serve = try ServeUnderTest(launcher: ["/usr/bin/prlimit", "--nofile=1024:"])
        var mine = rlimit()
        try #require(getrlimit(Int32(RLIMIT_NOFILE.rawValue), &mine) == 0)
        let best = min(1_000_000, try #require(UInt64(try fsNrOpen())))
        let expected = String(try mayRaiseHardLimit() ? best : min(best, UInt64(mine.rlim_max)))
        let limit = try openFileLimit(of: serve.process.pid)
        #expect(limit.soft == expected && limit.hard == expected,
                "serve's RLIMIT_NOFILE is \(limit.soft)/\(limit.hard), expected \(expected)/\(expected)")
    }

    /// Above the inherited hard limit: set where CAP_SYS_RESOURCE allows,
    /// else a clear error naming the capability.
    @Test(.timeLimit(.minutes(1)))
    func aboveTheHardLimitNeedsCapSysResource() throws {
        var mine = rlimit()
        try #require(getrlimit(Int32(RLIMIT_NOFILE.rawValue), &mine) == 0)
        let n = UInt64(mine.rlim_max) + 1
        try #require(n <= UInt64(try fsNrOpen()) ?? 0, "the inherited hard limit is fs.nr_open already")
        if try mayRaiseHardLimit() {
            let serve = try ServeUnderTest(["--rlimit-nofile", String(n)])
            let limit = try openFileLimit(of: serve.process.pid)
            #expect(limit.soft == String(n) && limit.hard == String(n), "--rlimit-nofile \(n) gave \(limit.soft)/\(limit.hard)")
        } else {
            let result = try serveFailing(["--rlimit-nofile", String(n)])
            #expect(result.exitCode == 1, "serve with --rlimit-nofile above the hard limit: exit \(String(describing: result.exitCode))")
            #expect(result.stderr.contains("--rlimit-nofile \(n)") && result.stderr.contains("CAP_SYS_RESOURCE"),
                    "stderr: \(result.stderr)")
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func explicitValueSetsSoftAndHard() throws {
        let serve = try ServeUnderTest(["--rlimit-nofile", "4096"])
        let limit = try openFileLimit(of: serve.process.pid)
        #expect(limit.soft == "4096" && limit.hard == "4096", "--rlimit-nofile 4096 gave \(limit.soft)/\(limit.hard)")
    }

    @Test(.timeLimit(.minutes(1)))
    func zeroLeavesTheLimitAlone() throws {
        var mine = rlimit()
        try #require(getrlimit(Int32(RLIMIT_NOFILE.rawValue), &mine) == 0)
        let serve = try ServeUnderTest(["--rlimit-nofile", "0"])
        let limit = try openFileLimit(of: serve.process.pid)
        #expect(limit.soft == String(mine.rlim_cur) && limit.hard == String(mine.rlim_max),
                "--rlimit-nofile 0 changed the inherited \(mine.rlim_cur)/\(mine.rlim_max) to \(limit.soft)/\(limit.hard)")
    }

    @Test(.timeLimit(.minutes(1)))
    func aboveNrOpenIsAClearError() throws {
        let nrOpen = try #require(UInt64(try fsNrOpen()))
        let result = try serveFailing(["--rlimit-nofile", String(nrOpen + 1)])
        #expect(result.exitCode == 1, "serve with --rlimit-nofile above fs.nr_open: exit \(String(describing: result.exitCode))")
        #expect(result.stderr.contains("--rlimit-nofile \(nrOpen + 1)") && result.stderr.contains("fs.nr_open"),
                "stderr: \(result.stderr)")
    }
}
