import VfsvmConfig
import VfsvmMachine

/// The qemu-system-x86_64 command line of the tcg path, generated from the
/// plan: a q35 machine with QEMU's TCG as the CPU, guest RAM in the memfd
/// vfsvm created (shared, so the vhost-user backends can map it), one
/// vhost-user-fs-pci per share on vfsvm's private sockets, the disks on
/// QEMU's virtio-blk, isa-debug-exit on 0x501 and COM1 on QEMU's stdio
/// (a pipe to vfsvm, which forwards it to the terminal).
struct QEMUCommandLine {
    /// Where the running pieces are: the memfd's number in QEMU, the
    /// kernel and initramfs files, each share's socket.
    struct Paths {
        var memoryFD: Int32
        var kernel: String
        var initrd: String?
        var shareSockets: [String]
    }

    static let binary = "qemu-system-x86_64"

    /// The vhost-user-fs-pci queue size (QEMU's maximum; `vfsvm serve`
    /// accepts up to 1024 by default).
    static let queueSize = 1024

    static func arguments(for plan: RunPlan, paths: Paths) -> [String] {
        let mib = plan.memoryBytes >> 20
        var a = [
            "-M", "q35", "-accel", "tcg", "-cpu", "max",
            "-nodefaults", "-no-user-config", "-display", "none", "-vga", "none", "-no-reboot",
            "-m", "\(mib)M", "-smp", "\(plan.cpus)",
            "-object", "memory-backend-file,id=mem,size=\(mib)M,mem-path=/proc/self/fd/\(paths.memoryFD),share=on",
            "-numa", "node,memdev=mem",
            "-kernel", paths.kernel,
        ]
        if let initrd = paths.initrd { a += ["-initrd", initrd] }
        a += ["-append", plan.cmdline]
        for (i, share) in plan.shares.enumerated() {
            // VirtioFSTag holds no ','; escaped all the same, as every value.
            var device = "vhost-user-fs-pci,chardev=fs\(i),tag=\(escapeOption(share.tag.value)),queue-size=\(queueSize)"
            device += ",num-request-queues=\(plan.requestQueues)"
            switch plan.ring {
            case .split: device += ",packed=off"
            case .packed, .auto: device += ",packed=on"  // auto: offered, the driver chooses
            }
            a += ["-chardev", "socket,id=fs\(i),path=\(escapeOption(paths.shareSockets[i]))", "-device", device]
        }
        for (i, disk) in plan.disks.enumerated() {
            // file.driver=file: the name is a file name, never a protocol
            // (`file=nbd:host:port` or `fat:rw:DIR` would be one).
            var drive = "file.driver=file,file.filename=\(escapeOption(disk.path)),format=raw,if=none,id=disk\(i),cache=none,aio=threads"
            if disk.readOnly { drive += ",readonly=on" }
            a += ["-drive", drive, "-device", "virtio-blk-pci,drive=disk\(i)"]
        }
        a += [
            "-device", "isa-debug-exit,iobase=0x501,iosize=1",
            "-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con",
        ]
        return a
    }

    /// QEMU option values separate with ',': a comma in a value is doubled.
    static func escapeOption(_ value: String) -> String {
        value.replacingAll(",", with: ",,")
    }

    /// The command as a shell line (single quotes where needed).
    static func shellLine(_ argv: [String]) -> String {
        argv.map(shellQuote).joined(separator: " ")
    }

    static func shellQuote(_ word: String) -> String {
        let safe = word.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a)
                || [UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "/"), UInt8(ascii: ","),
                    UInt8(ascii: "="), UInt8(ascii: ":"), UInt8(ascii: "+"), UInt8(ascii: "@")].contains(b)
        }
        if safe && !word.isEmpty { return word }
        return "'" + word.replacingAll("'", with: "'\\''") + "'"
    }
}

extension String {
    func replacingAll(_ target: Character, with replacement: String) -> String {
        var out = ""
        for c in self { if c == target { out += replacement } else { out.append(c) } }
        return out
    }
}
