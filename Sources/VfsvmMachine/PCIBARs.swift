import Synchronization
import VfsvmKVM
import VfsvmSys

/// One memory BAR a PCI function asks the board to place.
public struct PCIBARRequest: Hashable, Sendable {
    public var index: Int
    /// A power of two, at least 4 KiB here (a page: KVM's MMIO exits and
    /// the guest's mappings are page grained).
    public var size: UInt64
    public var is64: Bool
    public var prefetchable: Bool

    public init(index: Int, size: UInt64, is64: Bool, prefetchable: Bool) {
        self.index = index
        self.size = size
        self.is64 = is64
        self.prefetchable = prefetchable
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

    init(endpoint: any PCIEndpoint, name: String, vm: VirtualMachine, mmio: MMIOBus) {
        self.endpoint = endpoint
        self.name = name
        self.vm = vm
        self.mmio = mmio
    }

    func refresh() throws(KVMError) {
        try mapped.withLock { current throws(KVMError) in
            for r in endpoint.barRequests {
                let now = endpoint.decodedBAR(r.index)
                let before = current[r.index]
                guard now != before else { continue }
                let notes = endpoint.barNotifications.filter { $0.bar == r.index }
                if let before {
                    mmio.remove(base: before)
                    for n in notes {
                        try vm.unregisterIOEventFD(n.eventfd, address: before + n.offset, length: n.length, dataMatch: n.dataMatch)
                    }
                }
                current[r.index] = now
                guard let now else { continue }
                // A BAR moved onto another device's range is the guest's
                // mistake; leave it unmapped rather than shadow the other.
                guard mmio.find(now) == nil, mmio.find(now + r.size - 1) == nil else {
                    logLine("vfsvm: \(name): BAR \(r.index) moved to 0x\(String(now, radix: 16)), over another device; left unmapped")
                    current[r.index] = nil
                    continue
                }
                mmio.insert(BARWindow(endpoint: endpoint, index: r.index), base: now, size: r.size, name: "\(name) BAR\(r.index)")
                for n in notes {
                    try vm.registerIOEventFD(n.eventfd, address: now + n.offset, length: n.length, dataMatch: n.dataMatch)
                }
            }
        }
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
        do { try mapper.refresh() } catch { throw .kvm(error) }
        attach(endpoint, slot: slot) {
            do { try mapper.refresh() } catch { logLine("vfsvm: \(name): cannot follow a BAR move: \(error)") }
        }
        return placed
    }
}
