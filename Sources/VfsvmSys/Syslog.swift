import CVfsvmLinux
import Glibc
import Synchronization

/// Log lines sent to the system logger: datagrams in the BSD syslog
/// format (`<PRI>IDENT[PID]: text`) on a unix socket (`/dev/log`),
/// connected once, so later lines need only write(2) (no socket or
/// connect calls behind seccomp, and the socket's path may vanish behind
/// a sandbox).
public final class SyslogSink: Sendable {
    /// LOG_USER, as virtiofsd logs.
    public static let facilityUser: Int32 = 1
    public static let severityInfo: Int32 = 6

    let socket: FileDescriptor
    let prefix: String

    /// Connects to the logger at `path`.
    public init(path: String = "/dev/log", ident: String = "vfsvm") throws(SystemError) {
        let fd = FileDescriptor(owning: try sysCall("socket(AF_UNIX, SOCK_DGRAM)") {
            Glibc.socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        })
        _ = try sysCall("connect(\(path))") { vfsvm_unix_connect(fd.rawValue, path) }
        socket = fd
        prefix = "<\(Self.facilityUser * 8 + Self.severityInfo)>\(ident)[\(getpid())]: "
    }

    /// Sends one line; false when the logger did not take it.
    public func send(_ line: String) -> Bool {
        var bytes = Array((prefix + line).utf8)
        let n = bytes.withUnsafeMutableBytes { Glibc.write(socket.rawValue, $0.baseAddress, $0.count) }
        return n == bytes.count
    }
}

private let syslogSink = Mutex<SyslogSink?>(nil)

/// Sends every later `logLine` to `sink` (nil: back to stderr). A line the
/// logger does not take goes to stderr.
public func logToSyslog(_ sink: SyslogSink?) {
    syslogSink.withLock { $0 = sink }
}

/// The sink `logLine` uses now, if any.
func currentSyslogSink() -> SyslogSink? { syslogSink.withLock { $0 } }
