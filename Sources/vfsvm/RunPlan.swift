import ArgumentParser
import Glibc
import VfsvmConfig
import VfsvmMachine
import VfsvmSys

/// Everything `vfsvm run` will boot, checked: built from the command line
/// (or another frontend, such as a libvirt domain) before anything starts,
/// then handed to `runKVM` or `runTCG`. Building it is where every error
/// the user can make is found: one line and a non-zero exit, no guest.
struct RunPlan {
    /// The guest's kernel and initramfs, read into memory (the KVM path
    /// loads them itself; the tcg path hands QEMU the files).
    var image: GuestImage
    /// Where the kernel and initramfs came from, for QEMU's `-kernel` and
    /// `-initrd` (nil when only inside a bundle: the tcg path writes them
    /// to its private directory).
    var kernelPath: String?
    var initrdPath: String?
    var cmdline: String
    var shares: [ShareSpec]
    var disks: [DiskSpec]
    var memoryBytes: UInt64
    var cpus: Int
    /// nil: the path's default (mmio in the KVM VMM; the tcg path's q35
    /// is pci, and it refuses an explicit mmio).
    var transport: MachineConfig.Transport?
    var ring: RingChoice
    var requestQueues: Int
    /// Count exits (KVM) and print them at the end.
    var debug: Bool
}

/// A plan that cannot run: the one line the user sees and the exit status
/// (64 for a bad argument, 66 for a missing input).
struct PlanError: Error, Equatable, CustomStringConvertible {
    let description: String
    let status: Int32
}

extension RunPlan {
    /// Checks every share (an existing directory named by its real path, as
    /// `vfsvm serve` requires, one tag each) and disk (readable, and
    /// writable unless `:ro`); throws the first problem.
    func checkInputs() throws(PlanError) {
        var tags: Set<String> = []
        for spec in shares {
            guard (try? FileDescriptor.open(spec.hostPath, O_RDONLY | O_DIRECTORY)) != nil else {
                throw PlanError(description: "share \(spec.hostPath): not a directory", status: 66)
            }
            do { _ = try ShareDirectory.open(spec.hostPath) } catch { throw PlanError(description: error.description, status: 66) }
            guard tags.insert(spec.tag.value).inserted else {
                let why = spec.tag.value == Run.rootTag ? "the tag '\(spec.tag)' is --rootfs's; give the share another"
                    : "two shares use the tag '\(spec.tag)'; each needs its own"
                throw PlanError(description: why, status: 64)
            }
        }
        for disk in disks {
            guard access(disk.path, F_OK) == 0 else {
                throw PlanError(description: "disk \(disk.path): no such file", status: 66)
            }
            guard access(disk.path, disk.readOnly ? R_OK : R_OK | W_OK) == 0 else {
                let need = disk.readOnly ? "readable" : "readable and writable"
                let hint = disk.readOnly ? "" : " (attach it read-only with --disk \(disk.path):ro)"
                throw PlanError(description: "disk \(disk.path): not \(need) by this user\(hint)", status: 66)
            }
        }
    }
}
