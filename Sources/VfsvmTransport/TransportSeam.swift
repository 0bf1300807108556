import VfsvmSys

/// One queue notification a VMM registers with KVM as an ioeventfd
/// (KVM_IOEVENTFD), so the driver's kick never leaves the kernel: a write
/// of `length` bytes (0: any length) at `offset`, matching `dataMatch` when
/// it is set, signals `eventfd`, which the queue's runner waits on.
///
/// A write that does reach the transport (another width, no ioeventfd
/// registered) signals the same eventfd, so the two paths agree.
public struct QueueNotification: Sendable {
    public var queue: Int
    public var eventfd: EventFD
    /// The BAR `offset` is relative to (virtio-pci), or nil for an offset
    /// inside the transport's own window (virtio-mmio).
    public var bar: Int?
    public var offset: UInt64
    public var length: Int
    public var dataMatch: UInt64?

    public init(queue: Int, eventfd: EventFD, bar: Int?, offset: UInt64, length: Int, dataMatch: UInt64?) {
        self.queue = queue
        self.eventfd = eventfd
        self.bar = bar
        self.offset = offset
        self.length = length
        self.dataMatch = dataMatch
    }
}

/// The seam between a transport and the VMM (see vmm-interfaces.md,
/// "Transport seam"): the VMM loops over `notifications` and registers each
/// as an ioeventfd at the window's (or BAR's) guest-physical base plus
/// `offset`; it never reaches into the transport. Interrupts go through the
/// `InterruptLine` (and for virtio-pci the `MSIXVectorSink`) the VMM handed
/// the transport, typically an `EventFDInterruptLine` registered as an irqfd.
public protocol VirtioTransport: AnyObject, Sendable {
    var notifications: [QueueNotification] { get }
}
