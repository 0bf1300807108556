import CVfsvmLinux
import VfsvmMemory

/// Where a VMM delivers a virtio-pci function's MSI-X vectors: typically a
/// KVM GSI per vector, routed to the message the guest programmed
/// (KVM_SET_GSI_ROUTING, an MSI entry) with an irqfd on it, so raising a
/// vector is one eventfd write and never an exit.
///
/// The transport does the masking itself (per-vector mask, function mask,
/// pending bits): `trigger` is only called for a vector that is enabled
/// and unmasked, and `route` whenever a table entry's message changes.
public protocol MSIXVectorSink: Sendable {
    /// Vector `vector` now carries the message (`address`, `data`).
    func route(vector: Int, address: UInt64, data: UInt32)
    /// Sends vector `vector`'s message.
    func trigger(vector: Int) throws
}

/// One MSI-X table entry (PCI Local Bus 3.0, 6.8.2.6): message address,
/// data and vector control.
struct MSIXEntry: Equatable {
    var address: UInt64 = 0
    var data: UInt32 = 0
    /// PCI_MSIX_ENTRY_CTRL_MASKBIT; entries come out of reset masked.
    var control: UInt32 = UInt32(PCI_MSIX_ENTRY_CTRL_MASKBIT)

    var masked: Bool { control & UInt32(PCI_MSIX_ENTRY_CTRL_MASKBIT) != 0 }
}

/// The MSI-X table and pending bit array of one function, and the two
/// function-wide bits of the capability's Message Control (enable,
/// function mask). Accesses are aligned DWORDs or QWORDs (6.8.2); others
/// read as zero and are ignored.
struct MSIXTable {
    static let entrySize = Int(PCI_MSIX_ENTRY_SIZE)

    var entries: [MSIXEntry]
    var pending: [Bool]
    var enabled = false
    var functionMasked = false
    /// The command register's Bus Master Enable: an MSI-X message is a
    /// memory write, so with it clear vectors stay pending (the virtqueues
    /// themselves are not fenced off: like cloud-hypervisor's and
    /// Firecracker's devices, the device model keeps serving rings a driver
    /// set up, and Linux sets bus mastering before DRIVER_OK).
    var busMaster = false

    init(vectors: Int) {
        entries = Array(repeating: MSIXEntry(), count: vectors)
        pending = Array(repeating: false, count: vectors)
    }

    var count: Int { entries.count }
    /// Bytes the table occupies; the PBA holds one bit per vector in QWORDs.
    var tableBytes: Int { count * Self.entrySize }
    var pbaBytes: Int { (count + 63) / 64 * 8 }

    /// Whether `vector` would be delivered now (4.1.5.4 with 6.8.2.9).
    func deliverable(_ vector: Int) -> Bool {
        enabled && busMaster && !functionMasked && !entries[vector].masked
    }

    static func validWidth(_ offset: UInt64, _ width: Int) -> Bool {
        (width == 4 || width == 8) && offset % UInt64(width) == 0
    }

    func readTable(offset: UInt64, width: Int) -> UInt64 {
        guard Self.validWidth(offset, width), offset < UInt64(tableBytes) else { return 0 }
        let e = entries[Int(offset) / Self.entrySize]
        let fields = [UInt32(truncatingIfNeeded: e.address), UInt32(truncatingIfNeeded: e.address >> 32), e.data, e.control]
        let i = Int(offset) % Self.entrySize / 4
        return width == 8 ? UInt64(fields[i]) | UInt64(fields[i + 1]) << 32 : UInt64(fields[i])
    }

    /// Writes a table DWORD/QWORD; returns the vector whose message
    /// changed (to re-route) and the vector that was unmasked (to deliver
    /// its pending message), each nil when nothing of the kind happened.
    mutating func writeTable(offset: UInt64, width: Int, value: UInt64) -> (rerouted: Int?, unmasked: Int?) {
        guard Self.validWidth(offset, width), offset < UInt64(tableBytes) else { return (nil, nil) }
        let vector = Int(offset) / Self.entrySize
        let before = entries[vector]
        var words: [(Int, UInt32)] = [(Int(offset) % Self.entrySize / 4, UInt32(truncatingIfNeeded: value))]
        if width == 8 { words.append((words[0].0 + 1, UInt32(truncatingIfNeeded: value >> 32))) }
        for (field, word) in words {
            switch field * 4 {
            case Int(PCI_MSIX_ENTRY_LOWER_ADDR): entries[vector].address = entries[vector].address & ~0xffff_ffff | UInt64(word)
            case Int(PCI_MSIX_ENTRY_UPPER_ADDR): entries[vector].address = entries[vector].address & 0xffff_ffff | UInt64(word) << 32
            case Int(PCI_MSIX_ENTRY_DATA): entries[vector].data = word
            default: entries[vector].control = word & UInt32(PCI_MSIX_ENTRY_CTRL_MASKBIT)
            }
        }
        let after = entries[vector]
        let rerouted = after.address != before.address || after.data != before.data ? vector : nil
        let unmasked = before.masked && !after.masked ? vector : nil
        return (rerouted, unmasked)
    }

    /// The pending bits, read only (writes are ignored, 6.8.2.7).
    func readPBA(offset: UInt64, width: Int) -> UInt64 {
        guard Self.validWidth(offset, width), offset < UInt64(pbaBytes) else { return 0 }
        var v: UInt64 = 0
        for bit in 0..<(width * 8) {
            let vector = Int(offset) * 8 + bit
            if vector < count && pending[vector] { v |= 1 << UInt64(bit) }
        }
        return v
    }

    /// Vectors pending and now deliverable; their pending bits are cleared.
    mutating func takeDeliverable() -> [Int] {
        var out: [Int] = []
        for v in pending.indices where pending[v] && deliverable(v) {
            pending[v] = false
            out.append(v)
        }
        return out
    }
}
