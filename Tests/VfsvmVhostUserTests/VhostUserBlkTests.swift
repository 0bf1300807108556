import Glibc
import Synchronization
import Testing
import VfsvmSys
import VfsvmVhostUserTestSupport
import VfsvmVirtio
import VfsvmVirtioBlk
@testable import VfsvmVhostUser

/// vhost-user-blk for free: the generic vhost-user backend serving a
/// `VirtioBlockDevice` to QEMU's `vhost-user-blk` (on a microvm virtio-mmio
/// bus, QEMU's vCPU under /dev/kvm), driven by the freestanding blk guest
/// (Tests/Guests/blk.c): it reads sector 0, writes and flushes a pattern,
/// reads it back, and exits 0x10 (status 33). The image is checked here.
/// QEMU takes the disk's geometry with GET_CONFIG (protocol feature CONFIG)
/// and the queue count with GET_QUEUE_NUM (MQ).
@Suite(.serialized) struct VhostUserBlkTests {
    static let qemu = "/usr/bin/qemu-system-x86_64"

    static let packageRoot: String = {
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        return parts.joined(separator: "/")
    }()

    static func guestPath() throws -> String {
        let out = packageRoot + "/.build/guests"
        let path = out + "/blk.elf"
        if access(path, R_OK) != 0 {
            let make = try ChildProcess(path: "/usr/bin/make", arguments: ["-s", "-C", packageRoot + "/Tests/Guests", "OUT=" + out, path])
            let status = make.wait(timeoutMilliseconds: 60_000)
            try #require(status == 0, "building \(path) with make -C Tests/Guests failed (status \(status.map(String.init) ?? "timeout"))")
        }
        return path
    }

    /// `mmio`: `-M microvm` with `vhost-user-blk` on a virtio-mmio bus;
    /// `pci`: `-M pc` with `vhost-user-blk-pci` (modern only).
    @Test(.timeLimit(.minutes(2)), arguments: [("mmio", "split"), ("mmio", "packed"), ("pci", "split"), ("pci", "packed")])
    func qemuVhostUserBlkRunsTheBlkGuest(transport: String, ring: String) throws {
        try #require(access(Self.qemu, X_OK) == 0, "qemu-system-x86 is not installed here: this interoperability test cannot run")
        try #require(access("/dev/kvm", R_OK | W_OK) == 0, "/dev/kvm is not usable here: QEMU's microvm cannot run the guest")
        let sock = "/tmp/vfsvm-vublk-\(getpid()).sock"
        var template = Array("/tmp/vfsvm-vublk-img.XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        try #require(fd >= 0)
        let imagePath = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        defer {
            unlink(sock)
            unlink(imagePath)
        }
        let file = FileDescriptor(owning: fd)
        try #require(ftruncate(file.rawValue, 4096 * 512) == 0)
        _ = try Array("vfsvm-blk sector 0\n".utf8).withUnsafeBytes { try file.pwrite($0, at: 0) }

        let device = try VirtioBlockDevice(image: try BlockImage(path: imagePath, readOnly: false), serial: "vhost-user-blk")
        let logLines = Mutex<[String]>([])
        let server = try VhostUserBackendServer(device: VhostUserVirtioBackend(device: device), socketPath: sock,
                                                log: { line in logLines.withLock { $0.append(line) } })
        let result = Mutex<VhostUserBackendServer.Disconnect?>(nil)
        let thread = try OSThread {
            let end = try? server.run(.oneConnection)
            result.withLock { $0 = end }
        }
        let out = try makePipe(), errors = try makePipe()
        let packed = "packed=\(ring == "packed" ? "on" : "off")"
        let board: [String] = transport == "pci"
            ? ["-M", "pc,memory-backend=mem", "-device", "vhost-user-blk-pci,chardev=blk0,num-queues=1,disable-legacy=on,\(packed)"]
            : ["-M", "microvm,memory-backend=mem,rtc=on", "-global", "virtio-mmio.force-legacy=false",
               "-device", "vhost-user-blk,chardev=blk0,num-queues=1,\(packed)"]
        let qemu = try ChildProcess(path: Self.qemu, arguments: board + [
            "-accel", "kvm", "-m", "128M", "-object", "memory-backend-memfd,id=mem,size=128M,share=on",
            "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
            "-device", "isa-debug-exit,iobase=0x501,iosize=1", "-chardev", "socket,id=blk0,path=\(sock)",
            "-kernel", try Self.guestPath(), "-append", "ring=\(ring) sector=100 transport=\(transport)",
        ], stdout: out.write, stderr: errors.write)
        let status = qemu.wait(timeoutMilliseconds: 90_000)
        if status == nil { qemu.send(signal: SIGKILL) }
        _ = qemu.wait(timeoutMilliseconds: 5_000)
        func drain(_ fd: FileDescriptor) -> String {
            var text: [UInt8] = []
            while (try? pollReadable([fd], timeoutMilliseconds: 0)) == [true], let chunk = try? fd.readSome(limit: 65536), !chunk.isEmpty {
                text += chunk
            }
            return String(decoding: text, as: UTF8.self)
        }
        let console = drain(out.read), stderrText = drain(errors.read)
        server.stop()
        thread.join()
        print(console)

        #expect(qemu.exitCode == 33, "the guest's console:\n\(console)\nQEMU's stderr: \(stderrText)\nback-end: \(logLines.withLock { $0 })")
        #expect(console.contains("serial: vhost-user-blk"))
        #expect(console.contains("transport: virtio-\(transport), ring: \(ring)"))
        var back = [UInt8](repeating: 0, count: 1024)
        _ = try back.withUnsafeMutableBytes { try file.pread(into: $0, at: 100 * 512) }
        #expect(back == (0..<1024).map { UInt8(truncatingIfNeeded: $0 * 7 + 0x5a + $0 / 512) })
    }
}
