import Glibc
import CVfsvmLinux

/// A child process started with posix_spawn(2): QEMU or virtiofsd in
/// integration tests and benchmarks. The child starts with an empty signal
/// mask and default signal dispositions (a thread of ours may block
/// signals, and QEMU would then ignore SIGTERM), stdin from /dev/null, and
/// is killed and reaped when this object goes away while it still runs.
public final class ChildProcess {
    public let pid: pid_t
    private var status: Int32?

    /// Starts `path` with `arguments` (argv[1...]) in our environment;
    /// `stdin` (else /dev/null), `stdout` and `stderr` replace the child's
    /// fds 0, 1 and 2 when given. `inherit` fds stay open in the child at the
    /// same numbers (their close-on-exec flag is cleared for the spawn only);
    /// every other fd above 2 is closed in the child, close-on-exec or not
    /// (a lock file's fd, a pipe some library opened: QEMU and a sandboxed
    /// serve get none of them).
    /// With `ownProcessGroup` the child leads a process group of its own
    /// (`signalGroup` then reaches it and everything it started).
    public init(path: String, arguments: [String], stdin: FileDescriptor? = nil, stdout: FileDescriptor? = nil,
                stderr: FileDescriptor? = nil, inherit: [FileDescriptor] = [],
                ownProcessGroup: Bool = false) throws(SystemError) {
        var actions = posix_spawn_file_actions_t()
        var attributes = posix_spawnattr_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawnattr_init(&attributes)
        defer {
            posix_spawn_file_actions_destroy(&actions)
            posix_spawnattr_destroy(&attributes)
        }
        if let stdin {
            posix_spawn_file_actions_adddup2(&actions, stdin.rawValue, 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        if let stdout { posix_spawn_file_actions_adddup2(&actions, stdout.rawValue, 1) }
        if let stderr { posix_spawn_file_actions_adddup2(&actions, stderr.rawValue, 2) }
        // After the dup2s: close 3 and up but the inherited fds (one by one
        // below the highest of them, all at once above it).
        let kept = Set(inherit.map(\.rawValue))
        let highest = kept.max() ?? 2
        for fd in Int32(3)..<max(3, highest) where !kept.contains(fd) {
            posix_spawn_file_actions_addclose(&actions, fd)
        }
        addCloseFrom(max(3, highest + 1), to: &actions)
        var empty = sigset_t()
        sigemptyset(&empty)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setsigdefault(&attributes, &all)
        var flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF
        if ownProcessGroup {
            flags |= POSIX_SPAWN_SETPGROUP
            posix_spawnattr_setpgroup(&attributes, 0)
        }
        posix_spawnattr_setflags(&attributes, Int16(flags))
        for fd in inherit { _ = vfsvm_fcntl_int(fd.rawValue, F_SETFD, 0) }
        defer { for fd in inherit { _ = vfsvm_fcntl_int(fd.rawValue, F_SETFD, FD_CLOEXEC) } }

        // Safe: the strdup'ed strings live until the call returns and are
        // freed once, below; argv ends with the required NULL.
        var argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, path, &actions, &attributes, &argv, vfsvm_environ())
        withExtendedLifetime((stdin, stdout, stderr, inherit)) {}
        guard rc == 0 else { throw SystemError("posix_spawn(\(path))", Errno(rawValue: rc)) }
        pid = child
    }

    deinit {
        if status == nil {
            _ = Glibc.kill(pid, SIGKILL)
            var s: Int32 = 0
            _ = waitpid(pid, &s, 0)
        }
    }

    /// Sends `signal` (SIGTERM, SIGKILL, ...) unless the child was reaped.
    public func send(signal: Int32) {
        if status == nil { _ = Glibc.kill(pid, signal) }
    }

    /// Sends `signal` to the child's process group (see `ownProcessGroup`)
    /// unless the child was reaped.
    public func signalGroup(_ signal: Int32) {
        if status == nil { _ = Glibc.kill(-pid, signal) }
    }

    /// The raw wait status once the child has been reaped.
    public var waitStatus: Int32? { status }

    /// Reaps the child if it has exited; true while it still runs.
    public var isRunning: Bool {
        if status != nil { return false }
        var s: Int32 = 0
        if waitpid(pid, &s, WNOHANG) == pid { status = s }
        return status == nil
    }

    /// Waits up to `timeoutMilliseconds` for the child to exit; returns its
    /// raw wait status, or nil if it still runs.
    public func wait(timeoutMilliseconds: Int) -> Int32? {
        var left = timeoutMilliseconds
        while isRunning && left > 0 {
            usleep(10_000)
            left -= 10
        }
        return status
    }

    /// The exit code if the child exited normally (not by a signal).
    public var exitCode: Int32? {
        guard let status, status & 0x7f == 0 else { return nil }
        return (status >> 8) & 0xff
    }
}

extension FileDescriptor {
    /// Reads whatever one `read(2)` returns, up to `limit` bytes (empty at
    /// end-of-file): a child's output, a QMP greeting.
    public func readSome(limit: Int = 4096) throws(SystemError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: limit)
        let result: Result<Int, SystemError> = out.withUnsafeMutableBytes { buf in
            Result { () throws(SystemError) in try read(into: buf) }
        }
        out.removeSubrange(try result.get()...)
        return out
    }
}

/// Adds "close every fd from `fd` up" to a posix_spawn's file actions
/// (posix_spawn_file_actions_addclosefrom_np, glibc 2.34).
public func addCloseFrom(_ fd: Int32, to actions: inout posix_spawn_file_actions_t) {
    _ = withUnsafeMutablePointer(to: &actions) { vfsvm_spawn_close_from($0, fd) }
}
