import VfsvmFUSETestSupport
import Foundation
import Glibc
import Synchronization
import Testing
import CVfsvmLinux
import VfsvmFUSE
import VfsvmHostFUSE
import VfsvmMemory
import VfsvmPassthroughFS
import VfsvmSys

/// The real Linux FUSE client against FUSEServer: /dev/fuse is mounted on
/// the host, a thread serves it, and the test uses ordinary syscalls on the
/// mount point. This checks wire compatibility with the kernel (INIT reply
/// layout, entry/attr/dirent formats), not only with our own test client.
final class KernelMount {
    let backing: String
    let mountPoint: String
    let fuse: FileDescriptor
    let server: FUSEServer
    let finished = Flag()

    /// `fileSystem` replaces the passthrough of `backing` (which is then
    /// only an empty directory); `defaultPermissions` off leaves every
    /// permission check to the server (no GETATTR before a lookup).
    init(options: FUSEServerOptions = FUSEServerOptions(), tracer: FUSETracer? = nil,
         backingFiles: HostBackingFiles? = nil, fileSystem: (any FileSystem)? = nil, defaultPermissions: Bool = true) throws {
        backing = try makeTempDir("vfsvm-kb")
        mountPoint = try makeTempDir("vfsvm-km")
        fuse = try FileDescriptor.open("/dev/fuse", O_RDWR)
        let fs = try fileSystem ?? PassthroughFileSystem(root: backing)
        server = FUSEServer(fileSystem: fs, options: options, tracer: tracer, backingFiles: backingFiles)
        backingFiles?.attach(fuse)
        let opts = "fd=\(fuse.rawValue),rootmode=40000,user_id=0,group_id=0,allow_other" + (defaultPermissions ? ",default_permissions" : "")
        guard Glibc.mount("vfsvm-test", mountPoint, "fuse", UInt(MS_NOSUID | MS_NODEV), opts) == 0 else {
            throw SystemError("mount(fuse)", .current)
        }
        let thread = Thread { [fuse, server, finished] in
            let request = HostBuffer(count: (1 << 20) + 8192)
            let reply = HostBuffer(count: (1 << 20) + 8192)
            while true {
                let got: Result<Int, SystemError> = request.withUnsafeMutableBytes { buf in
                    Result { () throws(SystemError) in try fuse.read(into: buf) }
                }
                if case let .failure(error) = got {
                    if error.errno == .ENOENT { continue }  // request interrupted
                    break  // ENODEV: unmounted
                }
                let len = server.handle(request: request, reply: reply)
                if len > 0 {
                    _ = try? reply.withUnsafeMutableBytes { buf throws(SystemError) in
                        try fuse.write(UnsafeRawBufferPointer(rebasing: buf[0..<len]))
                    }
                }
            }
            finished.state.withLock { $0 = true }
        }
        thread.start()
    }

    func unmount() {
        _ = umount2(mountPoint, Int32(MNT_DETACH))
        for _ in 0..<500 where !finished.state.withLock({ $0 }) { usleep(10_000) }
        _ = system("rm -rf '\(backing)' '\(mountPoint)'")
    }

    func m(_ rel: String) -> String { mountPoint + "/" + rel }
    func b(_ rel: String) -> String { backing + "/" + rel }
}

final class Flag: Sendable { let state = Mutex(false) }

func makeTempDir(_ prefix: String) throws -> String {
    var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
    guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else { throw SystemError("mkdtemp", .current) }
    return String(cString: p)
}

@Suite(.serialized) struct KernelMountTests {
    @Test func realKernelClientRoundTrips() throws {
        guard access("/dev/fuse", R_OK | W_OK) == 0 else {
            Issue.record("/dev/fuse is not usable here; the kernel round trip cannot run")
            return
        }
        let k = try KernelMount()
        defer { k.unmount() }

        #expect(system("grep -q ' \(k.mountPoint) fuse ' /proc/self/mounts") == 0)

        // Write through the mount, read on the host.
        let fd = open(k.m("hello"), O_CREAT | O_RDWR, 0o640)
        #expect(fd >= 0)
        let text = Array("through the kernel".utf8)
        #expect(text.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } == text.count)
        #expect(fsync(fd) == 0)
        var back = [UInt8](repeating: 0, count: 64)
        #expect(back.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 64, 8) } == 10)
        #expect(String(decoding: back.prefix(10), as: UTF8.self) == "the kernel")
        close(fd)
        var st = stat()
        #expect(stat(k.b("hello"), &st) == 0 && st.st_size == Int(text.count) && st.st_mode & 0o777 == 0o640)

        // Directories and listing.
        #expect(mkdir(k.m("dir"), 0o750) == 0)
        for i in 0..<30 { close(open(k.m("dir/f\(i)"), O_CREAT | O_WRONLY, 0o644)) }
        let names = try listHost(k.m("dir"))
        #expect(names.count == 30 && names.contains("f29"))
        #expect(try listHost(k.b("dir")).count == 30)

        // Rename, link, symlink, unlink, rmdir.
        #expect(rename(k.m("hello"), k.m("dir/renamed")) == 0)
        #expect(access(k.b("dir/renamed"), F_OK) == 0)
        #expect(link(k.m("dir/renamed"), k.m("hard")) == 0)
        #expect(stat(k.m("hard"), &st) == 0 && st.st_nlink == 2)
        #expect(symlink("dir/renamed", k.m("sym")) == 0)
        var buf = [Int8](repeating: 0, count: 64)
        #expect(readlink(k.m("sym"), &buf, 63) == 11)
        #expect(stat(k.m("sym"), &st) == 0 && st.st_size == Int(text.count))  // the guest kernel follows it
        #expect(unlink(k.m("sym")) == 0 && unlink(k.m("hard")) == 0)
        #expect(rmdir(k.m("dir")) == -1 && errno == ENOTEMPTY)

        // Attributes.
        #expect(chmod(k.m("dir/renamed"), 0o600) == 0)
        #expect(stat(k.b("dir/renamed"), &st) == 0 && st.st_mode & 0o777 == 0o600)
        #expect(truncate(k.m("dir/renamed"), 3) == 0)
        #expect(stat(k.b("dir/renamed"), &st) == 0 && st.st_size == 3)

        // Extended attributes.
        #expect(setxattr(k.m("dir/renamed"), "user.k", "v1", 2, 0) == 0)
        var xv = [UInt8](repeating: 0, count: 8)
        #expect(getxattr(k.b("dir/renamed"), "user.k", &xv, 8) == 2)

        // POSIX locks: a lock taken through the mount conflicts with a host OFD lock.
        let lfd = open(k.m("dir/renamed"), O_RDWR)
        #expect(vfsvm_posix_lock(lfd, F_SETLK, Int16(F_WRLCK), 0, 0) == 0)
        let host = try FileDescriptor.open(k.b("dir/renamed"), O_RDWR)
        #expect(throws: SystemError.self) { _ = try host.ofdLock(.set, type: Int16(F_WRLCK), start: 0, length: 0) }
        close(lfd)  // FLUSH drops the owner's locks
        _ = try host.ofdLock(.set, type: Int16(F_WRLCK), start: 0, length: 0)

        // statfs reaches the host file system.
        var sv = statvfs()
        #expect(statvfs(k.mountPoint, &sv) == 0 && sv.f_blocks > 0)
        // ".." at the root stays inside.
        #expect(stat(k.m(".."), &st) == 0)
    }

    @Test func realKernelClientBigIOAndNewerCalls() throws {
        guard access("/dev/fuse", R_OK | W_OK) == 0 else {
            Issue.record("/dev/fuse is not usable here; the kernel round trip cannot run")
            return
        }
        let k = try KernelMount()
        defer { k.unmount() }

        // 4 MiB in one write: the kernel splits it at max_write.
        let big = (0..<(4 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 7) }
        let fd = open(k.m("big"), O_CREAT | O_RDWR, 0o644)
        #expect(big.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } == big.count)
        var back = [UInt8](repeating: 0, count: big.count)
        #expect(back.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) } == big.count)
        #expect(back == big)
        // The host sees the same bytes.
        let hfd = open(k.b("big"), O_RDONLY)
        var hb = [UInt8](repeating: 0, count: big.count)
        #expect(hb.withUnsafeMutableBytes { pread(hfd, $0.baseAddress, $0.count, 0) } == big.count)
        #expect(hb == big)
        close(hfd)

        // fallocate + SEEK_HOLE/SEEK_DATA + copy_file_range.
        let sp = open(k.m("sparse"), O_CREAT | O_RDWR, 0o644)
        #expect(pwrite(sp, "x", 1, 1 << 20) == 1)
        #expect(lseek(sp, 0, HostFSFlag.seekData) == 1 << 20)
        #expect(vfsvm_fallocate(sp, 0, 0, 8 << 20) == 0)
        var st = stat()
        #expect(fstat(sp, &st) == 0 && st.st_size == 8 << 20)
        var inOff: Int64 = 0, outOff: Int64 = 0
        #expect(vfsvm_copy_file_range(fd, &inOff, sp, &outOff, 4096, 0) == 4096)
        var first = [UInt8](repeating: 0, count: 4096)
        #expect(first.withUnsafeMutableBytes { pread(sp, $0.baseAddress, 4096, 0) } == 4096)
        #expect(first == Array(big.prefix(4096)))
        close(sp)
        close(fd)

        // renameat2 EXCHANGE and NOREPLACE.
        close(open(k.m("a"), O_CREAT | O_WRONLY, 0o600))
        close(open(k.m("b"), O_CREAT | O_WRONLY, 0o644))
        #expect(vfsvm_renameat2(AT_FDCWD, k.m("a"), AT_FDCWD, k.m("b"), HostFSFlag.renameExchange) == 0)
        #expect(stat(k.b("a"), &st) == 0 && st.st_mode & 0o777 == 0o644)
        #expect(vfsvm_renameat2(AT_FDCWD, k.m("a"), AT_FDCWD, k.m("b"), HostFSFlag.renameNoReplace) == -1 && errno == EEXIST)

        // flock between two opens.
        let f1 = open(k.m("a"), O_RDONLY), f2 = open(k.m("a"), O_RDONLY)
        #expect(vfsvm_flock(f1, LOCK_EX | LOCK_NB) == 0)
        #expect(vfsvm_flock(f2, LOCK_EX | LOCK_NB) == -1 && errno == EWOULDBLOCK)
        close(f1)
        #expect(vfsvm_flock(f2, LOCK_EX | LOCK_NB) == 0)
        close(f2)

        // O_TMPFILE leaves no name behind.
        let t = open(k.mountPoint, HostFSFlag.tmpfile | O_RDWR, 0o600)
        #expect(t >= 0)
        #expect(Glibc.write(t, "tmp", 3) == 3)
        close(t)
        #expect(try listHost(k.backing).sorted() == ["a", "b", "big", "sparse"])

        // ls -l style listing (READDIRPLUS) sees sizes.
        #expect(system("ls -l '\(k.mountPoint)' | grep -q ' 4194304 '") == 0)
    }
}
