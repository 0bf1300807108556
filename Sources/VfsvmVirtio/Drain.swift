import VfsvmMemory

/// What one `Virtqueue.drain` did.
public struct DrainResult: Hashable, Sendable {
    /// Chains completed, refused ones included.
    public var completed: Int = 0
    /// Chains that were refused and completed with length 0.
    public var refused: [RefusedChain] = []
    /// The driver wants a used buffer notification: signal the queue's interrupt.
    public var interrupt = false

    public init() {}
}

extension Virtqueue {
    /// The usual device response to a kick, in one place:
    ///
    /// 1. turn driver notifications off (the device is busy anyway);
    /// 2. pop and `handle` every available chain, completing each with the
    ///    length `handle` returns (clamped to the chain's writable length);
    ///    refused chains are completed with length 0;
    /// 3. turn notifications back on and re-check the ring, looping if
    ///    buffers arrived meanwhile (no lost wake-up);
    /// 4. ask once whether the driver wants an interrupt for the batch.
    ///
    /// After `limit` chains it stops early (notifications stay off, so the
    /// caller should call again without waiting for a kick). A fatal error
    /// is thrown as is: the device sets DEVICE_NEEDS_RESET and stops the queue.
    public mutating func drain(_ memory: GuestMemory, limit: Int = .max,
                               _ handle: (DescriptorChain) -> UInt32) throws(VirtqueueError) -> DrainResult {
        var result = DrainResult()
        try disableNotifications(memory)
        outer: while true {
            while result.completed < limit {
                let chain: DescriptorChain?
                do {
                    chain = try pop(memory)
                } catch let .refusedChain(r) {
                    try pushUsed(id: r.id, descriptorCount: r.descriptorCount, length: 0, memory)
                    result.refused.append(r)
                    result.completed += 1
                    continue
                }
                guard let chain else { break }
                let written = min(handle(chain), UInt32(clamping: chain.writableLength))
                try pushUsed(id: chain.id, descriptorCount: chain.descriptorCount, length: written, memory)
                result.completed += 1
            }
            if result.completed >= limit { break outer }
            if try !enableNotifications(memory) { break outer }
            try disableNotifications(memory)
        }
        result.interrupt = try needsInterrupt(memory)
        return result
    }
}
