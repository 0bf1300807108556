import ArgumentParser
import Glibc
import VfsvmBoot
import VfsvmConfig
import VfsvmKVM
import VfsvmMachine
import VfsvmSys
import VfsvmVirtio
import VfsvmVirtioFS

/// `vfsvm run`: boots a guest with host directories shared over virtio-fs,
/// in vfsvm's own KVM VMM (`--accel kvm`) or with QEMU's TCG as the CPU
/// (`--accel tcg`); `--accel auto`, the default, decides by timing a
/// calibration guest under KVM (Accel.swift). The options become a checked
/// `RunPlan` (RunPlan.swift), which `runKVM` (RunKVM.swift) boots. Exit status: 0 when the guest powers off or
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

    @Option(help: "Accelerator: auto (kvm when a calibration guest shows KVM runs at hardware speed, else tcg), kvm (the in-process KVM VMM) or tcg (QEMU as the CPU).")
    var accel: Accelerator = .auto

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
        guard guest != nil || kernel != nil || domain != nil else { throw ValidationError("give a GUEST image, --kernel or --domain") }
    }

    /// Low-memory boot structures, the BIOS area and a kernel at 1 MiB
    /// (the loader then checks that the kernel itself fits).
    static let minimumMemory = X86Layout.minimumMemory

    mutating func run() throws {
        let extras = try domain.map { path in try applyDomain(path) }
        if printDomainXML { return try writeDomainXML() }
        do { try extras?.redirectConsole() } catch { throw failure(error.description, status: error.status) }
        let plan: RunPlan
        do { plan = try makePlan() } catch { throw failure(error.description, status: error.status) }
        switch accel.choosePath() {
        case .kvm: try runKVM(plan)
        case .tcg: throw failure("the tcg path (QEMU as the CPU) is not built yet; pass --accel kvm to use the in-process KVM VMM", status: 69)
        }
    }

    /// The checked plan: everything the user named is read or checked here,
    /// before anything starts.
    func makePlan() throws(PlanError) -> RunPlan {
        var image: GuestImage
        do {
            image = try guest.map { path throws(GuestImageError) in try GuestImage.load(path) } ?? GuestImage(kernel: [])
            if let kernel { image.kernel = try GuestImage.readWholeFile(kernel) }
            if let initrd { image.initrd = try GuestImage.readWholeFile(initrd) }
        } catch {
            throw PlanError(description: error.description, status: 66)
        }
        do { _ = try KernelImage.identify(image.kernel) } catch { throw PlanError(description: error.description, status: 64) }
        let specs: [ShareSpec]
        let bytes: UInt64
        do {
            specs = try share.map(parseShare)
            bytes = try MemorySize.parse(memory).bytes
        } catch {
            throw PlanError(description: "\(error)", status: 64)
        }
        let plan = RunPlan(
            image: image, kernelPath: kernel, initrdPath: initrd, cmdline: cmdline ?? image.cmdline ?? "console=ttyS0",
            shares: specs, disks: [], memoryBytes: bytes, cpus: cpus, transport: transport, ring: ring,
            requestQueues: requestQueues, debug: debug)
        try plan.checkInputs()
        return plan
    }

    /// One line on stderr, then the given exit status.
    func failure(_ line: String, status: Int32) -> ExitCode {
        logLine("vfsvm: \(line)")
        return ExitCode(status)
    }
}
