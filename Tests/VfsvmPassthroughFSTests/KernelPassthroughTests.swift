import Glibc
import Synchronization
import Testing
import VfsvmFUSE
import VfsvmHostFUSE
import VfsvmSys

/// FUSE passthrough with the host's real kernel (6.9+, as root): open
/// files are registered as backing files and the kernel reads and writes
/// them itself, so no READ or WRITE request reaches the server, while the
/// bytes are those of the host file.
@Suite(.serialized) struct KernelPassthroughTests {
    /// Opcode names of every request the server saw.
    final class Seen: Sendable {
        let lines = Mutex<[String]>([])
        func count(_ opcode: String) -> Int { lines.withLock { $0.filter { $0.hasPrefix("fuse: \(opcode) ") }.count } }
    }

    static func usable() -> Bool {
        guard access("/dev/fuse", R_OK | W_OK) == 0, getuid() == 0 else {
            Issue.record("needs root and /dev/fuse; FUSE passthrough cannot be tried here")
            return false
        }
        return true
    }

    @Test func readsAndWritesBypassTheServer() throws {
        guard Self.usable() else { return }
        let seen = Seen()
        let backing = HostBackingFiles(log: { _ in })
        let k = try KernelMount(tracer: FUSETracer(log: { line in seen.lines.withLock { $0.append(line) } }), backingFiles: backing)
        defer { k.unmount() }

        var data = [UInt8](repeating: 0, count: 3 << 20)
        for i in data.indices { data[i] = UInt8(truncatingIfNeeded: i &* 2_654_435_761 >> 13) }
        let fd = open(k.m("data"), O_CREAT | O_RDWR, 0o644)
        #expect(fd >= 0)
        #expect(data.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } == data.count)
        // A second open of the same file while the first is open (another
        // access mode): the kernel needs the same backing file for both.
        let reader = open(k.m("data"), O_RDONLY)
        #expect(reader >= 0, "a second open of a passthrough file: errno \(errno)")
        var back = [UInt8](repeating: 0, count: data.count)
        #expect(back.withUnsafeMutableBytes { pread(reader, $0.baseAddress, $0.count, 0) } == data.count)
        #expect(back == data)
        close(reader)
        close(fd)

        let host = try FileDescriptor.open(k.b("data"), O_RDONLY)
        var onHost = [UInt8](repeating: 0, count: data.count)
        #expect(onHost.withUnsafeMutableBytes { pread(host.rawValue, $0.baseAddress, $0.count, 0) } == data.count)
        #expect(onHost == data, "the host file holds the bytes written through the mount")

        #expect(backing.passthroughOpens == 2)
        #expect(seen.count("write") == 0 && seen.count("read") == 0, "READ/WRITE reached the server: \(seen.count("read")) / \(seen.count("write"))")
        #expect(seen.count("create") + seen.count("open") == 2)
        // RELEASE is asynchronous: wait for both before the ids are checked.
        for _ in 0..<200 where seen.count("release") < 2 { usleep(10_000) }
        #expect(backing.registeredNodes == 0, "the node's backing id is closed with its last release")
    }

    /// The writeback cache and passthrough exclude each other in the
    /// kernel: with -o writeback files are served through requests.
    @Test func writebackCacheServesThroughRequests() throws {
        guard Self.usable() else { return }
        let backing = HostBackingFiles(log: { _ in })
        let k = try KernelMount(options: FUSEServerOptions(writeback: true), backingFiles: backing)
        defer { k.unmount() }
        let fd = open(k.m("f"), O_CREAT | O_RDWR, 0o644)
        #expect(fd >= 0)
        #expect(Glibc.write(fd, "abc", 3) == 3)
        close(fd)
        var st = stat()
        #expect(stat(k.b("f"), &st) == 0 && st.st_size == 3)
        #expect(backing.passthroughOpens == 0)
        #expect(k.server.currentSession?.has(FUSEInitFlag.passthrough) == false)
    }
}

/// A write by an unprivileged user to a setuid file clears the setuid and
/// setgid bits, as on any local file system: with passthrough the write
/// never reaches the server, so the server must not take that job over
/// from the kernel (FUSE_HANDLE_KILLPRIV_V2) even when asked to.
@Suite(.serialized) struct KernelPassthroughKillprivTests {
    @Test func unprivilegedWriteClearsSetuidWithPassthrough() throws {
        guard KernelPassthroughTests.usable(), access("/usr/bin/setpriv", X_OK) == 0 else {
            Issue.record("needs root, /dev/fuse and setpriv(1); cannot run here")
            return
        }
        var options = FUSEServerOptions()
        options.killprivV2 = true
        let backing = HostBackingFiles(log: { _ in })
        let k = try KernelMount(options: options, backingFiles: backing)
        defer { k.unmount() }
        #expect(chmod(k.backing, 0o755) == 0)
        let fd = open(k.b("s"), O_CREAT | O_WRONLY, 0o644)
        #expect(fd >= 0 && fchmod(fd, 0o6777) == 0)
        close(fd)
        let rc = system("/usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups sh -c 'echo y >> \(k.m("s"))'")
        #expect(rc == 0, "the unprivileged append ran")
        var st = stat()
        #expect(stat(k.b("s"), &st) == 0)
        #expect(st.st_mode & 0o7777 == 0o777, "mode after an unprivileged write: \(String(st.st_mode & 0o7777, radix: 8))")
        #expect(backing.passthroughOpens >= 1, "the append went through passthrough")
    }
}
