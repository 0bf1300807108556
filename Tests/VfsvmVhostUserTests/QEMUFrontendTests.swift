import Glibc
import Synchronization
import Testing
import VfsvmSys
import VfsvmVhostUserTestSupport
import VfsvmVirtio
@testable import VfsvmVhostUser

/// QEMU 7.2 (Debian's qemu-system-x86) as the front-end. When it realizes
/// `vhost-user-fs-pci` it connects, negotiates features and protocol
/// features, reads the queue count, takes ownership and sets each queue's
/// call fd, all before its main loop (and so its QMP monitor) runs. QEMU
/// exits with an error if the back-end refuses anything, and the server
/// drops QEMU if QEMU sends anything it cannot validate; so QEMU answering
/// QMP, then quitting cleanly with the server seeing a plain close, is the
/// check.
@Suite struct QEMUFrontendTests {
    static let qemu = "/usr/bin/qemu-system-x86_64"

    @Test(.timeLimit(.minutes(1)))
    func qemuCompletesTheHandshake() throws {
        try #require(access(Self.qemu, X_OK) == 0,
                     "qemu-system-x86 is not installed here: this interoperability test cannot run")
        let path = "/tmp/vfsvm-vhost-qemu-\(getpid()).sock"
        let qmpPath = "/tmp/vfsvm-vhost-qmp-\(getpid()).sock"
        defer {
            unlink(path)
            unlink(qmpPath)
        }
        // virtio-fs: VIRTIO_F_VERSION_1; 1 hiprio + 1 request queue.
        let device = RecordingDevice(features: .version1, queues: 2)
        let logLines = Mutex<[String]>([])
        // QEMU's vhost-user-fs takes its config from its own tag= and warns
        // when the back-end offers CONFIG, so leave that out.
        let server = try VhostUserBackendServer(device: device, socketPath: path,
                                                protocolFeatures: VhostUserProtocolFeature.supported & ~VhostUserProtocolFeature.config,
                                                log: { line in logLines.withLock { $0.append(line) } })
        let result = Mutex<VhostUserBackendServer.Disconnect?>(nil)
        let thread = try OSThread {
            let end = try? server.run(.oneConnection)
            result.withLock { $0 = end }
        }
        let errors = try makePipe()
        let started = Result { () throws(SystemError) in try ChildProcess(path: Self.qemu, arguments: [
            "-M", "pc", "-m", "128M", "-nodefaults", "-display", "none", "-S",
            "-object", "memory-backend-memfd,id=mem,size=128M,share=on", "-machine", "memory-backend=mem",
            "-chardev", "socket,id=vufs,path=\(path)",
            "-device", "vhost-user-fs-pci,chardev=vufs,tag=myfs,queue-size=256",
            "-qmp", "unix:\(qmpPath),server=on,wait=off",
        ], stderr: errors.write) }
        guard case let .success(qemu) = started else {
            server.stop()
            thread.join()
            _ = try started.get()
            return
        }

        // The QMP greeting comes once QEMU's main loop runs, after the device
        // (and the vhost-user handshake) is done.
        var qmp: FileDescriptor?
        for _ in 0..<500 where qmp == nil && qemu.isRunning {
            qmp = try? UnixSocket.connect(path: qmpPath)
            if qmp == nil { usleep(20_000) }
        }
        let greeting = qmp.flatMap { try? String(decoding: $0.readSome(), as: UTF8.self) } ?? ""
        let qemuServed = greeting.contains("\"QMP\"")
        if let qmp {
            try? qmp.send(Array(#"{"execute":"qmp_capabilities"}{"execute":"quit"}"#.utf8))
        }
        let status = qemu.wait(timeoutMilliseconds: 10_000)
        if status == nil { qemu.send(signal: SIGKILL) }
        _ = qemu.wait(timeoutMilliseconds: 5_000)
        // Read only what is there: we hold a copy of the write end too.
        var stderrText = ""
        if (try? pollReadable([errors.read], timeoutMilliseconds: 0)) == [true] {
            stderrText = String(decoding: (try? errors.read.readSome(limit: 65536)) ?? [], as: UTF8.self)
        }
        // QEMU is gone, so the server's connection has ended (or never began).
        server.stop()
        thread.join()

        #expect(qemuServed, "QEMU came up with the back-end; its stderr: \(stderrText)")
        #expect(qemu.exitCode == 0, "QEMU quit cleanly; its stderr: \(stderrText)")
        #expect(stderrText.isEmpty, "QEMU had no complaint about the back-end")
        #expect(device.featureReadCount > 0, "QEMU sent GET_FEATURES")
        #expect(result.withLock { $0 } == .peerClosed, "every message QEMU sent was accepted: \(logLines.withLock { $0 })")
        #expect(device.calls == [.reset])
    }
}
