import ArgumentParser
import VfsvmConfig

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Boot a guest in vfsvm's own KVM VMM with host directories shared over virtio-fs.",
        discussion: "Example: vfsvm run --share /srv/data:myfs Images/out/guest.img, then in the guest: mount -t virtiofs myfs /mnt"
    )

    @Option(name: .long, help: ArgumentHelp("Share HOSTDIR as virtio-fs TAG (repeatable).", valueName: "HOSTDIR:TAG[:ro]"))
    var share: [String] = []

    @Option(help: "Guest memory in MiB.")
    var memory: Int = 512

    @Option(help: "Number of vCPUs.")
    var cpus: Int = 1

    @Option(help: "virtio transport for the shares: pci or mmio.")
    var transport: String = "pci"

    @Argument(help: "The guest image (see Images/README.md).")
    var image: String

    func validate() throws {
        for s in share { _ = try parseShare(s) }
        guard memory >= 64 else { throw ValidationError("--memory must be at least 64 MiB, got \(memory)") }
        guard (1...64).contains(cpus) else { throw ValidationError("--cpus must be between 1 and 64, got \(cpus)") }
        guard transport == "pci" || transport == "mmio" else {
            throw ValidationError("--transport must be pci or mmio, got '\(transport)'")
        }
    }

    func run() throws {
        throw notImplemented(
            "vfsvm run",
            "the in-process KVM VMM has not landed. Today a Linux guest mounts vfsvm shares under QEMU (make run shows it).")
    }
}
