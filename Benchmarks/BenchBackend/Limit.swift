import CVfsvmLinux
import Glibc
import VfsvmVhostUserTestSupport

// The "limit" column: the host system calls a perfect backend would make
// for each operation, made directly by this process on a share of its own
// (no FUSE, no rings, no wake-ups), timed with this thread's CPU clock.

/// Open fds on a fresh fixture share.
final class LimitFixture {
    let share: String
    let root: Int32, data: Int32, wfile: Int32, dir: Int32
    private let work: String

    init() throws {
        var template = Array("\(getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp")/bench-backend-limit-XXXXXX".utf8CString)
        guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw FrontendError("cannot create a work directory: \(errnoText())")
        }
        work = String(cString: p)
        share = work + "/share"
        try Fixture.create(at: share)
        root = open(share, vfsvm_o_path() | O_DIRECTORY | O_CLOEXEC)
        data = open(share + "/data", O_RDWR | O_CLOEXEC)
        wfile = open(share + "/wfile", O_RDWR | O_CLOEXEC)
        dir = open(share + "/dir200", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard root >= 0, data >= 0, wfile >= 0, dir >= 0 else { throw FrontendError("cannot open the limit fixture: \(errnoText())") }
    }

    deinit {
        for fd in [root, data, wfile, dir] where fd >= 0 { close(fd) }
        _ = system("rm -rf '\(work)'")
    }
}

/// What each operation's host calls are. Nil: no limit figure.
enum Limit {
    static func body(_ name: String) -> (@Sendable (LimitFixture, Int, UnsafeMutableRawBufferPointer) -> Void)? {
        switch name {
        case "getattr": return { f, _, _ in var st = stat(); _ = fstat(f.data, &st) }
        case "lookup": return { f, _, _ in
            // What a lookup of a not-yet-known name costs: open vfsvm_o_path(), stat, close.
            let fd = openat(f.root, "data", vfsvm_o_path() | O_NOFOLLOW | O_CLOEXEC)
            var st = stat()
            _ = fstat(fd, &st)
            close(fd)
        }
        case "lookup-miss": return { f, _, _ in _ = openat(f.root, "no-such-file", vfsvm_o_path() | O_NOFOLLOW | O_CLOEXEC) }
        case "read-4k": return io(read: true, size: 4096)
        case "read-128k": return io(read: true, size: 128 << 10)
        case "read-1m": return io(read: true, size: 1 << 20)
        case "write-4k": return io(read: false, size: 4096)
        case "write-128k": return io(read: false, size: 128 << 10)
        case "write-1m": return io(read: false, size: 1 << 20)
        case "fsync": return { f, _, _ in _ = fsync(f.wfile) }
        case "create+release+unlink": return { f, k, _ in
            let name = "new-\(k)"
            let fd = openat(f.root, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            if fd >= 0 { close(fd) }
            _ = unlinkat(f.root, name, 0)
        }
        case "readdirplus-200": return { f, _, buf in
            // getdents64 over the directory, then one fstatat per entry.
            _ = lseek(f.dir, 0, SEEK_SET)
            while true {
                let n = vfsvm_getdents64(f.dir, buf.baseAddress, buf.count)
                if n <= 0 { break }
                var p = 0
                while p < n {
                    let entry = buf.baseAddress! + p
                    let reclen = Int(entry.loadUnaligned(fromByteOffset: 16, as: UInt16.self))
                    var st = stat()
                    _ = fstatat(f.dir, entry.assumingMemoryBound(to: CChar.self) + 19, &st, AT_SYMLINK_NOFOLLOW)
                    p += reclen
                }
            }
        }
        default: return nil
        }
    }

    static func io(read: Bool, size: Int) -> @Sendable (LimitFixture, Int, UnsafeMutableRawBufferPointer) -> Void {
        { f, k, buf in
            let offset = off_t((k * size) % Fixture.fileSize)
            if read { _ = pread(f.data, buf.baseAddress, size, offset) } else { _ = pwrite(f.wfile, buf.baseAddress, size, offset) }
        }
    }

    /// CPU µs per iteration of `name`'s host calls, `count` times after a
    /// warm-up; nil when the operation has no limit figure.
    static func measure(_ name: String, _ f: LimitFixture, count: Int) -> Double? {
        guard let body = body(name) else { return nil }
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { buf.deallocate() }
        buf.initializeMemory(as: UInt8.self, repeating: 0x5a)
        for k in 0..<max(1, count / 10) { body(f, k, buf) }
        let t0 = threadCPUNanoseconds()
        for k in 0..<count { body(f, k, buf) }
        return Double(threadCPUNanoseconds() - t0) / 1000 / Double(count)
    }

    static func threadCPUNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
