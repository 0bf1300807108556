import Glibc
import Synchronization
import VfsvmBoot
import VfsvmKVM
import VfsvmMemory
import VfsvmSys
import VfsvmTransport
import VfsvmVirtio

/// What to build: memory, vCPUs, the kernel, and the virtio devices.
public struct MachineConfig: Sendable {
    public enum Transport: String, Sendable { case pci, mmio }

    public var memorySize: UInt64
    public var cpus: Int
    public var kernel: [UInt8]
    public var initrd: [UInt8]?
    public var cmdline: String
    public var devices: [any VirtioDevice]
    public var transport: Transport
    /// Shared-memory windows (virtio-fs DAX) by index into `devices`;
    /// only the pci transport has them (BAR2).
    public var sharedMemory: [Int: SharedMemoryWindow] = [:]
    /// Count userspace exits per device (`-d`).
    public var countExits: Bool
    /// Each byte the guest writes to COM1.
    public var consoleOutput: @Sendable (UInt8) -> Void
    /// /dev/kvm opened beforehand (`vfsvm run` opens it before its
    /// sandbox hides the path); nil: `build` opens it.
    public var kvm: KVM?

    public init(memorySize: UInt64, cpus: Int = 1, kernel: [UInt8], initrd: [UInt8]? = nil, cmdline: String = "",
                devices: [any VirtioDevice] = [], transport: Transport = .mmio, countExits: Bool = false,
                consoleOutput: @escaping @Sendable (UInt8) -> Void) {
        self.memorySize = memorySize
        self.cpus = cpus
        self.kernel = kernel
        self.initrd = initrd
        self.cmdline = cmdline
        self.devices = devices
        self.transport = transport
        self.countExits = countExits
        self.consoleOutput = consoleOutput
    }
}

/// The x86 board under KVM, built in one straight line (`build`): guest
/// memory (memfd regions), the VM with its in-kernel irqchip and PIT,
/// memory slots, vCPUs with CPUID/MSRs/LAPIC, the legacy devices on the
/// port bus, the virtio devices on their transports, the kernel, and the
/// boot vCPU's entry registers. `run` starts one thread per vCPU and
/// returns why the machine stopped.
public final class Machine: Sendable {
    public let memory: GuestMemory
    public let vm: VirtualMachine
    public let vcpus: [VCPU]
    public let serial: Serial8250
    public let ports: PortBus
    public let mmio: MMIOBus
    public let counters: ExitCounters?
    /// The virtio-mmio transports, in window order.
    public let mmioTransports: [VirtioMMIOTransport]
    /// The virtio-pci transports, in slot order (slot 1 first).
    public let pciTransports: [VirtioPCITransport]
    let intxLines: [ResampledLine]
    let latch: StopLatch

    /// Addresses of the 4 KiB KVM wants for the real-mode TSS (three
    /// pages) and EPT identity map, inside the hole just below the BIOS
    /// ROM alias where nothing else lives.
    static let tssAddress: UInt64 = 0xfffb_d000
    static let identityMapAddress: UInt64 = 0xfffb_c000

    public static func build(_ config: MachineConfig) throws(MachineError) -> Machine {
        guard (1...255).contains(config.cpus) else { throw .badConfig("--cpus must be 1 to 255, got \(config.cpus)") }
        do {
            // Memory: RAM below the 32-bit hole, the rest from 4 GiB.
            let regions = try X86Layout.ramRanges(memorySize: config.memorySize).map { r throws(SystemError) in
                try GuestRegion.memfd(at: GuestAddress(r.lowerBound), size: Int(r.upperBound - r.lowerBound))
            }
            let memory = try GuestMemory(regions: regions)

            // The VM, its interrupt controllers and timer, memory slots.
            let kvm = try config.kvm ?? KVM()
            let vm = try kvm.createVM()
            try vm.setTSSAddress(tssAddress)
            try vm.setIdentityMapAddress(identityMapAddress)
            try vm.createIRQChip()
            try vm.setGSIRouting(Board.irqchipRoutes)
            try vm.createPIT2()
            try vm.map(memory)

            // vCPUs: CPUID with each one's APIC ID, boot MSRs, LINT pins.
            let cpuid = try kvm.supportedCPUID()
            var vcpus: [VCPU] = []
            for id in 0..<config.cpus {
                let vcpu = try vm.createVCPU(id: id)
                try vcpu.configureForBoot(cpuid: cpuid, count: config.cpus)
                vcpus.append(vcpu)
            }

            // Legacy devices.
            let latch = try StopLatch()
            let stop: @Sendable (MachineStop) -> Void = { latch.stop($0) }
            let ports = PortBus()
            let serial = Serial8250(line: try GSILine(vm: vm, gsi: X86Ports.com1GSI), output: config.consoleOutput)
            ports.insert(serial, base: UInt64(X86Ports.com1), size: Serial8250.portCount, name: "COM1")
            ports.insert(I8042(stop: stop), base: UInt64(X86Ports.i8042Data), size: UInt64(X86Ports.i8042Command - X86Ports.i8042Data + 1), name: "i8042")
            ports.insert(CMOSClock(), base: UInt64(X86Ports.rtcIndex), size: 2, name: "RTC")
            ports.insert(DebugExit(stop: stop), base: UInt64(X86Ports.debugExit), size: 1, name: "debug-exit")
            ports.insert(ACPIPowerManagement(stop: stop), base: UInt64(ACPIPM.pm1aEvent), size: ACPIPowerManagement.blockSize, name: "ACPI PM")
            let pci = PCIHostBridge()
            ports.insert(pci, base: UInt64(X86Ports.pciConfigAddress), size: PCIHostBridge.portCount, name: "PCI config")

            // virtio devices.
            let mmio = MMIOBus()
            var gsis = GSIAllocator()
            var transports: [VirtioMMIOTransport] = []
            var mmioDescriptions: [VfsvmBoot.MMIODevice] = []
            var pciBoard = VirtioPCIBoard()
            switch config.transport {
            case .mmio:
                // Shared-memory (DAX) windows: KVM slots in the 64-bit
                // window above RAM (which no PCI BAR uses on this
                // transport), each aligned to its size, announced by the
                // device's SHM registers.
                let mem64 = X86Layout.pciMem64(memorySize: config.memorySize)
                var next64 = mem64.lowerBound
                var windows: [Int: (base: UInt64, length: UInt64)] = [:]
                for i in config.sharedMemory.keys.sorted() {
                    guard let w = config.sharedMemory[i] else { continue }
                    let base = (next64 + w.size - 1) & ~(w.size - 1)
                    guard base + w.size - 1 <= mem64.upperBound else {
                        throw MachineError.badConfig("the DAX windows together need more than the 64 GiB above RAM")
                    }
                    try vm.mapWindow(w, slot: vm.allocateSlot(), at: base)
                    windows[i] = (base, w.size)
                    next64 = base + w.size
                }
                for (i, device) in config.devices.enumerated() {
                    let base = X86Layout.virtioMMIOWindow(i)
                    let gsi = try gsis.next()
                    let line = try GSILine(vm: vm, gsi: gsi)
                    let t = try VirtioMMIOTransport(device: device, memory: memory, line: line, sharedMemory: windows[i])
                    mmio.insert(MMIOTransportPort(t), base: base, size: X86Layout.virtioMMIOSize, name: "virtio-mmio \(i)")
                    // What the transport lists (QueueNotify, the queue index as
                    // data): one ioeventfd per queue.
                    for n in t.notifications {
                        try vm.registerIOEventFD(n.eventfd, address: base + n.offset, length: n.length, dataMatch: n.dataMatch)
                    }
                    transports.append(t)
                    mmioDescriptions.append(VfsvmBoot.MMIODevice(base: base, size: X86Layout.virtioMMIOSize, gsi: gsi))
                }
            case .pci:
                pciBoard = try VirtioPCIBoard(devices: config.devices, memory: memory, memorySize: config.memorySize, vm: vm,
                                              bridge: pci, mmio: mmio, gsis: &gsis, sharedMemory: config.sharedMemory)
            }

            // ACPI and MP tables describing this board, the kernel, and
            // the boot vCPU at its entry point. Other vCPUs wait for
            // INIT/SIPI from the guest (in-kernel LAPIC).
            let entry: BootEntry
            do {
                let acpi = ACPIConfig(cpus: config.cpus, mmioDevices: mmioDescriptions,
                                      pci: VfsvmBoot.PCIHostBridge(mem64: X86Layout.pciMem64(memorySize: config.memorySize),
                                                                   interrupts: pciBoard.interrupts))
                let rsdp = try writeACPI(acpi, into: memory)
                try writeMPTable(cpus: config.cpus, pciInterrupts: pciBoard.interrupts, into: memory)
                entry = try loadKernel(config.kernel, config: BootConfig(memorySize: config.memorySize, cmdline: Array(config.cmdline.utf8),
                                                                         initrd: config.initrd, rsdpAddress: rsdp), into: memory)
            } catch {
                throw MachineError.boot(error.description)
            }
            try EntryState.apply(entry, to: vcpus[0])

            return Machine(memory: memory, vm: vm, vcpus: vcpus, serial: serial, ports: ports, mmio: mmio,
                           counters: config.countExits ? ExitCounters() : nil, mmioTransports: transports,
                           pciTransports: pciBoard.transports, intxLines: pciBoard.lines, latch: latch)
        } catch let e as MachineError {
            throw e
        } catch let e as KVMError {
            throw .kvm(e)
        } catch let e as SystemError {
            throw .system(e)
        } catch let e as GuestMemoryError {
            throw .memory(e)
        } catch {
            throw .device("\(error)")
        }
    }

    private init(memory: GuestMemory, vm: VirtualMachine, vcpus: [VCPU], serial: Serial8250, ports: PortBus, mmio: MMIOBus,
                 counters: ExitCounters?, mmioTransports: [VirtioMMIOTransport], pciTransports: [VirtioPCITransport],
                 intxLines: [ResampledLine], latch: StopLatch) {
        self.memory = memory
        self.vm = vm
        self.vcpus = vcpus
        self.serial = serial
        self.ports = ports
        self.mmio = mmio
        self.counters = counters
        self.mmioTransports = mmioTransports
        self.pciTransports = pciTransports
        self.intxLines = intxLines
        self.latch = latch
        for v in vcpus { latch.watch(v) }
    }

    /// Runs every vCPU on a thread of its own until the machine stops;
    /// returns why. Devices are reset afterwards (their queue threads end).
    public func run() -> MachineStop {
        var threads: [OSThread] = []
        // INTx lines re-asserted after EOI while a device still wants them.
        var resampler: INTxResampler?
        if !intxLines.isEmpty {
            do {
                let r = try INTxResampler(intxLines)
                threads.append(try OSThread(name: "intx") { r.run() })
                resampler = r
            } catch {
                latch.stop(.failure("cannot start the INTx resampler: \(error)"))
            }
        }
        for vcpu in vcpus {
            let loop = VCPULoop(vcpu: vcpu, memory: memory, ports: ports, mmio: mmio, latch: latch, counters: counters)
            do {
                threads.append(try OSThread(name: "vcpu\(vcpu.id)") { loop.run() })
            } catch {
                latch.stop(.failure("cannot start vCPU \(vcpu.id): \(error)"))
                break
            }
        }
        let reason = latch.wait()
        resampler?.stop()
        for t in threads { t.join() }
        for t in mmioTransports { t.device.reset() }
        for t in pciTransports { t.device.reset() }
        return reason
    }

    /// Stops the machine from outside (the console's Ctrl-A x, a signal).
    public func stop(_ reason: MachineStop) { latch.stop(reason) }
}

/// Board-level policy that is not a memory-map or port constant (those
/// live in VfsvmBoot's `X86Layout`, `X86Ports` and `ACPIPM`, shared with
/// the ACPI tables).
public enum Board {}

/// The virtio-mmio register file on the MMIO bus.
final class MMIOTransportPort: MMIODevice {
    let transport: VirtioMMIOTransport
    init(_ transport: VirtioMMIOTransport) { self.transport = transport }

    func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        transport.read(offset: offset, into: data)
    }

    func write(offset: UInt64, bytes data: UnsafeRawBufferPointer) {
        transport.write(offset: offset, bytes: data)
    }

    /// Kicks (QueueNotify) apart from the other registers: with the
    /// ioeventfds in place the former should never exit.
    func exitGroup(offset: UInt64) -> String? {
        offset == VirtioMMIOTransport.notifyOffset ? "QueueNotify" : "registers"
    }
}
