import Synchronization
import VfsvmKVM
import VfsvmSys

/// The first reason the machine stops, kept; every later one ignored.
/// Stopping kicks every vCPU and wakes `wait()`.
final class StopLatch: Sendable {
    private let reason = Mutex<MachineStop?>(nil)
    private let wake: EventFD
    private let vcpus = Mutex<[VCPU]>([])

    init() throws(SystemError) { wake = try EventFD() }

    func watch(_ vcpu: VCPU) { vcpus.withLock { $0.append(vcpu) } }

    func stop(_ why: MachineStop) {
        let first = reason.withLock { r -> Bool in
            guard r == nil else { return false }
            r = why
            return true
        }
        guard first else { return }
        for v in vcpus.withLock({ $0 }) { v.kick() }
        try? wake.signal()
    }

    var stopped: MachineStop? { reason.withLock { $0 } }

    /// Blocks until `stop` was called; returns its reason.
    func wait() -> MachineStop {
        while true {
            if let r = stopped { return r }
            _ = try? wake.drain()
        }
    }

    /// The eventfd that becomes readable on stop (for a poll loop).
    var fd: Int32 { wake.fd.rawValue }
}
