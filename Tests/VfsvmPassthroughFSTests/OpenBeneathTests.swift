import Glibc
import Testing
import VfsvmFUSE
import VfsvmSys

/// A file system that implements nothing: every request but INIT gets
/// ENOSYS, as a libfuse low-level daemon without a `lookup` answers.
private struct NothingImplemented: FileSystem {}

/// openAt's confinement (RESOLVE_BENEATH) against an ENOSYS that comes from
/// a path walk, not from a missing openat2: a FUSE file system mounted
/// below a share answers LOOKUP with ENOSYS, and the open below it fails
/// with that errno. That must stay one failed open; when it switched every
/// later open of the process to plain openat, ".." climbed out of the share.
@Suite(.serialized) struct OpenBeneathTests {
    @Test func anENOSYSFromAPathWalkKeepsLaterOpensBeneath() throws {
        guard getuid() == 0, access("/dev/fuse", R_OK | W_OK) == 0 else {
            Issue.record("needs root and /dev/fuse to mount the file system that answers ENOSYS; not run here")
            return
        }
        let top = try makeTempDir("vfsvm-beneath")
        defer { _ = system("rm -rf '\(top)'") }
        #expect(mkdir(top + "/share", 0o755) == 0)
        let secret = top + "/secret"
        let out = try FileDescriptor.open(secret, O_WRONLY | O_CREAT, mode: 0o600)
        try out.writeAll(Array("host secret".utf8))
        let share = try FileDescriptor.open(top + "/share", O_RDONLY | O_DIRECTORY)

        // Before: ".." below the share is refused.
        #expect(throws: SystemError.self) { try share.openAt(Array("../secret".utf8), flags: O_RDONLY) }

        let mount = try KernelMount(fileSystem: NothingImplemented(), defaultPermissions: false)
        defer { mount.unmount() }
        let below = try FileDescriptor.open(mount.mountPoint, HostFSFlag.path | O_DIRECTORY)
        do throws(SystemError) {
            _ = try below.openAt(Array("anything".utf8), flags: HostFSFlag.path | O_NOFOLLOW)
            Issue.record("a LOOKUP answered with ENOSYS opened something")
        } catch {
            #expect(error.errno == .ENOSYS, "the FUSE file system's ENOSYS, not \(error.errno)")
        }

        // After: still refused, and the secret unread.
        do throws(SystemError) {
            let fd = try share.openAt(Array("../secret".utf8), flags: O_RDONLY)
            var buf = [UInt8](repeating: 0, count: 64)
            let n = buf.withUnsafeMutableBytes { read(fd.rawValue, $0.baseAddress, 64) }
            Issue.record("'../secret' opened below the share after the ENOSYS, read \(n) bytes: \(String(decoding: buf.prefix(max(n, 0)), as: UTF8.self))")
        } catch {
            #expect(error.errno == .EXDEV, "openat2's RESOLVE_BENEATH refusal, not \(error.errno)")
        }
    }
}
