import CVfsvmLinux
import Glibc
import Testing
import VfsvmSys

/// The `vfsvm` executable SwiftPM built next to this test bundle
/// (`swift test` builds every product), or `$VFSVM_BIN`.
func builtExecutable(_ name: String) throws -> String {
    if name == "vfsvm", let bin = getenv("VFSVM_BIN") { return String(cString: bin) }
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    try #require(n > 0, "cannot read /proc/self/exe to find the build directory")
    let exe = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    let dir = exe.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
    let path = dir + "/" + name
    try #require(access(path, X_OK) == 0, "\(path) is missing: build the package (swift build) before running these tests")
    return path
}

/// A temporary directory under /tmp, removed at deinit.
final class TemporaryDirectory {
    let path: String
    init(_ prefix: String = "vfsvm-sandbox") throws {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw SystemError("mkdtemp", .current)
        }
        path = String(cString: p)
    }
    deinit { _ = system("rm -rf '\(path)'") }
}

/// `vfsvm serve` running on a fresh share with the given extra arguments,
/// waited for until it says it is waiting for the frontend (so the sandbox is
/// in place). Killed at deinit.
final class ServeUnderTest {
    let work: TemporaryDirectory
    let share: String
    let process: ChildProcess
    private let stderrPipe: (read: FileDescriptor, write: FileDescriptor)
    private(set) var stderrText = ""

    /// `launcher`, when given, starts serve (e.g. prlimit with a lower
    /// limit, which execs it in place).
    /// The socket serve listens on.
    var socketPath: String { work.path + "/fs.sock" }

    /// `socketOption` names the socket path (`--socket` is its old name).
    init(_ arguments: [String] = [], launcher: [String] = [], socketOption: String = "--socket-path",
         prepare: (String) -> Void = { _ in }) throws {
        try #require(getuid() == 0, "the sandbox needs root (namespaces, pivot_root); these tests cannot run as uid \(getuid())")
        work = try TemporaryDirectory()
        share = work.path + "/share"
        try #require(mkdir(share, 0o755) == 0)
        prepare(share)
        stderrPipe = try makePipe()
        let command = launcher + [try builtExecutable("vfsvm"), "serve", socketOption, work.path + "/fs.sock", "--shared-dir", share] + arguments
        process = try ChildProcess(path: command[0], arguments: Array(command.dropFirst()), stderr: stderrPipe.write)
        var waited = 0
        while !stderrText.contains("waiting for the frontend") && process.isRunning && waited < 10_000 {
            if (try? pollReadable([stderrPipe.read], timeoutMilliseconds: 100)) == [true] {
                stderrText += String(decoding: (try? stderrPipe.read.readSome()) ?? [], as: UTF8.self)
            } else {
                waited += 100
            }
        }
        try #require(stderrText.contains("waiting for the frontend"),
                     "vfsvm serve \(arguments) did not come up; its stderr: \(stderrText)")
    }

    /// Reads what serve wrote to stderr since the last call (without blocking).
    func drainStderr() -> String {
        while (try? pollReadable([stderrPipe.read], timeoutMilliseconds: 0)) == [true] {
            let bytes = (try? stderrPipe.read.readSome()) ?? []
            if bytes.isEmpty { break }
            stderrText += String(decoding: bytes, as: UTF8.self)
        }
        return stderrText
    }

    /// Copies of every fd serve holds (pidfd_getfd), by fd number.
    func heldFDs() throws -> [(number: Int32, fd: FileDescriptor)] {
        let pidfd = vfsvm_pidfd_open(process.pid)
        try #require(pidfd >= 0, "pidfd_open(\(process.pid)): \(Errno.current)")
        let owner = FileDescriptor(owning: pidfd)
        var out: [(Int32, FileDescriptor)] = []
        for n in Int32(0)..<4096 {
            let fd = vfsvm_pidfd_getfd(owner.rawValue, n)
            if fd >= 0 { out.append((n, FileDescriptor(owning: fd))) }
        }
        return out
    }

    /// A line of /proc/<pid>/status of every thread of serve ("CapEff", ...).
    func statusField(_ name: String) throws -> [String] {
        var values: [String] = []
        for tid in try threadIDs() {
            let text = try readTextFile("/proc/\(process.pid)/task/\(tid)/status")
            for line in text.split(separator: "\n") where line.hasPrefix(name + ":") {
                values.append(line.dropFirst(name.count + 1).trimmingCharacters(in: " \t"))
            }
        }
        return values
    }

    func threadIDs() throws -> [String] {
        let dir = try #require(opendir("/proc/\(process.pid)/task"), "opendir(/proc/\(process.pid)/task): \(Errno.current)")
        defer { closedir(dir) }
        var ids: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if name.first?.isNumber == true { ids.append(name) }
        }
        return ids
    }
}

/// Runs `vfsvm serve` on a fresh share with `arguments`, expecting it to
/// refuse to start: its exit code (nil if it did not exit within 10 s or
/// died by a signal) and stderr.
func serveFailing(_ arguments: [String]) throws -> (exitCode: Int32?, stderr: String) {
    let work = try TemporaryDirectory()
    let share = work.path + "/share"
    try #require(mkdir(share, 0o755) == 0)
    let errors = try makePipe()
    let child = try ChildProcess(
        path: try builtExecutable("vfsvm"),
        arguments: ["serve", "--socket-path", work.path + "/fs.sock", "--shared-dir", share] + arguments,
        stderr: errors.write)
    _ = child.wait(timeoutMilliseconds: 10_000)
    let text = availableText(errors.read)
    return (child.exitCode, text)
}

func readTextFile(_ path: String) throws -> String {
    let fd = try FileDescriptor.open(path, O_RDONLY)
    var text: [UInt8] = []
    while true {
        let chunk = try fd.readSome(limit: 65536)
        if chunk.isEmpty { break }
        text += chunk
    }
    return String(decoding: text, as: UTF8.self)
}

extension Substring {
    func trimmingCharacters(in set: String) -> String {
        String(drop(while: { set.contains($0) }).reversed().drop(while: { set.contains($0) }).reversed())
    }
}

/// (st_dev, st_ino) of an fd, or of `name` below it.
func identity(of fd: FileDescriptor) throws -> FileStat { try fd.stat() }

func identity(of name: String, below dir: FileDescriptor) throws(SystemError) -> FileStat {
    let child = try sysCall("openat(\(name))") { vfsvm_openat(dir.rawValue, name, HostFSFlag.path | O_DIRECTORY | O_CLOEXEC, 0) }
    return try FileDescriptor(owning: child).stat()
}

/// Whatever can be read from `fd` now (a child's stderr pipe after it
/// exited), as text.
func availableText(_ fd: FileDescriptor) -> String {
    var text = ""
    while (try? pollReadable([fd], timeoutMilliseconds: 0)) == [true] {
        let bytes = (try? fd.readSome()) ?? []
        if bytes.isEmpty { break }
        text += String(decoding: bytes, as: UTF8.self)
    }
    return text
}
