import ArgumentParser
import Glibc
import VfsvmBoot
import VfsvmConfig
import VfsvmKVM
import VfsvmMachine
import VfsvmSys
import VfsvmVirtio
import VfsvmVirtioFS

/// `vfsvm run`: boots a guest in vfsvm's own KVM VMM with host directories
/// shared over virtio-fs. Exit status: 0 when the guest powers off or
/// reboots, (v << 1) | 1 when it writes v to the debug-exit port 0x501,
/// non-zero with one line on stderr when it crashes or the VMM meets
/// something it cannot handle; 64 for bad arguments and 66 for a missing
/// kernel or share, before anything starts.
struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Boot a guest in vfsvm's own KVM VMM with host directories shared over virtio-fs.",
        discussion: """
            Example: vfsvm run --share /srv/data:myfs Images/out/guest.img, then in the guest: mount -t virtiofs myfs /mnt
            The console is COM1 on stdin/stdout; on a terminal, Ctrl-A x quits and Ctrl-A h lists the keys.
            """
    )

    @Option(name: .long, help: ArgumentHelp("Share HOSTDIR as virtio-fs TAG (repeatable).", valueName: "HOSTDIR:TAG[:ro][:cache=never|auto|always]"))
    var share: [String] = []

    @Option(help: "The kernel: a bzImage or an ELF with a PVH note (overrides the one in GUEST).")
    var kernel: String?

    @Option(help: "An initramfs for the kernel.")
    var initrd: String?

    @Option(help: "The kernel command line.")
    var cmdline: String?

    @Option(help: ArgumentHelp("Guest memory, as QEMU's -m: a number of MiB, or with a K, M, G or T suffix.", valueName: "SIZE"))
    var memory = "512M"

    @Option(help: "Number of vCPUs.")
    var cpus: Int = 1

    @Option(help: "virtio transport for the shares: pci or mmio.")
    var transport: MachineConfig.Transport = .mmio

    @Option(help: "Virtqueue layout offered: split, packed, or auto (both; the driver chooses).")
    var ring: RingChoice = .auto

    @Option(help: "Accelerator: kvm (the in-process KVM VMM).")
    var accel: Accelerator = .kvm

    @Option(help: "Request queues per virtio-fs device.")
    var requestQueues: Int = 1

    @Flag(name: .customShort("d"), help: "Debug: count the vCPUs' exits to userspace per device and print them when the guest stops.")
    var debug = false

    @Option(help: ArgumentHelp("Take the VM from a libvirt domain XML file (RunDomain.swift); the options it replaces are refused.", valueName: "FILE"))
    var domain: String?

    @Flag(help: "With --domain: warn about what vfsvm cannot honour instead of refusing the domain.")
    var ignoreUnsupported = false

    @Flag(help: "Print the libvirt domain XML equivalent of this VM (QEMU under libvirt, vfsvm as the virtiofs daemon) and exit.")
    var printDomainXML = false

    @Argument(help: "The guest: a kernel, or the guest.img bundle Images builds (see Images/README.md).")
    var guest: String?

    func validate() throws {
        var tags: Set<String> = []
        for s in share {
            let spec = try parseShare(s)
            guard tags.insert(spec.tag.value).inserted else { throw ValidationError("two shares use the tag '\(spec.tag)'; each needs its own") }
        }
        guard (1...255).contains(cpus) else { throw ValidationError("--cpus must be between 1 and 255, got \(cpus)") }
        guard (1...VirtioFSDevice.maxRequestQueues).contains(requestQueues) else {
            throw ValidationError("--request-queues must be between 1 and \(VirtioFSDevice.maxRequestQueues), got \(requestQueues)")
        }
        let size = try MemorySize.parse(memory)
        guard size.bytes >= Self.minimumMemory else {
            throw ValidationError("--memory \(size) is too small: the board needs at least \(Self.minimumMemory >> 20) MiB")
        }
        switch accel {
        case .kvm: break
        case .tcg, .auto:
            throw ValidationError("--accel \(accel.rawValue) is not built yet: vfsvm run has only the in-process KVM VMM (--accel kvm); the QEMU TCG path and auto selection come with issue 10")
        }
        guard guest != nil || kernel != nil || domain != nil else { throw ValidationError("give a GUEST image, --kernel or --domain") }
    }

    /// Low-memory boot structures, the BIOS area and a kernel at 1 MiB
    /// (the loader then checks that the kernel itself fits).
    static let minimumMemory = X86Layout.minimumMemory

    mutating func run() throws {
        let extras = try domain.map { path in try applyDomain(path) }
        if printDomainXML { return try writeDomainXML() }
        do { try extras?.redirectConsole() } catch { throw failure(error.line, status: error.status) }
        // Everything the user named is checked before anything starts.
        let image: GuestImage
        do {
            var g = try guest.map { path throws(GuestImageError) in try GuestImage.load(path) } ?? GuestImage(kernel: [])
            if let kernel { g.kernel = try GuestImage.readWholeFile(kernel) }
            if let initrd { g.initrd = try GuestImage.readWholeFile(initrd) }
            image = g
        } catch {
            throw failure(error.description, status: 66)
        }
        var devices: [any VirtioDevice] = []
        for text in share {
            let spec = try parseShare(text)
            guard (try? FileDescriptor.open(spec.hostPath, O_RDONLY | O_DIRECTORY)) != nil else {
                throw failure("share \(spec.hostPath): not a directory", status: 66)
            }
            var settings = ServeSettings()
            settings.sharedDir = spec.hostPath
            settings.readOnly = spec.readOnly
            if let cache = spec.cache { settings.cache = cache }
            let server = try makeFileServer(settings: settings, engine: .uring)
            let device = try VirtioFSDevice(tag: spec.tag.value, requestQueues: requestQueues, server: server)
            devices.append(RingChoiceDevice(device, choice: ring))
        }

        let stdout = UnownedDescriptor(1)
        let config = MachineConfig(
            memorySize: try MemorySize.parse(memory).bytes, cpus: cpus, kernel: image.kernel, initrd: image.initrd,
            cmdline: cmdline ?? image.cmdline ?? "console=ttyS0", devices: devices, transport: transport,
            countExits: debug, consoleOutput: { stdout.write(byte: $0) })
        let machine: Machine
        do {
            machine = try Machine.build(config)
        } catch {
            switch error {
            case .boot, .badConfig: throw failure(error.description, status: 64)
            case .kvm(.unavailable), .kvm(.missingCapability): throw failure(error.description, status: 69)
            default: throw failure(error.description, status: 1)
            }
        }

        let console = try Console()
        blockSignals([SIGINT, SIGTERM, SIGHUP])
        try OSThread(name: "signals") {
            let sig = waitForSignal([SIGINT, SIGTERM, SIGHUP])
            machine.stop(.quit("terminated by signal \(sig)", status: 128 + sig))
        }.detach()
        try console.enterRawMode()
        defer { console.restore() }
        try console.startInput(to: machine)
        let reason = machine.run()
        console.stop()
        console.restore()

        if debug, let counters = machine.counters {
            let list = counters.snapshot.map { "\($0.0) \($0.1)" }.joined(separator: ", ")
            logLine("vfsvm: exits to userspace: \(list.isEmpty ? "none" : list)")
            logLine("vfsvm: \(reason)")
        }
        if case .failure(let line) = reason { logLine("vfsvm: \(line)") }
        if reason.exitStatus != 0 { throw ExitCode(reason.exitStatus) }
    }

    /// One line on stderr, then the given exit status.
    func failure(_ line: String, status: Int32) -> ExitCode {
        logLine("vfsvm: \(line)")
        return ExitCode(status)
    }
}
