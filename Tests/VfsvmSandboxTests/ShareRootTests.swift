import CVfsvmLinux
import Glibc
import Testing
import VfsvmSys

/// The fds a sandboxed `vfsvm serve` resolves guest names from must lie
/// inside its sandbox: opened before `pivot_root`, they would keep pointing
/// into the host's mount tree, where ".." climbs out of the share and
/// `--readonly`'s read-only bind mount does not apply. The tests take copies
/// of the fds of a running serve (pidfd_getfd) and try exactly that.
@Suite(.serialized) struct ShareRootTests {
    /// Every directory fd serve holds on the share's root.
    func shareRootFDs(of serve: ServeUnderTest) throws -> [(number: Int32, fd: FileDescriptor)] {
        let share = try FileDescriptor.open(serve.share, HostFSFlag.path | O_DIRECTORY).stat()
        let found = try serve.heldFDs().filter { held in
            guard let st = try? held.fd.stat() else { return false }
            return st.isDirectory && st.dev == share.dev && st.ino == share.ino
        }
        try #require(!found.isEmpty, "serve holds no fd on its share's root")
        return found
    }

    @Test(.timeLimit(.minutes(1)))
    func dotDotFromTheShareRootFDsIsTheShareRoot() throws {
        let serve = try ServeUnderTest()
        let share = try FileDescriptor.open(serve.share, HostFSFlag.path | O_DIRECTORY).stat()
        for held in try shareRootFDs(of: serve) {
            let up = try identity(of: "..", below: held.fd)
            #expect(up.dev == share.dev && up.ino == share.ino,
                    "'..' from serve's fd \(held.number) on the share leads to (\(up.dev), \(up.ino)), not the share root (\(share.dev), \(share.ino)): it climbs into the host's tree")
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func writeOpenThroughTheShareRootFDsOfAReadOnlyShareIsEROFS() throws {
        let serve = try ServeUnderTest(["--readonly"])
        for held in try shareRootFDs(of: serve) {
            let name = "written-through-fd-\(held.number)"
            let fd = vfsvm_openat(held.fd.rawValue, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            let err = Errno.current
            if fd >= 0 { close(fd) }
            #expect(fd < 0 && err == .EROFS,
                    "creating \(name) through serve's fd \(held.number) on a --readonly share: \(fd >= 0 ? "succeeded" : "\(err)"), expected EROFS")
            #expect(access(serve.share + "/" + name, F_OK) != 0, "\(name) appeared in the read-only share")
        }
    }

    /// A file system mounted below a --readonly share is read-only in the
    /// sandbox too (the bind mount is made read-only recursively): a create
    /// through the share's fd into the submount is EROFS. serve runs in a
    /// mount namespace of its own with a tmpfs at share/sub (unshare(1)
    /// execs it there).
    @Test(.timeLimit(.minutes(1)))
    func writeOpenIntoASubmountOfAReadOnlyShareIsEROFS() throws {
        try #require(access("/usr/bin/unshare", X_OK) == 0, "unshare (util-linux) is not installed: cannot give serve a submount")
        let script = #"for a; do if [ "$prev" = --shared-dir ]; then share=$a; fi; prev=$a; done; mount -t tmpfs vfsvm-sub "$share/sub" && exec "$@""#
        let serve = try ServeUnderTest(["--readonly"], launcher: ["/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script, "sh"]) {
            mkdir($0 + "/sub", 0o755)
        }
        for held in try shareRootFDs(of: serve) {
            let name = "sub/written-through-fd-\(held.number)"
            let fd = vfsvm_openat(held.fd.rawValue, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            let err = Errno.current
            if fd >= 0 { close(fd) }
            #expect(fd < 0 && err == .EROFS,
                    "creating \(name) through serve's fd \(held.number) on a --readonly share: \(fd >= 0 ? "succeeded" : "\(err)"), expected EROFS")
        }
    }

    /// No directory fd serve holds (share, file-handle anchor, /proc) leads
    /// to the host's root by climbing "..".
    @Test(.timeLimit(.minutes(1)))
    func noDirectoryFDClimbsToTheHostRoot() throws {
        let serve = try ServeUnderTest()
        let hostRoot = try FileDescriptor.open("/", HostFSFlag.path | O_DIRECTORY).stat()
        for held in try serve.heldFDs() {
            guard let st = try? held.fd.stat(), st.isDirectory else { continue }
            var dir = held.fd
            var here = st
            for _ in 0..<64 {
                let up = try sysCall("openat(..)") { vfsvm_openat(dir.rawValue, "..", HostFSFlag.path | O_DIRECTORY | O_CLOEXEC, 0) }
                let next = FileDescriptor(owning: up)
                let there = try next.stat()
                if there.dev == here.dev && there.ino == here.ino { break }
                dir = next
                here = there
            }
            #expect(!(here.dev == hostRoot.dev && here.ino == hostRoot.ino),
                    "'..' from serve's directory fd \(held.number) climbs to the host's /")
        }
    }

    /// serve's procfs shows every host process (no pid namespace), and
    /// /proc/PID/root of one it passes the ptrace check for (after a
    /// setfsuid to its owner, say) is the host's root: no directory fd of
    /// serve may name another process's directory. The test process (this
    /// one) stands for the other process.
    @Test(.timeLimit(.minutes(1)))
    func noDirectoryFDReachesAnotherProcessInProcfs() throws {
        let serve = try ServeUnderTest()
        var procfsFDs = 0
        for held in try serve.heldFDs() {
            guard let st = try? held.fd.stat(), st.isDirectory else { continue }
            let status = vfsvm_openat(held.fd.rawValue, "../status", O_RDONLY | O_CLOEXEC, 0)  // a /proc/PID/fd
            if status >= 0 {
                procfsFDs += 1
                close(status)
            }
            for path in ["../../\(getpid())", "../\(getpid())", "../../../\(getpid())"] {
                let fd = vfsvm_openat(held.fd.rawValue, path, HostFSFlag.path | O_DIRECTORY | O_CLOEXEC, 0)
                if fd >= 0 { close(fd) }
                #expect(fd < 0, "serve's directory fd \(held.number) names /proc/\(getpid()) (this test process) as \(path)")
            }
        }
        #expect(procfsFDs > 0, "serve holds no procfs directory fd: the test looked at nothing")
    }

    /// serve keeps CAP_MKNOD for the guest's device nodes; its share mount
    /// is nodev, so a node made there (a disk's numbers, in an attack) does
    /// not open through serve's fds. /dev/null's numbers stand in.
    @Test(.timeLimit(.minutes(1)))
    func aDeviceNodeInTheShareDoesNotOpenThroughServesFDs() throws {
        let serve = try ServeUnderTest()
        for held in try shareRootFDs(of: serve) {
            let name = "node-\(held.number)"
            try #require(mknodat(held.fd.rawValue, name, S_IFCHR | 0o600, dev_t((1 << 8) | 3)) == 0, "mknodat: \(Errno.current)")
            let fd = vfsvm_openat(held.fd.rawValue, name, O_RDONLY | O_CLOEXEC, 0)
            let err = Errno.current
            if fd >= 0 { close(fd) }
            unlinkat(held.fd.rawValue, name, 0)
            #expect(fd < 0 && err == .EACCES, "opening a device node through serve's fd \(held.number): \(fd >= 0 ? "opened" : "\(err)"), expected EACCES (nodev)")
        }
    }

    /// A directory fd serve inherited (a shell's `9</`, a leaky service
    /// manager) would lead out of its sandbox: serve closes what it
    /// inherited but 0, 1, 2 and the --fd socket first.
    @Test(.timeLimit(.minutes(1)))
    func anInheritedDirectoryFDIsClosed() throws {
        let serve = try ServeUnderTest(launcher: ["/bin/sh", "-c", #"exec 8</etc 9</; exec "$@""#, "sh"])
        let hostRoot = try FileDescriptor.open("/", HostFSFlag.path | O_DIRECTORY).stat()
        let etc = try FileDescriptor.open("/etc", HostFSFlag.path | O_DIRECTORY).stat()
        for held in try serve.heldFDs() {
            guard let st = try? held.fd.stat() else { continue }
            #expect(!(st.dev == hostRoot.dev && st.ino == hostRoot.ino) && !(st.dev == etc.dev && st.ino == etc.ino),
                    "serve's fd \(held.number) is the launcher's fd on / or /etc")
        }
    }
}
