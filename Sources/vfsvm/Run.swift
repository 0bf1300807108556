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
/// `RunPlan` (RunPlan.swift), which `runKVM` (RunKVM.swift) or `runTCG`
/// (RunTCG.swift) boots. Exit status: 0 when the guest powers off or
/// reboots, (v << 1) | 1 when it writes v to the debug-exit port 0x501,
/// non-zero with one line on stderr when it crashes (a kernel panic on the
/// tcg path) or the VMM meets something it cannot handle, 124 after
/// `--timeout`, 128 + N for signal N; 64 for bad arguments and 66 for a
/// missing kernel, disk or share, before anything starts.
struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Boot a guest with host directories shared over virtio-fs (vfsvm's own KVM VMM, or QEMU's TCG where KVM is slow or missing).",
        discussion: """
            Example: vfsvm run --share /srv/data:myfs Images/out/guest.img
            GUEST is the guest.img bundle Images builds (its init mounts each share on /mnt/TAG, /run/mnt/TAG with --rootfs DIR:ro, \
            unless the command line names vfsvm.mount= itself), a kernel, or a raw disk image (booted with the default kernel and initramfs, \
            root=/dev/vda; the default is the guest.img beside the disk, or $VFSVM_GUEST).
            The console is COM1 on stdin/stdout; on a terminal, Ctrl-A x quits and Ctrl-A h lists the keys.
            """
    )

    @Option(name: .long, help: ArgumentHelp("Share HOSTDIR as virtio-fs TAG (repeatable); dax=SIZE adds a DAX window of SIZE (a power of two, 2M-16G; --accel kvm; a PCI BAR, or on --transport mmio a slot named by the SHM registers).", valueName: "HOSTDIR:TAG[:ro][:cache=never|auto|always][:dax=SIZE]"))
    var share: [String] = []

    @Option(name: .long, help: ArgumentHelp("Attach a raw disk image as virtio-blk (repeatable; after a disk GUEST, the first is /dev/vdb).", valueName: "FILE[:ro]"))
    var disk: [String] = []

    @Option(help: ArgumentHelp("Boot with DIR as the guest's root file system over virtio-fs (through the initramfs).", valueName: "DIR[:ro]"))
    var rootfs: String?

    @Option(help: "The kernel: a bzImage or an ELF with a PVH note (overrides the one in GUEST).")
    var kernel: String?

    @Option(help: "An initramfs for the kernel.")
    var initrd: String?

    @Option(help: "The kernel command line (replaces GUEST's).")
    var cmdline: String?

    @Option(help: "Appended to the kernel command line.")
    var append: String?

    @Option(help: ArgumentHelp("Guest memory, as QEMU's -m: a number of MiB, or with a K, M, G or T suffix.", valueName: "SIZE"))
    var memory = "512M"

    @Option(help: "Number of vCPUs.")
    var cpus: Int = 1

    @Option(help: "virtio transport for the shares on the KVM path: pci or mmio (default mmio; pci when a share has dax=). The tcg path boots QEMU's q35 board, pci only: it refuses mmio.")
    var transport: MachineConfig.Transport?

    @Option(help: "Virtqueue layout offered: split, packed, or auto (both; the driver chooses).")
    var ring: RingChoice = .auto

    @Option(help: "Accelerator: auto (kvm when a calibration guest shows KVM runs at hardware speed, else tcg), kvm (the in-process KVM VMM) or tcg (QEMU as the CPU).")
    var accel: Accelerator = .auto

    @Option(help: "Request queues per virtio-fs device.")
    var requestQueues: Int = 1

    @Option(help: ArgumentHelp("Stop the guest after this many seconds (exit status 124).", valueName: "SECONDS"))
    var timeout: Int?

    @Option(help: "System calls outside the KVM path's allow-list once the VM is built: kill (vfsvm ends after one line naming the call; the default), log (they run, the kernel logs them) or none (no filter). Capabilities the shares do not need are dropped either way.")
    var seccomp: SeccompMode = .kill

    @Option(help: "The KVM path's file system sandbox: namespace (new mount and network namespaces whose / holds only the shares; the default when vfsvm has CAP_SYS_ADMIN) or none (the default without it). The tcg path's vfsvm serve children always sandbox themselves.")
    var sandbox: SandboxMode?

    @Flag(help: "Print the QEMU command line the tcg path would run, and exit.")
    var printQemuCmdline = false

    @Flag(name: .customShort("d"), help: "Debug: count the vCPUs' exits to userspace per device and print them when the guest stops.")
    var debug = false

    @Option(help: ArgumentHelp("Take the VM from a libvirt domain XML file (RunDomain.swift); the options it replaces are refused.", valueName: "FILE"))
    var domain: String?

    @Flag(help: "With --domain: warn about what vfsvm cannot honour instead of refusing the domain.")
    var ignoreUnsupported = false

    @Flag(help: "Print the libvirt domain XML equivalent of this VM (QEMU under libvirt, vfsvm as the virtiofs daemon) and exit.")
    var printDomainXML = false

    @Argument(help: "The guest: the guest.img bundle Images builds (see Images/README.md), a kernel, or a raw disk image.")
    var guest: String?

    /// `--timeout`: whole seconds, below a year (the KVM path sleeps for it
    /// in a UInt32).
    static let timeoutRange = 1..<(86400 * 365)

    /// The tag of the `--rootfs` share.
    static let rootTag = "vfsvm-root"

    func validate() throws {
        // One tag per share is checked with the directories (RunPlan.checkInputs).
        for s in share { _ = try parseShare(s) }
        for d in disk { _ = try parseDisk(d) }
        guard (1...255).contains(cpus) else { throw ValidationError("--cpus must be between 1 and 255, got \(cpus)") }
        guard (1...VirtioFSDevice.maxRequestQueues).contains(requestQueues) else {
            throw ValidationError("--request-queues must be between 1 and \(VirtioFSDevice.maxRequestQueues), got \(requestQueues)")
        }
        let size = try MemorySize.parse(memory)
        guard size.bytes >= Self.minimumMemory else {
            throw ValidationError("--memory \(size) is too small: the board needs at least \(Self.minimumMemory >> 20) MiB")
        }
        if let timeout, !Self.timeoutRange.contains(timeout) {
            throw ValidationError("--timeout must be a positive number of seconds below a year (\(Self.timeoutRange.upperBound)), got \(timeout)")
        }
        if sandbox == .chroot {
            throw ValidationError("--sandbox chroot is vfsvm serve's (one share as the root); vfsvm run takes namespace or none")
        }
        guard guest != nil || kernel != nil || rootfs != nil || domain != nil else { throw ValidationError("give a GUEST image, --kernel, --rootfs or --domain") }
    }

    /// Low-memory boot structures, the BIOS area and a kernel at 1 MiB
    /// (the loader then checks that the kernel itself fits).
    static let minimumMemory = X86Layout.minimumMemory

    /// What a Linux guest (a bzImage, or any kernel with an initramfs)
    /// needs at the least: the Images kernel unpacks its initramfs into
    /// about 40 MiB.
    static let minimumLinuxMemory: UInt64 = 64 << 20

    mutating func run() throws {
        // Nothing inherited but stdin, stdout and stderr reaches the guest's
        // process (see FileDescriptor.closeInherited).
        FileDescriptor.closeInherited()
        let extras = try domain.map { path in try applyDomain(path) }
        if printDomainXML { return try writeDomainXML() }
        do { try extras?.redirectConsole() } catch { throw failure(error.description, status: error.status) }
        let plan: RunPlan
        do { plan = try makePlan() } catch { throw failure(error.description, status: error.status) }
        let path = printQemuCmdline ? .tcg : accel.choosePath()
        if path == .tcg, plan.transport == .mmio {
            // Tried with QEMU 7.2: -M microvm with vhost-user-fs-device and
            // Debian's kernel under TCG stops before userspace with its clock
            // standing still ("tsc: No reference (HPET/PMTIMER) available").
            throw failure("--transport mmio is not available on the tcg path: QEMU's microvm board does not boot Debian's kernel under TCG (its clock does not run); use --transport pci, or --accel kvm where KVM is hardware-accelerated", status: 64)
        }
        if let line = Self.daxRefusal(plan.shares, path: path, transport: plan.transport) { throw failure(line, status: 64) }
        if path == .tcg, !printQemuCmdline,
           let line = Self.tcgPrivilegeRefusal(plan.shares, capabilities: (try? Sandbox.effectiveCapabilities()) ?? []) {
            throw failure(line, status: 77)
        }
        switch path {
        case .kvm: try runKVM(plan)
        case .tcg: try runTCG(plan)
        }
    }

    /// A share with `dax=SIZE` needs a shared-memory window: the tcg
    /// path's QEMU 7.2 vhost-user-fs-pci has none (it was never merged
    /// upstream). The in-process VMM builds it on either transport (pci:
    /// BAR2; mmio: the SHM_SEL/LEN/BASE registers name a KVM slot above
    /// RAM). Without `--transport` a DAX share makes the KVM path choose pci.
    static func daxRefusal(_ shares: [ShareSpec], path: RunPath, transport: MachineConfig.Transport?) -> String? {
        guard let s = shares.first(where: { $0.dax != nil }), let dax = s.dax else { return nil }
        let share = "--share \(s.hostPath):\(s.tag):dax=\(dax)"
        switch path {
        case .tcg:
            return "\(share): a DAX window needs --accel kvm; the tcg path runs QEMU, whose vhost-user-fs device has no DAX window"
        case .kvm:
            return overlappingDAXShare(shares)
        }
    }

    /// The tcg path serves each share from a `vfsvm serve` child in the
    /// namespace sandbox, which needs CAP_SYS_ADMIN (unshare(CLONE_NEWNS),
    /// mounts, pivot_root): without it every backend would fail after QEMU
    /// started, leaving QEMU's and serve's errors instead of a reason. So
    /// an unprivileged run with shares is refused up front (exit 77,
    /// EX_NOPERM). The shares are not served unsandboxed behind the user's
    /// back; the KVM path, which a user of the kvm group can take, serves
    /// them in-process under its seccomp filter (RunSandbox.swift).
    static func tcgPrivilegeRefusal(_ shares: [ShareSpec], capabilities: [Int32]) -> String? {
        guard let s = shares.first, !capabilities.contains(Capability.sysAdmin) else { return nil }
        let what = s.tag.value == rootTag ? "--rootfs \(s.hostPath)" : "--share \(s.hostPath):\(s.tag)"
        return "\(what) on the tcg path needs root (CAP_SYS_ADMIN): each share is served by a vfsvm serve in a namespace sandbox, which an unprivileged user cannot enter; run vfsvm as root, or use --accel kvm (a user with access to /dev/kvm can)"
    }

    /// Each share's DAX window knows the truncations made through its own
    /// server only: a file of a dax= share shrunk through another share of
    /// the same directory tree would leave mapped pages past its end (the
    /// guest's vCPU would stop on them). So a dax= share must not overlap
    /// another share.
    static func overlappingDAXShare(_ shares: [ShareSpec]) -> String? {
        func within(_ a: String, _ b: String) -> Bool { a == b || a.hasPrefix(b == "/" ? "/" : b + "/") }
        for d in shares where d.dax != nil {
            let dp = ShareDirectory.lexicallyAbsolute(d.hostPath)
            for o in shares where o.tag != d.tag {
                let op = ShareDirectory.lexicallyAbsolute(o.hostPath)
                guard within(dp, op) || within(op, dp) else { continue }
                return "--share \(d.hostPath):\(d.tag) with dax= and --share \(o.hostPath):\(o.tag) are one directory tree: a file truncated through one would leave pages past its end in the other's DAX window; give dax= shares directories of their own"
            }
        }
        return nil
    }

    /// The checked plan: everything the user named is read or checked here,
    /// before anything starts.
    func makePlan() throws(PlanError) -> RunPlan {
        var image: GuestImage
        var kernelPath = kernel
        var disks: [DiskSpec] = []
        var extra: [String] = []
        do throws(GuestImageError) {
            var bundle = guest
            if let guest {
                switch try GuestImage.kind(ofFileAt: guest) {
                case .bundle: break
                case .kernel:
                    bundle = nil
                    if kernelPath == nil { kernelPath = guest }
                case .disk:
                    bundle = kernel == nil ? try defaultGuest(besides: guest) : nil
                    disks.append(DiskSpec(path: guest, readOnly: false))
                    extra.append("root=/dev/vda")
                }
            } else if kernel == nil {
                bundle = try defaultGuest(besides: nil)  // --rootfs with the default kernel
            }
            image = try bundle.map { path throws(GuestImageError) in try GuestImage.load(path) } ?? GuestImage(kernel: [])
            if let kernelPath {
                image.kernel = try GuestImage.readWholeFile(kernelPath)
                image.bzImage = nil
            }
            if let initrd { image.initrd = try GuestImage.readWholeFile(initrd) }
        } catch {
            throw PlanError(description: error.description, status: 66)
        }
        let linux: Bool
        do {
            if case .bzImage = try KernelImage.identify(image.kernel) { linux = true } else { linux = image.initrd != nil }
        } catch { throw PlanError(description: error.description, status: 64) }
        var specs: [ShareSpec]
        let bytes: UInt64
        do {
            specs = try share.map(parseShare)
            disks += try disk.map(parseDisk)
            bytes = try MemorySize.parse(memory).bytes
        } catch {
            throw PlanError(description: "\(error)", status: 64)
        }
        if linux && bytes < Self.minimumLinuxMemory {
            throw PlanError(description: "--memory \(MemorySize(bytes: bytes)) is too small for a Linux guest: give at least \(Self.minimumLinuxMemory >> 20) MiB", status: 64)
        }
        if let rootfs {
            let ro = rootfs.hasSuffix(":ro")
            let dir = ro ? String(rootfs.dropLast(3)) : rootfs
            do { specs.append(try ShareSpec(parsing: "\(dir):\(Self.rootTag)\(ro ? ":ro" : "")")) } catch {
                throw PlanError(description: "--rootfs \(rootfs): \(error)", status: 64)
            }
            extra += ["rootfstype=virtiofs", "root=\(Self.rootTag)"] + (ro ? ["ro"] : [])
        }
        // The Images init mounts vfsvm.mount= shares: without a command line
        // of the user's own, each share is mounted on /mnt/TAG (on a
        // read-only --rootfs, where /mnt/TAG cannot be made, /run/mnt/TAG).
        let userMounts = (append ?? "").contains("vfsvm.mount=")
        let mountBase = rootfs?.hasSuffix(":ro") == true ? "/run/mnt" : "/mnt"
        if cmdline == nil, image.cmdline != nil, !userMounts {
            for s in specs where s.tag.value != Self.rootTag {
                extra.append("vfsvm.mount=\(s.tag.value):\(mountBase)/\(s.tag.value)\(s.readOnly ? ":ro" : "")")
            }
        }
        if let append { extra.append(append) }
        let base = cmdline ?? image.cmdline ?? "console=ttyS0"
        let plan = RunPlan(
            image: image, kernelPath: kernelPath, initrdPath: initrd,
            cmdline: ([base] + extra).joined(separator: " "),
            shares: specs, disks: disks, memoryBytes: bytes, cpus: cpus, transport: transport, ring: ring,
            requestQueues: requestQueues, debug: debug)
        try plan.checkInputs()
        return plan
    }

    /// The guest.img to boot a disk or a --rootfs with: $VFSVM_GUEST, else
    /// the one beside the disk, else Images/out/guest.img of the source
    /// tree this binary was built in (.build/<config>/vfsvm).
    func defaultGuest(besides disk: String?) throws(GuestImageError) -> String {
        var candidates: [String] = []
        if let env = getenv("VFSVM_GUEST") { candidates.append(String(cString: env)) }
        if let disk {
            let dir = disk.contains("/") ? String(disk[..<disk.lastIndex(of: "/")!]) : "."
            candidates.append(dir + "/guest.img")
        }
        if let exe = try? readLink("/proc/self/exe") {
            // .build/<triple>/<config>/vfsvm: the source tree is 3 or 4 up.
            var parts = exe.split(separator: "/", omittingEmptySubsequences: false)
            for _ in 0..<5 where parts.count > 1 {
                parts.removeLast()
                let dir = parts.joined(separator: "/")
                if !dir.hasSuffix("/.build") && !dir.contains("/.build/") {
                    candidates.append(dir + "/Images/out/guest.img")
                    break
                }
            }
        }
        for c in candidates where access(c, R_OK) == 0 { return c }
        throw .badBundle(disk ?? "--rootfs", "no default kernel to boot it with: give --kernel (and --initrd), or set VFSVM_GUEST to a guest.img (tried \(candidates.joined(separator: ", ")))")
    }

    /// One line on stderr, then the given exit status.
    func failure(_ line: String, status: Int32) -> ExitCode {
        logLine("vfsvm: \(line)")
        return ExitCode(status)
    }
}
