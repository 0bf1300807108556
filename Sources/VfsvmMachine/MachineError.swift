import VfsvmKVM
import VfsvmMemory
import VfsvmSys

/// Why the board could not be built: each a sentence for the one line the
/// user sees (the VM never starts).
public enum MachineError: Error, CustomStringConvertible {
    case kvm(KVMError)
    case system(SystemError)
    case memory(GuestMemoryError)
    case boot(String)
    case badConfig(String)
    case device(String)
    case outOfInterrupts

    public var description: String {
        switch self {
        case let .kvm(e): "\(e)"
        case let .system(e): "\(e)"
        case let .memory(e): "guest memory: \(e)"
        case let .boot(why): why
        case let .badConfig(why): why
        case let .device(why): why
        case .outOfInterrupts: "too many devices: the IOAPIC has no free interrupt line left (at most 13 virtio devices, shares and disks together)"
        }
    }
}
