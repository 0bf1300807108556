import ArgumentParser
import Glibc
import VfsvmConfig
import VfsvmFileServer
import VfsvmKVM
import VfsvmMachine
import VfsvmSys
import VfsvmVirtio
import VfsvmVirtioFS

extension Run {
    /// The KVM path: the plan's guest in vfsvm's own VMM, each share a
    /// virtio-fs device served in this process.
    func runKVM(_ plan: RunPlan) throws {
        // Everything the VMM needs by path is opened first: once the shares
        // are in their sandbox (RunSandbox.swift) no other host path exists.
        let kvm: KVM
        do { kvm = try KVM() } catch { throw failure(error.description, status: Self.exitStatus(error)) }
        var disks: [any VirtioDevice] = []
        for spec in plan.disks {
            do { disks.append(try makeDiskDevice(spec)) } catch { throw failure(error.description, status: 66) }
        }
        var shareFDs: [FileDescriptor] = []
        for spec in plan.shares {
            do { shareFDs.append(try ShareDirectory.open(spec.hostPath)) } catch { throw failure(error.description, status: 66) }
        }
        // Read while /proc/sys is in sight (the DAX windows' VMA budget).
        if plan.shares.contains(where: { $0.dax != nil }) { _ = DAXMappingBudget.process }
        let confined = try enterSandbox(plan.shares, fds: shareFDs, debug: plan.debug)
        if confined != nil { shareFDs = [] }  // ".." from a host-side fd would climb out

        var devices: [any VirtioDevice] = []
        // Each dax= share's window: host memory KVM maps at BAR2, its
        // mapping table served by the share's FUSE server.
        var windows: [Int: SharedMemoryWindow] = [:]
        // What the shares' FUSE servers need of root's capabilities (as
        // `vfsvm serve` keeps for each); the VMM itself needs none once built.
        var capabilities: Set<Int32> = []
        for (index, spec) in plan.shares.enumerated() {
            var settings = ServeSettings()
            settings.sharedDir = spec.hostPath
            settings.readOnly = spec.readOnly
            if let cache = spec.cache { settings.cache = cache }
            capabilities.formUnion(settings.capabilities)
            var mappings: DAXMappings?
            if let dax = spec.dax {
                let window: SharedMemoryWindow
                do { window = try SharedMemoryWindow(size: dax.bytes) } catch {
                    throw failure("--share \(spec.hostPath):\(spec.tag):dax=\(dax): cannot reserve the DAX window: \(error)", status: 1)
                }
                windows[devices.count] = window
                mappings = DAXMappings(window: window, readOnlyShare: spec.readOnly)
            }
            let server = try makeFileServer(settings: settings, engine: .sync, confined: confined?.shares[index],
                                            rootFD: confined == nil ? shareFDs[index] : nil, dax: mappings)
            let device = try VirtioFSDevice(tag: spec.tag.value, requestQueues: plan.requestQueues, server: server)
            devices.append(RingChoiceDevice(device, choice: plan.ring))
        }
        devices += disks

        // A closed stdout is EPIPE for the console (see ConsoleOutput), not
        // the end of vfsvm with the terminal left raw.
        signal(SIGPIPE, SIG_IGN)
        let stdout = ConsoleOutput()
        var config = MachineConfig(
            memorySize: plan.memoryBytes, cpus: plan.cpus, kernel: plan.image.kernel, initrd: plan.image.initrd,
            cmdline: plan.cmdline, devices: devices, transport: plan.transport ?? (windows.isEmpty ? .mmio : .pci),
            countExits: plan.debug, consoleOutput: { stdout.write(byte: $0) })
        config.sharedMemory = windows
        config.kvm = kvm
        let machine: Machine
        do {
            machine = try Machine.build(config)
        } catch {
            switch error {
            case .boot, .badConfig: throw failure(error.description, status: 64)
            case .kvm(let kvmError): throw failure(error.description, status: Self.exitStatus(kvmError))
            default: throw failure(error.description, status: 1)
            }
        }

        stdout.whenClosed { machine.stop(.quit("the console's reader went away (stdout: broken pipe)", status: 128 + SIGPIPE)) }

        let console = try Console()
        blockSignals([SIGINT, SIGTERM, SIGHUP])
        // Everything the guest can reach exists now, and no thread runs yet:
        // confine the process before the first KVM_RUN (RunSandbox.swift).
        try confine(keeping: capabilities, procSelfFD: confined?.procSelfFD, debug: plan.debug)
        try OSThread(name: "signals") {
            let sig = waitForSignal([SIGINT, SIGTERM, SIGHUP])
            machine.stop(.quit("terminated by signal \(sig)", status: 128 + sig))
        }.detach()
        if let timeout {
            try OSThread(name: "timeout") {
                sleep(UInt32(timeout))
                logLine("vfsvm: the guest was still running after --timeout \(timeout) s; it was stopped")
                machine.stop(.quit("--timeout \(timeout) s", status: 124))
            }.detach()
        }
        try console.enterRawMode()
        defer { console.restore() }
        try console.startInput(to: machine)
        let reason = machine.run()
        console.stop()
        console.restore()

        if plan.debug, let counters = machine.counters {
            let list = counters.snapshot.map { "\($0.0) \($0.1)" }.joined(separator: ", ")
            logLine("vfsvm: exits to userspace: \(list.isEmpty ? "none" : list)")
            logLine("vfsvm: \(reason)")
        }
        if case .failure(let line) = reason { logLine("vfsvm: \(line)") }
        if reason.exitStatus != 0 { throw ExitCode(reason.exitStatus) }
    }

    /// 69 (EX_UNAVAILABLE) when this host cannot run the VMM at all (no
    /// /dev/kvm, or a capability it lacks), so a caller can fall back to
    /// --accel tcg; 1 for any other KVM failure.
    static func exitStatus(_ error: KVMError) -> Int32 {
        switch error {
        case .unavailable, .missingCapability: return 69
        default: return 1
        }
    }
}
