import Synchronization
import VfsvmKVM
import VfsvmSys

/// Message-signalled interrupts (MSI-X vectors) as KVM GSIs: each vector
/// gets a GSI from 24 up with an irqfd on it, so raising it is one eventfd
/// write and never an exit. The routing table KVM holds is the board's
/// irqchip routes plus one MSI route per programmed vector; it is replaced
/// whole (KVM_SET_GSI_ROUTING) whenever the guest changes a vector's
/// address or data. A vector the guest has not programmed has no route, so
/// a write to its irqfd delivers nothing.
public final class MSIRoutes: Sendable {
    public static let firstGSI: UInt32 = 24

    public struct Vector: Sendable {
        public let gsi: UInt32
        public let irqfd: EventFD
    }

    private let vm: VirtualMachine
    private let state = Mutex((next: MSIRoutes.firstGSI, messages: [UInt32: (address: UInt64, data: UInt32)]()))
    /// KVM_CAP_IRQ_ROUTING: how many GSIs the routing table may hold.
    private let limit: UInt32

    public init(vm: VirtualMachine) {
        self.vm = vm
        limit = UInt32(max(0, vm.kvm.checkExtension(.irqRouting)))
    }

    /// A new vector: its GSI and irqfd (registered, no route yet).
    public func allocate() throws(MachineError) -> Vector {
        let gsi = state.withLock { s -> UInt32? in
            guard s.next < limit else { return nil }
            defer { s.next += 1 }
            return s.next
        }
        guard let gsi else { throw .outOfInterrupts }
        do {
            let irqfd = try EventFD(nonBlocking: true)
            try vm.registerIRQFD(irqfd, gsi: gsi)
            return Vector(gsi: gsi, irqfd: irqfd)
        } catch let e as SystemError {
            throw .system(e)
        } catch {
            throw .kvm(error as? KVMError ?? .invalidArgument("\(error)"))
        }
    }

    /// Routes `gsi` to the message (`address`, `data`) the guest wrote into
    /// an MSI-X table entry; nil removes the route (entry cleared).
    public func program(gsi: UInt32, message: (address: UInt64, data: UInt32)?) throws(KVMError) {
        // Under the lock: two vCPUs programming vectors at once must not
        // leave KVM with the older of two tables.
        try state.withLock { s throws(KVMError) in
            s.messages[gsi] = message
            let routes = s.messages.sorted { $0.key < $1.key }.map { GSIRoute.msi(gsi: $0.key, address: $0.value.address, data: $0.value.data) }
            try vm.setGSIRouting(Board.irqchipRoutes + routes)
        }
    }

    /// How many vectors have a route.
    public var routed: Int { state.withLock { $0.messages.count } }
}
