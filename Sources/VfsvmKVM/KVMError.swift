import CVfsvmLinux
import VfsvmSys

/// Why KVM refused something. Each case reads as one sentence naming the
/// ioctl or capability involved.
public enum KVMError: Error, Hashable, Sendable, CustomStringConvertible {
    /// /dev/kvm could not be opened.
    case unavailable(path: String, SystemError)
    /// KVM_GET_API_VERSION returned something other than 12.
    case apiVersion(Int32)
    /// KVM_CHECK_EXTENSION said no to a capability the VMM needs.
    case missingCapability(KVMCapability)
    /// An ioctl failed.
    case ioctl(SystemError)
    /// KVM accepted fewer entries than it was given (KVM_SET_MSRS returns
    /// how many it took).
    case partial(what: String, accepted: Int, given: Int)
    /// A value the VMM passed cannot be expressed to KVM.
    case invalidArgument(String)

    public var description: String {
        switch self {
        case let .unavailable(path, e):
            "cannot open \(path) (\(e.errno)): KVM is not available on this host (is the kvm module loaded and /dev/kvm accessible?)"
        case let .apiVersion(v): "KVM API version is \(v); vfsvm needs version 12"
        case let .missingCapability(c): "this host's KVM lacks \(c.name), which vfsvm needs"
        case let .ioctl(e): "KVM refused \(e.call): \(e.errno)"
        case let .partial(what, accepted, given): "KVM accepted \(accepted) of \(given) \(what)"
        case let .invalidArgument(why): "invalid KVM request: \(why)"
        }
    }
}

/// A KVM_CAP_* constant with its C name, for KVM_CHECK_EXTENSION and for
/// error messages.
public struct KVMCapability: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    public let name: String

    public init(_ rawValue: Int32, _ name: String) {
        self.rawValue = rawValue
        self.name = name
    }

    public var description: String { name }

    public static let irqchip = KVMCapability(KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP")
    public static let hlt = KVMCapability(KVM_CAP_HLT, "KVM_CAP_HLT")
    public static let userMemory = KVMCapability(KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY")
    public static let setTSSAddress = KVMCapability(KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR")
    public static let extCPUID = KVMCapability(KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID")
    public static let mpState = KVMCapability(KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE")
    public static let irqRouting = KVMCapability(KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING")
    public static let irqInjectStatus = KVMCapability(KVM_CAP_IRQ_INJECT_STATUS, "KVM_CAP_IRQ_INJECT_STATUS")
    public static let ioeventfd = KVMCapability(KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD")
    public static let setIdentityMapAddress = KVMCapability(KVM_CAP_SET_IDENTITY_MAP_ADDR, "KVM_CAP_SET_IDENTITY_MAP_ADDR")
    public static let irqfd = KVMCapability(KVM_CAP_IRQFD, "KVM_CAP_IRQFD")
    public static let pit2 = KVMCapability(KVM_CAP_PIT2, "KVM_CAP_PIT2")
    public static let pitState2 = KVMCapability(KVM_CAP_PIT_STATE2, "KVM_CAP_PIT_STATE2")
    public static let tscDeadlineTimer = KVMCapability(KVM_CAP_TSC_DEADLINE_TIMER, "KVM_CAP_TSC_DEADLINE_TIMER")
    public static let irqfdResample = KVMCapability(KVM_CAP_IRQFD_RESAMPLE, "KVM_CAP_IRQFD_RESAMPLE")
    public static let readonlyMemory = KVMCapability(KVM_CAP_READONLY_MEM, "KVM_CAP_READONLY_MEM")
    public static let signalMSI = KVMCapability(KVM_CAP_SIGNAL_MSI, "KVM_CAP_SIGNAL_MSI")
    public static let immediateExit = KVMCapability(KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT")
    public static let ioeventfdAnyLength = KVMCapability(KVM_CAP_IOEVENTFD_ANY_LENGTH, "KVM_CAP_IOEVENTFD_ANY_LENGTH")

    /// What `VirtualMachine` and `VCPU` use on every board: checked once
    /// when `KVM` opens, so a missing one is reported before anything starts.
    public static let required: [KVMCapability] = [
        .irqchip, .hlt, .userMemory, .setTSSAddress, .setIdentityMapAddress, .extCPUID, .irqRouting,
        .ioeventfd, .irqfd, .pit2, .signalMSI, .immediateExit, .mpState,
    ]
}
