/// Why KVM_RUN returned: `kvm_run.exit_reason` and its payload, decoded.
/// Data of an I/O or MMIO access stays in `kvm_run` (read and written with
/// `VCPU.ioValue`/`mmioValue` or lent with `withIOData`/`withMMIOData`).
public enum VCPUExit: Hashable, Sendable {
    /// KVM_EXIT_IO: `in`/`out` (also `ins`/`outs`: `count` > 1).
    case io(IOExit)
    /// KVM_EXIT_MMIO: a load or store to guest-physical memory no slot backs.
    case mmio(MMIOExit)
    /// KVM_EXIT_HLT: the guest halted with interrupts it cannot receive
    /// (only without the in-kernel irqchip, or `cli; hlt`).
    case hlt
    /// KVM_EXIT_SHUTDOWN: a triple fault (or INIT on some hosts).
    case shutdown
    /// KVM_EXIT_SYSTEM_EVENT: KVM_SYSTEM_EVENT_SHUTDOWN / RESET / CRASH ...
    case systemEvent(SystemEvent)
    /// KVM_EXIT_INTERNAL_ERROR: KVM could not emulate something
    /// (suberror 1: KVM_INTERNAL_ERROR_EMULATION).
    case internalError(suberror: UInt32, data: [UInt64])
    /// KVM_EXIT_FAIL_ENTRY: the hardware refused VM entry (bad guest state).
    case failEntry(hardwareReason: UInt64, cpu: UInt32)
    /// KVM_EXIT_INTR, or KVM_RUN returned EINTR: a signal (the VMM's kick)
    /// or `immediate_exit` stopped the vCPU.
    case interrupted
    /// KVM_EXIT_EXCEPTION (only with some debug settings).
    case exception(vector: UInt32, errorCode: UInt32)
    /// KVM_EXIT_DEBUG, KVM_EXIT_IRQ_WINDOW_OPEN, KVM_EXIT_UNKNOWN and every
    /// other reason vfsvm does not request: the raw reason (and the
    /// hardware reason for KVM_EXIT_UNKNOWN).
    case unknown(reason: UInt32, hardwareReason: UInt64)

    /// The C name of the exit reason, for the one line an unhandled exit gets.
    public var name: String {
        switch self {
        case .io: "KVM_EXIT_IO"
        case .mmio: "KVM_EXIT_MMIO"
        case .hlt: "KVM_EXIT_HLT"
        case .shutdown: "KVM_EXIT_SHUTDOWN"
        case .systemEvent: "KVM_EXIT_SYSTEM_EVENT"
        case .internalError: "KVM_EXIT_INTERNAL_ERROR"
        case .failEntry: "KVM_EXIT_FAIL_ENTRY"
        case .interrupted: "KVM_EXIT_INTR"
        case .exception: "KVM_EXIT_EXCEPTION"
        case let .unknown(reason, _): Self.reasonNames[reason].map { "KVM_EXIT_\($0)" } ?? "exit reason \(reason)"
        }
    }

    static let reasonNames: [UInt32: String] = [
        0: "UNKNOWN", 3: "HYPERCALL", 4: "DEBUG", 7: "IRQ_WINDOW_OPEN", 11: "SET_TPR", 12: "TPR_ACCESS",
        16: "NMI", 21: "WATCHDOG", 26: "IOAPIC_EOI", 27: "HYPERV", 29: "X86_RDMSR", 30: "X86_WRMSR",
        31: "DIRTY_RING_FULL", 32: "AP_RESET_HOLD", 33: "X86_BUS_LOCK", 34: "XEN", 37: "NOTIFY",
    ]
}

/// The port access of a KVM_EXIT_IO.
public struct IOExit: Hashable, Sendable {
    public enum Direction: Hashable, Sendable { case `in`, out }
    public let direction: Direction
    public let port: UInt16
    /// Bytes per access: 1, 2 or 4.
    public let size: Int
    /// Accesses in a row (`rep ins`/`rep outs`); 1 for plain `in`/`out`.
    public let count: Int

    public init(direction: Direction, port: UInt16, size: Int, count: Int) {
        self.direction = direction
        self.port = port
        self.size = size
        self.count = count
    }
}

/// The memory access of a KVM_EXIT_MMIO.
public struct MMIOExit: Hashable, Sendable {
    public let address: UInt64
    /// 1 to 8 bytes.
    public let length: Int
    public let isWrite: Bool

    public init(address: UInt64, length: Int, isWrite: Bool) {
        self.address = address
        self.length = length
        self.isWrite = isWrite
    }
}

/// KVM_EXIT_SYSTEM_EVENT's type (KVM_SYSTEM_EVENT_*).
public enum SystemEvent: Hashable, Sendable {
    case shutdown  // KVM_SYSTEM_EVENT_SHUTDOWN
    case reset  // KVM_SYSTEM_EVENT_RESET
    case crash  // KVM_SYSTEM_EVENT_CRASH
    case other(UInt32)

    init(_ type: UInt32) {
        switch type {
        case 1: self = .shutdown
        case 2: self = .reset
        case 3: self = .crash
        default: self = .other(type)
        }
    }
}
