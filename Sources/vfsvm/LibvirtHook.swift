import ArgumentParser
import Glibc
import VfsvmDomain
import VfsvmSys

/// `vfsvm libvirt-hook DOMAIN OPERATION SUB-OPERATION [EXTRA]`: libvirt's
/// QEMU-driver hook (Configs/libvirt-hook-qemu installs it). For the
/// domain's vfsvm shares (`HookPlan`: a `<source socket>` filesystem
/// described in the vfsvm metadata namespace) it starts `vfsvm serve` on
/// each socket at `prepare begin`, in its own session, logging to
/// libvirt's QEMU log directory, its pid next to the socket, and returns
/// once the socket listens; at `release end` it stops them. Every other
/// call returns 0 at once. A failure is one line on stderr (libvirt shows
/// it) and status 1, with whatever this call started stopped again.
struct LibvirtHook: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "libvirt-hook",
        abstract: "libvirt's QEMU hook: serves a domain's vfsvm shares (<source socket> + vfsvm metadata) while it runs.")

    @Argument(parsing: .captureForPassthrough, help: "What libvirt passes: domain name, operation, sub-operation, extra.")
    var arguments: [String] = []

    /// Where the daemons log: libvirt's QEMU log directory.
    static var logDirectory: String { getenv("VFSVM_HOOK_LOG_DIR").map { String(cString: $0) } ?? "/var/log/libvirt/qemu" }

    func run() throws {
        guard HookPlan.needsDomain(arguments) else { return }
        let xml = readStandardInput()
        let plan: HookPlan
        do { plan = try HookPlan.make(arguments: arguments, domainXML: xml) } catch { throw fail(error.description) }
        switch plan {
        case .nothing: return
        case let .start(domain, shares):
            var started: [HookShare] = []
            for share in shares {
                do {
                    try Self.start(share, domain: domain)
                    started.append(share)
                } catch {
                    for s in started { Self.stop(s) }
                    throw fail("domain \(domain): \(error.message)")
                }
            }
        case let .stop(_, shares):
            for share in shares { Self.stop(share) }
        }
    }

    struct HookError: Error { let message: String }

    private func fail(_ line: String) -> ExitCode {
        logLine("vfsvm libvirt-hook: \(line)")
        return ExitCode(1)
    }

    private func readStandardInput() -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while bytes.count < 16 << 20 {
            let n = chunk.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        return bytes
    }

    /// Starts `vfsvm serve` for `share` and waits (5 s at most) until its
    /// socket listens.
    static func start(_ share: HookShare, domain: String) throws(HookError) {
        var st = stat()
        guard stat(share.dir, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
            throw HookError(message: "share \(share.dir) for socket \(share.socket): not a directory")
        }
        try checkSocketDirectory(share.socket)
        // A socket file left by an earlier run would make the bind fail.
        if lstat(share.socket, &st) == 0 {
            guard st.st_mode & S_IFMT == S_IFSOCK else { throw HookError(message: "\(share.socket) exists and is not a socket") }
            if let pid = runningDaemon(share) { throw HookError(message: "\(share.socket) is already served by vfsvm pid \(pid)") }
            unlink(share.socket)
        }
        let pidFile = try createPidFile(share.pidFile)
        let log = "\(logDirectory)/\(domain)-\(share.tag)-vfsvm.log"
        let exe = selfExecutable()
        let argv = [exe] + share.serveArguments
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW, 0o640)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // Nothing the hook inherited from libvirtd reaches the daemon.
        addCloseFrom(3, to: &actions)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // POSIX_SPAWN_SETSID (glibc 2.26): the daemon outlives the hook in
        // a session of its own.
        posix_spawnattr_setflags(&attr, 0x80)
        var pid: pid_t = 0
        let cArgs = argv.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        let rc = posix_spawn(&pid, exe, &actions, &attr, cArgs, environ)
        guard rc == 0 else {
            unlink(share.pidFile)
            throw HookError(message: "cannot start \(exe): \(String(cString: strerror(rc)))")
        }
        try? pidFile.writeAll(Array("\(pid)\n".utf8))
        for _ in 0..<250 {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                unlink(share.pidFile)
                throw HookError(message: "vfsvm serve for \(share.socket) exited at once (status \(status >> 8)); its log \(log) says: \(lastLine(log))")
            }
            if listening(share.socket) {
                do { try handOverSocket(share.socket, user: share.user) } catch {
                    stop(share)
                    throw error
                }
                return
            }
            usleep(20_000)
        }
        stop(share)
        throw HookError(message: "vfsvm serve for \(share.socket) did not listen within 5 s (log: \(log))")
    }

    /// Stops the daemon serving `share` (SIGTERM, then SIGKILL after 5 s)
    /// and removes its pid file and socket. A daemon already gone is fine.
    static func stop(_ share: HookShare) {
        if let pid = runningDaemon(share) {
            kill(pid, SIGTERM)
            var waited = 0
            while alive(pid) && waited < 250 {
                usleep(20_000)
                waited += 1
            }
            if alive(pid) { kill(pid, SIGKILL) }
        }
        unlink(share.pidFile)
        var st = stat()
        if lstat(share.socket, &st) == 0, st.st_mode & S_IFMT == S_IFSOCK { unlink(share.socket) }
    }

    /// The pid in the share's pid file when that process is a vfsvm serve
    /// on this socket (not a recycled pid).
    static func runningDaemon(_ share: HookShare) -> pid_t? {
        guard let text = try? String(contentsOfFile: share.pidFile), let pid = pid_t(text.trimmingCharacters()) , pid > 0, alive(pid) else { return nil }
        guard let cmdline = try? String(contentsOfFile: "/proc/\(pid)/cmdline") else { return nil }
        let args = cmdline.split(separator: "\0").map(String.init)
        return args.contains("serve") && args.contains(share.socket) ? pid : nil
    }

    /// Running and not a zombie waiting for this machine's slow PID 1.
    static func alive(_ pid: pid_t) -> Bool {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat"), let paren = text.lastIndex(of: ")") else { return false }
        let state = String(text[text.index(after: paren)...]).trimmingCharacters().first
        return state != nil && state != "Z" && state != "X"
    }

    /// Whether a listening unix socket is bound at `path` (/proc/net/unix;
    /// connecting to test it would take the daemon's one frontend slot).
    static func listening(_ path: String) -> Bool {
        guard let table = try? String(contentsOfFile: "/proc/net/unix") else { return false }
        for line in table.split(separator: "\n").dropFirst() {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            // Num RefCount Protocol Flags Type St Inode Path; Flags 00010000 is __SO_ACCEPTCON.
            if f.count >= 8, f[7] == path, let flags = Int(f[3], radix: 16), flags & 0x10000 != 0 { return true }
        }
        return false
    }

    static func lastLine(_ path: String) -> String {
        guard let text = try? String(contentsOfFile: path) else { return "(no log)" }
        return text.split(separator: "\n").last.map(String.init) ?? "(empty)"
    }

    static func selfExecutable() -> String {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        guard n > 0 else { return CommandLine.arguments[0] }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

extension String {
    /// Reads a whole (small) file.
    init(contentsOfFile path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw LibvirtHook.HookError(message: "\(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        self = String(decoding: bytes, as: UTF8.self)
    }

    func trimmingCharacters() -> String {
        let ws: (Character) -> Bool = { $0 == " " || $0 == "\n" || $0 == "\t" }
        guard let a = firstIndex(where: { !ws($0) }), let b = lastIndex(where: { !ws($0) }) else { return "" }
        return String(self[a...b])
    }
}
