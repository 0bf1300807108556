import CFuzzSupport
import FuzzSupport
import Glibc
import VfsvmSys

/// The scratch tree of the FUSE target (see main.swift).
enum Scratch {
    nonisolated(unsafe) static var root = ""
    nonisolated(unsafe) static var share = ""
    nonisolated(unsafe) static var canary = ""
    nonisolated(unsafe) static var canaryState: [String] = []
    /// Inode numbers of the scratch root and the canary tree.
    nonisolated(unsafe) static var outsideInodes: Set<UInt64> = []

    static func fail(_ what: String) -> Never {
        fatalError("fuzz-fuse setup: \(what): \(Errno.current)")
    }

    /// A private mount namespace with a 64 MiB tmpfs (nodev, nosuid) at a
    /// new /tmp directory; the share fixture and the canary inside it.
    static func setUp() {
        guard getuid() == 0 else { fatalError("fuzz-fuse needs root: it mounts a private tmpfs (uid \(getuid()))") }
        var template = Array("/tmp/vfsvm-fuzz-fuse-XXXXXX".utf8CString)
        guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else { fail("mkdtemp") }
        root = String(cString: p)
        guard fuzz_unshare_mount_namespace() == 0 else { fail("unshare(CLONE_NEWNS)") }
        guard mount(nil, "/", nil, UInt(MS_REC | MS_PRIVATE), nil) == 0 else { fail("make / private") }
        guard mount("vfsvm-fuzz", root, "tmpfs", UInt(MS_NODEV | MS_NOSUID), "size=64m,mode=0755") == 0 else { fail("mount tmpfs") }
        // The directory on the host stays empty; remove it when we exit
        // (the tmpfs goes with the namespace; unmounted first so the name
        // is free to remove here too).
        atexit {
            _ = umount2(Scratch.root, Int32(MNT_DETACH))
            _ = rmdir(Scratch.root)
        }
        share = root + "/share"
        canary = root + "/canary"
        guard mkdir(share, 0o755) == 0, mkdir(canary, 0o755) == 0 else { fail("mkdir") }
        write(canary + "/secret", "canary: must not change\n")
        guard mkdir(canary + "/dir", 0o700) == 0 else { fail("mkdir canary/dir") }
        write(canary + "/dir/inner", "inner\n")
        canaryState = snapshot()
        // The detector must see a change: touch the canary, compare, restore.
        write(canary + "/secret", "canary: must not change\n")
        invariant(snapshot() != canaryState, "the canary snapshot does not notice a write")
        canaryState = snapshot()
        for path in [root, canary, canary + "/secret", canary + "/dir", canary + "/dir/inner"] {
            var st = stat()
            guard lstat(path, &st) == 0 else { fail("stat \(path)") }
            outsideInodes.insert(UInt64(st.st_ino))
        }
        resetShare()
    }

    static func write(_ path: String, _ text: String) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { fail("create \(path)") }
        _ = Array(text.utf8).withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }

    /// Empties the share and lays the fixture out again: a file, a
    /// directory with a file, a hard link, symlinks pointing out of the share
    /// (relative and absolute), a FIFO.
    static func resetShare() {
        removeContents(of: share)
        write(share + "/a", "hello\n")
        guard mkdir(share + "/d", 0o755) == 0 else { fail("mkdir d") }
        write(share + "/d/b", "bee\n")
        guard link(share + "/a", share + "/d/a-link") == 0,
              symlink("../canary/secret", share + "/up") == 0,
              symlink(canary + "/secret", share + "/abs") == 0,
              mkfifo(share + "/fifo", 0o644) == 0 else { fail("fixture") }
    }

    /// Removes everything below `dir` without following symlinks.
    static func removeContents(of dir: String) {
        let fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { fail("open \(dir)") }
        removeContents(fd)
        close(fd)
    }

    static func removeContents(_ fd: Int32) {
        let dup = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        guard let d = fdopendir(dup) else { fail("fdopendir") }
        // Names as raw bytes: the input may make names that are not UTF-8.
        var names: [[CChar]] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { Array($0.prefix(while: { $0 != 0 })).map { CChar(bitPattern: $0) } }
            if name != [0x2e] && name != [0x2e, 0x2e] { names.append(name + [0]) }
        }
        closedir(d)
        for name in names where unlinkat(fd, name, 0) != 0 {
            // A directory (or a name unlink refuses): empty it, then rmdir.
            let child = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if child >= 0 {
                _ = fchmod(child, 0o700)
                removeContents(child)
                close(child)
            }
            guard unlinkat(fd, name, AT_REMOVEDIR) == 0 else { fail("remove a name in the share") }
        }
    }

    /// Names, types, modes, sizes, times and contents under the canary, and
    /// the names directly under the scratch root.
    static func snapshot() -> [String] {
        var out: [String] = []
        func walk(_ path: String) {
            var st = stat()
            guard lstat(path, &st) == 0 else { out.append("\(path): missing"); return }
            out.append("\(path) mode \(st.st_mode) size \(st.st_size) uid \(st.st_uid) mtime \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec) ctime \(st.st_ctim.tv_sec).\(st.st_ctim.tv_nsec) nlink \(st.st_nlink)")
            if st.st_mode & S_IFMT == S_IFDIR {
                for name in list(path).sorted() { walk(path + "/" + name) }
            } else if st.st_mode & S_IFMT == S_IFREG {
                let fd = open(path, O_RDONLY | O_CLOEXEC)
                var buf = [UInt8](repeating: 0, count: 256)
                let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                close(fd)
                out.append("  content \(buf.prefix(max(n, 0)))")
            }
        }
        walk(canary)
        out.append("root: \(list(root).sorted())")
        return out
    }

    static func list(_ path: String) -> [String] {
        guard let d = opendir(path) else { return ["<unreadable>"] }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    static func checkCanary() {
        let now = snapshot()
        invariant(now == canaryState, "outside the share changed:\nbefore \(canaryState)\nafter  \(now)")
    }
}
