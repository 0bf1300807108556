import VfsvmFUSETestSupport
import Glibc
import Testing
import VfsvmFUSE
import VfsvmPassthroughFS
import VfsvmSys

/// A temporary shared directory under /tmp, removed at deinit, with a
/// server and an initialized client over it.
final class Fixture {
    let dir: String
    let fs: PassthroughFileSystem
    let server: FUSEServer
    let client: Client

    init(options: PassthroughOptions = PassthroughOptions(), server serverOptions: FUSEServerOptions = FUSEServerOptions(), engine: any IOEngine = SyncIOEngine(), initialize: Bool = true,
         dax: DAXMappings? = nil) throws {
        var template = Array("/tmp/vfsvm-fuse-XXXXXX".utf8CString)
        guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw SystemError("mkdtemp", .current)
        }
        dir = String(cString: p)
        chmod(dir + "/", 0o777)
        fs = try PassthroughFileSystem(root: dir, options: options, engine: engine)
        server = FUSEServer(fileSystem: fs, options: serverOptions, dax: dax)
        client = Client(server)
        if initialize { client.initSession() }
    }

    deinit {
        _ = system("rm -rf '\(dir)'")
    }

    func path(_ rel: String) -> String { dir + "/" + rel }

    func writeHost(_ rel: String, _ text: String) {
        let fd = Glibc.open(path(rel), O_CREAT | O_WRONLY | O_TRUNC, 0o644)
        _ = text.utf8CString.withUnsafeBufferPointer { Glibc.write(fd, $0.baseAddress, $0.count - 1) }
        close(fd)
    }

    /// A host file with `text`, owned by `owner` (uid = gid) with `mode`.
    func writeHost(_ rel: String, _ text: String, owner: UInt32, mode: mode_t) -> Bool {
        writeHost(rel, text)
        return chown(path(rel), owner, owner) == 0 && chmod(path(rel), mode) == 0
    }

    func readHost(_ rel: String) -> String? {
        let fd = Glibc.open(path(rel), O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 65536)
        let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        return String(decoding: buf.prefix(max(n, 0)), as: UTF8.self)
    }

    func statHost(_ rel: String) -> stat? {
        var st = stat()
        return lstat(path(rel), &st) == 0 ? st : nil
    }

    func exists(_ rel: String) -> Bool { statHost(rel) != nil }
}

/// Entries of a /proc directory without "." and "..": open fds
/// (/proc/self/fd) or threads (/proc/self/task) of this process.
func procEntries(_ path: String) -> Int {
    guard let d = opendir(path) else { return -1 }
    defer { closedir(d) }
    var n = 0
    while let e = readdir(d) {
        if e.pointee.d_name.0 != UInt8(ascii: ".") { n += 1 }
    }
    return n
}
