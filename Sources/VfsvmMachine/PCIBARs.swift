import Synchronization
import VfsvmKVM
import VfsvmSys

/// One memory BAR a PCI function asks the board to place.
public struct PCIBARRequest: Sendable {
    public var index: Int
    /// A power of two, at least 4 KiB here (a page: KVM's MMIO exits and
    /// the guest's mappings are page grained).
    public var size: UInt64
    public var is64: Bool
    public var prefetchable: Bool
    /// Host memory behind the BAR (a shared-memory window): the board
    /// maps it as a KVM memory slot where the BAR decodes, so guest
    /// accesses never exit; nil for a register BAR (MMIO exits).
    public var memory: SharedMemoryWindow?

    public init(index: Int, size: UInt64, is64: Bool, prefetchable: Bool, memory: SharedMemoryWindow? = nil) {
        self.index = index
        self.size = size
        self.is64 = is64
        self.prefetchable = prefetchable
        self.memory = memory
    }
}

/// A write inside a BAR that KVM should take as an ioeventfd (a queue's
/// notify address), so it never exits.
public struct BARNotification: Sendable {
    public var bar: Int
    public var offset: UInt64
    /// 0 = any length (KVM_CAP_IOEVENTFD_ANY_LENGTH), else 1, 2, 4 or 8.
    public var length: Int
    public var dataMatch: UInt64?
    public var eventfd: EventFD

    public init(bar: Int, offset: UInt64, length: Int, dataMatch: UInt64?, eventfd: EventFD) {
        self.bar = bar
        self.offset = offset
        self.length = length
        self.dataMatch = dataMatch
        self.eventfd = eventfd
    }
}

/// What the board needs of a PCI function with memory BARs (virtio-pci is
/// one): its BARs to place, their MMIO, and where they are now. The
/// function owns its configuration space (BAR registers with the sizing
/// protocol, the command register's memory-space enable); the board
/// assigns each BAR once before the guest starts and follows the guest
/// when it moves one.
public protocol PCIEndpoint: PCIFunction {
    var barRequests: [PCIBARRequest] { get }
    /// Writes the board's address into BAR `index` before the guest starts.
    func assignBAR(_ index: Int, address: UInt64)
    /// Where BAR `index` decodes now: nil while memory decoding is off or
    /// the BAR holds no usable address (during sizing).
    func decodedBAR(_ index: Int) -> UInt64?
    func readBAR(_ index: Int, offset: UInt64, into data: UnsafeMutableRawBufferPointer)
    func writeBAR(_ index: Int, offset: UInt64, bytes data: UnsafeRawBufferPointer)
    var barNotifications: [BARNotification] { get }
    /// What `-d` calls exits at `offset` of BAR `index` (a register
    /// group); nil for the board's default (notify or registers).
    func barExitGroup(_ index: Int, offset: UInt64) -> String?
}

extension PCIEndpoint {
    public func barExitGroup(_ index: Int, offset: UInt64) -> String? { nil }
}

/// Places BARs in the board's windows: 64-bit BARs in the 64-bit window
/// above RAM, 32-bit ones in the 32-bit window below the virtio-mmio
/// windows; each aligned to its size, as the PCI spec requires.
struct PCIBARAllocator {
    private var next32: UInt64
    private let end32: UInt64
    private var next64: UInt64
    private let end64: UInt64

    init(mem32: ClosedRange<UInt64>, mem64: ClosedRange<UInt64>) {
        next32 = mem32.lowerBound
        end32 = mem32.upperBound
        next64 = mem64.lowerBound
        end64 = mem64.upperBound
    }

    mutating func place(_ r: PCIBARRequest) throws(MachineError) -> UInt64 {
        guard r.size >= 0x1000, r.size.nonzeroBitCount == 1 else {
            throw .device("PCI BAR \(r.index) of \(r.size) bytes: a BAR must be a power of two of at least 4 KiB")
        }
        func take(_ next: inout UInt64, _ end: UInt64) -> UInt64? {
            let base = (next + r.size - 1) & ~(r.size - 1)
            guard base >= next, base <= end, end - base >= r.size - 1 else { return nil }
            next = base + r.size
            return base
        }
        let placed = r.is64 ? take(&next64, end64) : take(&next32, end32)
        guard let placed else { throw .device("PCI BAR \(r.index) of \(r.size) bytes does not fit the board's \(r.is64 ? "64" : "32")-bit window") }
        return placed
    }
}

/// The MMIO bus side of one endpoint's BARs: each decoded BAR mapped at
/// its address with its notify ioeventfds registered there. After every
/// configuration write to the function `refresh()` compares the decoded
/// addresses with the mapped ones and moves what moved (Linux sizes BARs
/// with decoding off, and may reassign them).
final class PCIBARMapper: Sendable {
    let endpoint: any PCIEndpoint
    let name: String
    private let vm: VirtualMachine
    private let mmio: MMIOBus
    private let mapped = Mutex<[Int: UInt64]>([:])
    private let complaints = Atomic(0)
    /// The KVM slot of each memory BAR, by BAR index.
    private let slots: [Int: UInt32]

    init(endpoint: any PCIEndpoint, name: String, vm: VirtualMachine, mmio: MMIOBus) {
        self.endpoint = endpoint
        self.name = name
        self.vm = vm
        self.mmio = mmio
        var slots: [Int: UInt32] = [:]
        for r in endpoint.barRequests where r.memory != nil { slots[r.index] = vm.allocateSlot() }
        self.slots = slots
    }

    /// The first mapping, before the guest runs: every BAR must land
    /// (the board placed them apart), or the machine is not built.
    func mapAtStart() throws(MachineError) {
        refresh()
        let all = mapped.withLock { $0 }
        for r in endpoint.barRequests where endpoint.decodedBAR(r.index) != nil && all[r.index] == nil {
            throw .device("\(name): BAR \(r.index) could not be mapped at start")
        }
    }

    /// Follows every BAR of the function to where it decodes now. A BAR is
    /// recorded as mapped only once its window is on the bus and all its
    /// notify ioeventfds are registered; unmapping takes the ioeventfds
    /// down before the window, so an address is never free on the bus while
    /// a notify registration of the old owner remains there. A BAR the
    /// guest put over another device's range (or that KVM refuses) stays
    /// unmapped until the guest moves it again; that is said once.
    func refresh() {
        mapped.withLock { current in
            for r in endpoint.barRequests {
                let now = endpoint.decodedBAR(r.index)
                let before = current[r.index]
                guard now != before else { continue }
                let notes = endpoint.barNotifications.filter { $0.bar == r.index }
                let window = "\(name) BAR\(r.index)"
                if let before {
                    for n in notes {
                        do {
                            try vm.unregisterIOEventFD(n.eventfd, address: before + n.offset, length: n.length, dataMatch: n.dataMatch)
                        } catch {
                            say("cannot unregister a notify ioeventfd at 0x\(String(before + n.offset, radix: 16)): \(error)")
                        }
                    }
                    // A memory BAR: the slot goes first, then the bus range
                    // that kept other BARs off it. If KVM cannot delete
                    // the slot the range stays taken, so nothing else is
                    // put under memory the guest still reaches.
                    if let slot = slots[r.index] {
                        do { try vm.unmapSlot(slot) } catch {
                            say("cannot take the shared-memory window off 0x\(String(before, radix: 16)): \(error)")
                            continue
                        }
                    }
                    mmio.remove(base: before, name: window)
                    current[r.index] = nil
                }
                guard let now else { continue }
                guard mmio.tryInsert(BARWindow(endpoint: endpoint, index: r.index), base: now, size: r.size, name: window) else {
                    say("BAR \(r.index) moved to 0x\(String(now, radix: 16)), over another device (or past the end of the address space); left unmapped")
                    continue
                }
                if let memory = r.memory, let slot = slots[r.index] {
                    // KVM refuses a slot over RAM or another slot (EEXIST):
                    // the BAR then stays unmapped until the guest moves it.
                    do { try vm.mapWindow(memory, slot: slot, at: now) } catch {
                        say("BAR \(r.index) at 0x\(String(now, radix: 16)): KVM refused the shared-memory window (\(error)); left unmapped")
                        mmio.remove(base: now, name: window)
                        continue
                    }
                }
                var registered: [BARNotification] = []
                do {
                    for n in notes {
                        try vm.registerIOEventFD(n.eventfd, address: now + n.offset, length: n.length, dataMatch: n.dataMatch)
                        registered.append(n)
                    }
                    current[r.index] = now
                } catch {
                    say("BAR \(r.index) at 0x\(String(now, radix: 16)): KVM refused a notify ioeventfd (\(error)); left unmapped")
                    for n in registered {
                        try? vm.unregisterIOEventFD(n.eventfd, address: now + n.offset, length: n.length, dataMatch: n.dataMatch)
                    }
                    mmio.remove(base: now, name: window)
                }
            }
        }
    }

    /// A guest that keeps moving a BAR onto another device would otherwise
    /// log on every configuration write: the first few lines only.
    private func say(_ line: String) {
        if complaints.add(1, ordering: .relaxed).oldValue < 4 { logLine("vfsvm: \(name): \(line)") }
    }
}

/// One BAR on the MMIO bus.
final class BARWindow: MMIODevice {
    let endpoint: any PCIEndpoint
    let index: Int

    init(endpoint: any PCIEndpoint, index: Int) {
        self.endpoint = endpoint
        self.index = index
    }

    func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) { endpoint.readBAR(index, offset: offset, into: data) }
    func write(offset: UInt64, bytes data: UnsafeRawBufferPointer) { endpoint.writeBAR(index, offset: offset, bytes: data) }
    func exitGroup(offset: UInt64) -> String? {
        if let group = endpoint.barExitGroup(index, offset: offset) { return group }
        return endpoint.barNotifications.contains { $0.bar == index && offset >= $0.offset && offset < $0.offset + UInt64(max($0.length, 1)) }
            ? "notify" : "registers"
    }
}

extension PCIHostBridge {
    /// Attaches `endpoint` at `slot`: places each BAR (`allocator`), writes
    /// the addresses into its BAR registers, maps them on `mmio` with their
    /// notify ioeventfds, and follows later moves after every
    /// configuration write. Returns the placed addresses by BAR index.
    @discardableResult
    func attach(_ endpoint: any PCIEndpoint, slot: UInt8, name: String, allocator: inout PCIBARAllocator,
                vm: VirtualMachine, mmio: MMIOBus) throws(MachineError) -> [Int: UInt64] {
        var placed: [Int: UInt64] = [:]
        for r in endpoint.barRequests {
            let base = try allocator.place(r)
            endpoint.assignBAR(r.index, address: base)
            placed[r.index] = base
        }
        let mapper = PCIBARMapper(endpoint: endpoint, name: name, vm: vm, mmio: mmio)
        try mapper.mapAtStart()
        attach(endpoint, slot: slot) { mapper.refresh() }
        return placed
    }
}
