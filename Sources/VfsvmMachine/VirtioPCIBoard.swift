import Synchronization
import VfsvmBoot
import VfsvmKVM
import VfsvmMemory
import VfsvmSys
import VfsvmTransport
import VfsvmVirtio

/// A virtio-pci function's MSI-X vectors as KVM GSIs (`MSIRoutes`): one
/// GSI and irqfd per vector, its MSI route replaced whenever the guest
/// writes the entry's message. The transport masks and keeps pending bits
/// itself, so `trigger` is one eventfd write that KVM turns into the
/// message without an exit.
final class KVMMSIXVectors: MSIXVectorSink {
    private let routes: MSIRoutes
    private let vectors: [MSIRoutes.Vector]
    private let name: String

    init(routes: MSIRoutes, count: Int, name: String) throws(MachineError) {
        self.routes = routes
        self.name = name
        var vectors: [MSIRoutes.Vector] = []
        for _ in 0..<count { vectors.append(try routes.allocate()) }
        self.vectors = vectors
    }

    /// Route failures so far; the first few are logged.
    private let routeFailures = Atomic(0)

    func route(vector: Int, address: UInt64, data: UInt32) {
        guard vectors.indices.contains(vector) else { return }
        do { try routes.program(gsi: vectors[vector].gsi, message: (address, data)) } catch {
            if routeFailures.add(1, ordering: .relaxed).oldValue < 4 { logLine("vfsvm: \(name): cannot route MSI-X vector \(vector): \(error)") }
        }
    }

    func trigger(vector: Int) throws {
        guard vectors.indices.contains(vector) else { return }
        try vectors[vector].irqfd.signal()
    }
}

/// INTx as a level-triggered line into the IOAPIC: an irqfd with a
/// resample fd (KVM_IRQFD_FLAG_RESAMPLE). `trigger` asserts the line; KVM
/// deasserts it when the guest EOIs the interrupt and signals `resample`,
/// after which the board asserts it again if the device still has an ISR
/// bit the driver has not read (`INTxResampler`).
final class LevelLine: InterruptLine {
    let gsi: UInt32
    let resample: EventFD
    private let irqfd: EventFD

    init(vm: VirtualMachine, gsi: UInt32) throws {
        self.gsi = gsi
        irqfd = try EventFD(nonBlocking: true)
        resample = try EventFD(nonBlocking: true)
        try vm.registerIRQFD(irqfd, gsi: gsi, resample: resample)
    }

    func trigger() throws { try irqfd.signal() }
}

/// One level line the resampler watches: KVM's resample eventfd, the line
/// to assert again, and whether the device still wants it asserted.
struct ResampledLine: Sendable {
    var resample: EventFD
    var line: any InterruptLine
    var name: String
    var asserted: @Sendable () -> Bool
}

/// Waits on every INTx line's resample fd and re-asserts a line whose
/// device still wants it; runs while the machine runs.
final class INTxResampler: Sendable {
    private let lines: [ResampledLine]
    private let stopFD: EventFD

    init(_ lines: [ResampledLine]) throws(SystemError) {
        self.lines = lines
        stopFD = try EventFD(nonBlocking: true)
    }

    func run() {
        let fds = [stopFD.fd.rawValue] + lines.map { $0.resample.fd.rawValue }
        while true {
            let ready: [Bool]
            do { ready = try pollReadable(fds) } catch {
                if error.errno == .EINTR { continue }
                return logLine("vfsvm: INTx resample: \(error)")
            }
            if ready[0] { return }
            for (i, l) in lines.enumerated() where ready[i + 1] {
                do {
                    try l.resample.drain()
                    if l.asserted() { try l.line.trigger() }
                } catch {
                    logLine("vfsvm: INTx resample on \(l.name): \(error)")
                }
            }
        }
    }

    func stop() {
        do { try stopFD.signal() } catch { logLine("vfsvm: INTx resample: \(error)") }
    }
}

/// The board's view of a virtio-pci function: BAR0, the register BAR,
/// 64-bit and prefetchable, with the queues' notify addresses; and BAR2,
/// the shared-memory window when the device has one (a KVM memory slot).
extension VirtioPCITransport: PCIEndpoint {
    public var barRequests: [PCIBARRequest] {
        var r = [PCIBARRequest(index: VirtioPCILayout.bar, size: VirtioPCILayout.barSize, is64: true, prefetchable: true)]
        if let sharedMemory {
            r.append(PCIBARRequest(index: VirtioPCILayout.shmBAR, size: sharedMemory.size, is64: true, prefetchable: true, memory: sharedMemory))
        }
        return r
    }

    public func assignBAR(_ index: Int, address: UInt64) {
        switch index {
        case VirtioPCILayout.bar: assignBAR0(address)
        case VirtioPCILayout.shmBAR: assignBAR2(address)
        default: break
        }
    }

    public func decodedBAR(_ index: Int) -> UInt64? {
        switch index {
        case VirtioPCILayout.bar: decodedBAR0
        case VirtioPCILayout.shmBAR: decodedBAR2
        default: nil
        }
    }

    public func readBAR(_ index: Int, offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        guard index == VirtioPCILayout.bar else { return RegisterBytes.zero(data) }
        readBAR(offset: offset, into: data)
    }

    public func writeBAR(_ index: Int, offset: UInt64, bytes data: UnsafeRawBufferPointer) {
        guard index == VirtioPCILayout.bar else { return }
        writeBAR(offset: offset, bytes: data)
    }

    /// BAR0's regions by name, so `-d` shows which part of the function
    /// the guest exits on (the ISR is INTx's data path, notify should
    /// never appear: ioeventfds take it).
    public func barExitGroup(_ index: Int, offset: UInt64) -> String? {
        typealias L = VirtioPCILayout
        // The window is a memory slot: an exit there means it is not
        // mapped (the guest put it where KVM refused it).
        guard index == L.bar else { return "shared memory" }
        switch offset & ~0xfff {
        case L.commonOffset: return "common"
        case L.isrOffset: return "ISR"
        case L.deviceOffset: return "device"
        case L.notifyOffset: return "notify"
        case L.msixTableOffset, L.msixPBAOffset: return "MSI-X"
        default: return "unused"
        }
    }

    public var barNotifications: [BARNotification] {
        notifications.map {
            BARNotification(bar: $0.bar ?? VirtioPCILayout.bar, offset: $0.offset, length: $0.length, dataMatch: $0.dataMatch, eventfd: $0.eventfd)
        }
    }
}

/// The virtio devices of a `--transport pci` machine: one function per
/// device at slots 1, 2, ... of bus 0, BAR0 placed in the 64-bit window
/// above RAM, INTA# of each slot on a GSI of its own (what the DSDT's
/// _PRT and the interrupt line register say), MSI-X vectors as GSI routes.
struct VirtioPCIBoard {
    var transports: [VirtioPCITransport] = []
    var lines: [ResampledLine] = []
    var interrupts: [VfsvmBoot.PCIInterrupt] = []

    /// No devices (a virtio-mmio machine).
    init() {}

    /// `sharedMemory[i]`: device i's shared-memory window, if it has one.
    init(devices: [any VirtioDevice], memory: GuestMemory, memorySize: UInt64, vm: VirtualMachine, bridge: PCIHostBridge,
         mmio: MMIOBus, gsis: inout GSIAllocator, sharedMemory: [Int: SharedMemoryWindow] = [:]) throws {
        guard devices.count <= 31 else { throw MachineError.badConfig("at most 31 virtio-pci devices fit bus 0, got \(devices.count)") }
        let routes = MSIRoutes(vm: vm)
        var allocator = PCIBARAllocator(mem32: X86Layout.pciMem32, mem64: X86Layout.pciMem64(memorySize: memorySize))
        for (i, device) in devices.enumerated() {
            let slot = UInt8(i + 1)
            let name = "virtio-pci \(i)"
            let gsi = try gsis.next()
            let line = try LevelLine(vm: vm, gsi: gsi)
            let vectors = try KVMMSIXVectors(routes: routes, count: device.queueMaxSizes.count + 1, name: name)
            let t = try VirtioPCITransport(device: device, memory: memory, intx: line, msix: vectors, sharedMemory: sharedMemory[i])
            t.setInterruptLine(UInt8(gsi))
            try bridge.attach(t, slot: slot, name: name, allocator: &allocator, vm: vm, mmio: mmio)
            transports.append(t)
            lines.append(ResampledLine(resample: line.resample, line: line, name: "\(name) INTx (GSI \(gsi))") { t.intxAsserted })
            interrupts.append(VfsvmBoot.PCIInterrupt(slot: slot, gsi: gsi))
        }
    }
}
