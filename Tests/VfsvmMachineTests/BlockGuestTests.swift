import Glibc
import Synchronization
import Testing
import VfsvmMachine
import VfsvmSys
import VfsvmVirtioBlk

/// The virtio-blk device on the board under /dev/kvm: Tests/Guests/blk.c
/// finds it over virtio-mmio through the DSDT, reads sector 0, writes and
/// flushes a pattern, reads it back; the image file is checked here after.
@Suite(.serialized) struct BlockGuestTests {
    static let packageRoot: String = {
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)  // Tests/VfsvmMachineTests/BlockGuestTests.swift
        return parts.joined(separator: "/")
    }()

    /// .build/guests/blk.elf, built with the Tests/Guests Makefile when
    /// missing (`make guests` builds it too).
    static func guest() throws -> [UInt8] {
        let out = packageRoot + "/.build/guests"
        let path = out + "/blk.elf"
        if access(path, R_OK) != 0 {
            let make = try ChildProcess(path: "/usr/bin/make", arguments: ["-s", "-C", packageRoot + "/Tests/Guests", "OUT=" + out, out + "/blk.elf"])
            let status = make.wait(timeoutMilliseconds: 60_000)
            try #require(status == 0, "building \(path) with make -C Tests/Guests failed (status \(status.map(String.init) ?? "timeout")); is gcc installed?")
        }
        let fd = try FileDescriptor.open(path, O_RDONLY)
        var bytes: [UInt8] = []
        while true {
            let chunk = try fd.readSome(limit: 65536)
            if chunk.isEmpty { break }
            bytes += chunk
        }
        return bytes
    }

    static func pattern(_ i: Int) -> UInt8 { UInt8(truncatingIfNeeded: i * 7 + 0x5a + i / 512) }

    /// Over virtio-mmio (the DSDT's LNRO0005, a GSI) and virtio-pci (slot
    /// 1; MSI-X, or INTx with `msix=off`), with each ring layout.
    @Test(arguments: [(MachineConfig.Transport.mmio, "split", ""), (.mmio, "packed", ""), (.pci, "split", ""), (.pci, "packed", "msix=off")])
    func theGuestReadsWritesAndFlushesTheImage(transport: MachineConfig.Transport, ring: String, extra: String) throws {
        guard access("/dev/kvm", R_OK | W_OK) == 0 else {
            Issue.record("/dev/kvm is not usable here (errno \(errno)): the virtio-blk guest cannot run")
            return
        }
        var template = Array("/tmp/vfsvm-blk-guest.XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        try #require(fd >= 0)
        let path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        defer { unlink(path) }
        let file = FileDescriptor(owning: fd)
        try #require(ftruncate(file.rawValue, 4096 * 512) == 0)
        let line = Array("vfsvm-blk sector 0\n".utf8)
        _ = try line.withUnsafeBytes { try file.pwrite($0, at: 0) }

        let device = try VirtioBlockDevice(image: try BlockImage(path: path, readOnly: false), serial: "blk-guest-test")
        let console = Mutex<[UInt8]>([])
        let machine = try Machine.build(MachineConfig(
            memorySize: 64 << 20, kernel: try Self.guest(), cmdline: "ring=\(ring) sector=100 transport=\(transport) \(extra)", devices: [device], transport: transport,
            consoleOutput: { b in console.withLock { $0.append(b) } }))
        let done = Atomic(false)
        try OSThread(name: "watchdog") {
            for _ in 0..<600 where !done.load(ordering: .relaxed) { usleep(100_000) }
            if !done.load(ordering: .relaxed) { machine.stop(.failure("the blk guest did not finish within 60 s")) }
        }.detach()
        let stop = machine.run()
        done.store(true, ordering: .relaxed)
        let text = String(decoding: console.withLock { $0 }, as: UTF8.self)
        print(text)
        #expect(stop == .debugExit(0x10), "guest console:\n\(text)")
        #expect(text.contains("ok: sector 0 holds the host's line"))
        #expect(text.contains("serial: blk-guest-test"))
        #expect(text.contains("transport: virtio-\(transport), ring: \(ring)"))
        let interrupts = transport == .pci && extra.isEmpty ? "MSI-X" : "GSI"
        #expect(text.contains("ring: \(ring), \(interrupts)"), "interrupts by \(interrupts)")

        var back = [UInt8](repeating: 0, count: 1024)
        _ = try back.withUnsafeMutableBytes { try file.pread(into: $0, at: 100 * 512) }
        #expect(back == (0..<1024).map(Self.pattern))
        var around = [UInt8](repeating: 0xFF, count: 512)
        _ = try around.withUnsafeMutableBytes { try file.pread(into: $0, at: 99 * 512) }
        #expect(around == [UInt8](repeating: 0, count: 512))
        _ = try around.withUnsafeMutableBytes { try file.pread(into: $0, at: 102 * 512) }
        #expect(around == [UInt8](repeating: 0, count: 512))
    }
}
