import ArgumentParser
import VfsvmConfig
import VfsvmSys

extension Run {
    /// The KVM path's file-system sandbox (`--sandbox`), entered once
    /// /dev/kvm, the disks and the shares' directories are open and before
    /// anything is served: new mount and network namespaces whose `/` is a
    /// read-only tmpfs holding only the shares (`Sandbox.enterMachineNamespace`).
    /// The vCPUs, the device models and the FUSE servers share one process
    /// with a hostile guest; the FUSE core's own checks keep requests
    /// inside each share, and this keeps a bug in any of them from finding
    /// the host's file system behind it, through a path, through ".." from a
    /// share, or through an io_uring open that seccomp cannot see.
    ///
    /// Namespaces take CAP_SYS_ADMIN. Without `--sandbox` vfsvm uses one
    /// when it has that capability (root), and otherwise runs without (a
    /// user of the kvm group reaches only what that user may; `-d` says
    /// so); `--sandbox namespace` insists, `--sandbox none` skips it.
    /// Returns nil when no namespace was entered.
    func enterSandbox(_ shares: [ShareSpec], fds: [FileDescriptor], debug: Bool) throws -> Sandbox.Machine? {
        let privileged = ((try? Sandbox.effectiveCapabilities()) ?? []).contains(Capability.sysAdmin)
        switch sandbox ?? (privileged ? .namespace : .none) {
        case .none:
            if debug {
                logLine(sandbox == nil
                    ? "vfsvm: sandbox: no mount namespace (vfsvm has no CAP_SYS_ADMIN to make one); each share is still resolved beneath its root"
                    : "vfsvm: sandbox: no mount namespace (--sandbox none)")
            }
            return nil
        case .namespace, .chroot:  // chroot: refused by validate()
            let machine: Sandbox.Machine
            do {
                machine = try Sandbox.enterMachineNamespace(zip(shares, fds).map { Sandbox.MachineShare(path: $0.hostPath, fd: $1, readOnly: $0.readOnly) })
            } catch {
                throw failure("\(error); pass --sandbox none to run without a mount namespace", status: 71)
            }
            if debug {
                let list = shares.indices.map { "\(Sandbox.machineShareDirectory($0)) = \(shares[$0].hostPath)\(shares[$0].readOnly ? " (ro)" : "")" }
                logLine("vfsvm: sandbox: mount namespace, / a read-only tmpfs with \(list.isEmpty ? "no shares" : list.joined(separator: ", "))")
            }
            return machine
        }
    }

    /// Confines the KVM path's process once the VM is built (memory, vCPUs,
    /// devices, eventfds, irqfds, ioeventfds, the shares' FUSE servers) and
    /// before any thread starts or the guest runs: the vCPUs and the FUSE
    /// servers share it with a hostile guest, so a bug in a device model or
    /// in the FUSE core must not find the VMM's full privileges behind it.
    ///
    /// - Capabilities: only `keep` (what the shares' FUSE servers need,
    ///   as `vfsvm serve` keeps them) stays in the effective, permitted and
    ///   bounding sets; the rest, CAP_SYS_ADMIN included, is dropped. As
    ///   root without shares nothing is kept.
    /// - no_new_privs, and with `--seccomp kill` (the default) the VMM's
    ///   allow-list (`SeccompAllowList.vmm`: the file server's calls, ioctl
    ///   only for KVM_RUN and the few KVM requests the board makes while the
    ///   guest runs). Any other call ends vfsvm by SIGSYS after one line
    ///   naming it. Kill, not SECCOMP_RET_ERRNO: a call off the list is a
    ///   path the list missed or code that is not vfsvm's; an error return
    ///   would let the second keep probing and turn the first into a
    ///   confusing failure deep in the guest, while a kill says which call
    ///   on the spot. `--seccomp log` lets such calls run (the kernel logs
    ///   them) to find what a list lacks; `--seccomp none` installs no filter.
    /// `procSelfFD`: the sandbox's (the host's /proc is out of sight there).
    func confine(keeping keep: Set<Int32>, procSelfFD: FileDescriptor?, debug: Bool) throws {
        do { try Sandbox.dropCapabilities(keeping: keep, procSelfFD: procSelfFD) } catch {
            throw failure("\(error)", status: 71)
        }
        // capget is not on the list: asked before the filter.
        let kept = debug ? ((try? Sandbox.effectiveCapabilities()) ?? []).map { Capability.names.indices.contains(Int($0)) ? Capability.names[Int($0)] : "\($0)" } : []
        let calls = SeccompAllowList.vmm()
        do {
            switch seccomp {
            case .kill: try Seccomp.install(allowing: calls, ioctls: SeccompAllowList.vmmIoctlRequests, onViolation: .kill)
            case .log: try Seccomp.install(allowing: calls, ioctls: SeccompAllowList.vmmIoctlRequests, onViolation: .log)
            case .none: try Seccomp.setNoNewPrivileges()
            }
        } catch {
            throw failure("\(error); pass --seccomp none to run without a system call filter", status: 71)
        }
        guard debug else { return }
        let filter = switch seccomp {
        case .kill: "seccomp filter of \(calls.count) system calls and \(SeccompAllowList.vmmIoctlRequests.count) ioctl requests (others: SIGSYS)"
        case .log: "seccomp filter of \(calls.count) system calls and \(SeccompAllowList.vmmIoctlRequests.count) ioctl requests (others: run and logged by the kernel)"
        case .none: "no seccomp filter (--seccomp none)"
        }
        logLine("vfsvm: sandbox: \(filter), no_new_privs, capabilities kept: \(kept.isEmpty ? "none" : kept.joined(separator: " "))")
    }
}
