import Glibc
import Testing
import VfsvmSys

/// Command lines from virtiofsd's documentation and from libvirt, option
/// for option, under `vfsvm serve`: each starts (the sandbox in place) and
/// answers a vhost-user frontend's GET_FEATURES with VIRTIO_F_VERSION_1.
/// Only the paths are the test's: @SOCKET@, @DIR@ and (libvirt's --fd) @FD@ are
/// replaced by a fresh socket path, share and listening socket.
@Suite(.serialized) struct VirtiofsdCommandLineTests {
    struct Line: Sendable, CustomTestStringConvertible {
        let source: String
        let words: [String]
        var testDescription: String { "\(source): virtiofsd \(words.joined(separator: " "))" }
    }

    /// README.md lists these; keep the two in step.
    static let documented: [Line] = [
        Line(source: "QEMU's virtiofsd(1) Examples (the C virtiofsd)",
             words: ["--socket-path=@SOCKET@", "-o", "source=@DIR@"]),
        Line(source: "the Rust virtiofsd's README, Usage",
             words: ["--socket-path=@SOCKET@", "--shared-dir", "@DIR@", "--announce-submounts", "--inode-file-handles=mandatory"]),
        Line(source: "the Rust virtiofsd's README, --translate-uid/gid: every guest id squashed onto one host user, shown to the guest as 1000",
             words: ["--socket-path=@SOCKET@", "--shared-dir", "@DIR@",
                     "--translate-uid", "squash-guest:0:1001:4294967295", "--translate-gid", "squash-guest:0:100:4294967295",
                     "--translate-uid", "host:1001:1000:1", "--translate-gid", "host:100:1000:1"]),
        Line(source: "the Rust virtiofsd's README, --translate-uid/gid: host ids squashed for the guest",
             words: ["--socket-path=@SOCKET@", "--shared-dir", "@DIR@",
                     "--translate-uid", "squash-host:0:1000:4294967295", "--translate-gid", "squash-host:0:1000:4294967295"]),
        Line(source: "virtiofsd's xattr-mapping examples: everything under user.virtiofs. (map)",
             words: ["--socket-path=@SOCKET@", "--shared-dir", "@DIR@", "--xattrmap", ":map::user.virtiofs.:"]),
        Line(source: "virtiofsd's xattr-mapping examples: prefix all attributes with user.virtiofs.",
             words: ["--socket-path=@SOCKET@", "-o", "source=@DIR@", "-o", "xattrmap=:prefix:all::user.virtiofs.::bad:all:::"]),
        Line(source: "virtiofsd's xattr-mapping examples: prefix trusted., let others through (four rules)",
             words: ["--socket-path=@SOCKET@", "-o", "source=@DIR@",
                     "-o", "xattrmap=/prefix/all/trusted./user.virtiofs./ /bad/server//trusted./ /bad/client/user.virtiofs.// /ok/all///"]),
        Line(source: "virtiofsd's xattr-mapping examples: hide security., allow everything else",
             words: ["--socket-path=@SOCKET@", "--shared-dir", "@DIR@", "--xattrmap", "/bad/all/security./security./ /ok/all///"]),
        Line(source: "virtiofsd's SELinux setup: labels from the guest kept under trusted.virtiofs.",
             words: ["--socket-path=@SOCKET@", "--shared-dir", "@DIR@", "--security-label", "--xattrmap", ":map:security.selinux:trusted.virtiofs.:"]),
        Line(source: "libvirt 9.0's launch (LIBVIRT.md): cache, sandbox, xattr, locks, thread pool, virtiofsd_debug",
             words: ["--fd=@FD@", "-o", "source=@DIR@,cache=always,sandbox=chroot,xattr,flock,posix_lock", "--thread-pool-size=4", "-d"]),
        Line(source: "libvirt 9.0's launch (LIBVIRT.md): xattr, flock and posix_lock off",
             words: ["--fd=@FD@", "-o", "source=@DIR@,no_xattr,no_flock,no_posix_lock"]),
    ]

    @Test(.timeLimit(.minutes(2)), arguments: documented)
    func startsAndServes(_ line: Line) throws {
        try #require(getuid() == 0, "the sandbox needs root (namespaces, pivot_root); these tests cannot run as uid \(getuid())")
        let work = try TemporaryDirectory()
        let share = work.path + "/share", socket = work.path + "/fs.sock"
        try #require(mkdir(share, 0o755) == 0)
        // libvirt's way: a socket bound and listening, inherited as --fd.
        let listening: FileDescriptor? = line.words.contains { $0.contains("@FD@") } ? try UnixSocket.listen(path: socket) : nil
        let words = line.words.map {
            $0.replacingAll("@SOCKET@", socket).replacingAll("@DIR@", share)
                .replacingAll("@FD@", listening.map { String($0.rawValue) } ?? "")
        }
        let errors = try makePipe()
        let child = try ChildProcess(path: try builtExecutable("vfsvm"), arguments: ["serve"] + words,
                                     stderr: errors.write, inherit: listening.map { [$0] } ?? [])
        defer {
            child.send(signal: SIGKILL)
            _ = child.wait(timeoutMilliseconds: 5000)
        }
        var text = ""
        for _ in 0..<100 where !text.contains("waiting for the frontend") && child.isRunning {
            if (try? pollReadable([errors.read], timeoutMilliseconds: 100)) == [true] {
                text += String(decoding: (try? errors.read.readSome()) ?? [], as: UTF8.self)
            }
        }
        try #require(text.contains("waiting for the frontend"), "\(line.testDescription) did not start: \(text)")
        // VHOST_USER_GET_FEATURES (1), flags version 1, no payload.
        let frontend = try UnixSocket.connect(path: socket)
        try frontend.send([1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0])
        let reply = try #require(try frontend.readExactly(20), "no reply to GET_FEATURES: \(availableText(errors.read))")
        let request = reply[0..<4].enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
        let features = reply[12..<20].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        #expect(request == 1 && features & (1 << 32) != 0, "GET_FEATURES: request \(request), features 0x\(String(features, radix: 16))")
        #expect(child.isRunning, "still serving: \(availableText(errors.read))")
    }

    /// What virtiofsd's README shows for an unprivileged virtiofsd (user
    /// namespace maps) is refused by name: vfsvm serve gives the guest that
    /// view with --translate-uid/gid map: instead.
    @Test(.timeLimit(.minutes(1)))
    func theUnprivilegedUserNamespaceLineIsRefusedByName() throws {
        let r = try serveFailing(["--sandbox", "chroot", "--uid-map", ":0:1000:1:", "--gid-map", ":0:1000:1:"])
        #expect(r.exitCode == 64, "exit \(String(describing: r.exitCode))")
        #expect(r.stderr.hasPrefix("Error: vfsvm serve does not implement --uid-map (virtiofsd: "), "stderr: \(r.stderr)")
    }
}

extension String {
    func replacingAll(_ target: String, _ replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var out = "", rest = Substring(self)
        while let r = rest.range(of: target) {
            out += rest[..<r.lowerBound] + replacement
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}

extension Substring {
    func range(of target: String) -> Range<Index>? {
        var i = startIndex
        while i < endIndex {
            if self[i...].hasPrefix(target) { return i..<index(i, offsetBy: target.count) }
            i = index(after: i)
        }
        return nil
    }
}
