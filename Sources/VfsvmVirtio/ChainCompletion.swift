import Synchronization
import VfsvmMemory
import VfsvmSys

/// What a chain handler returns.
public enum ChainOutcome: Sendable {
    /// Done: this many bytes were written into the chain's writable buffers
    /// (clamped to their length).
    case completed(UInt32)
    /// The handler took the chain over with `ChainRequest.deferCompletion()`
    /// and completes it later through that token.
    case deferred
}

/// One chain handed to a handler: the chain, the memory its buffers are
/// in, and the way to complete it later.
public struct ChainRequest: Sendable {
    public let chain: DescriptorChain
    public let memory: GuestMemory
    let sink: CompletionSink

    /// Takes the chain over: the handler returns `.deferred` and
    /// calls `token.complete(length:)` once, from any thread, when the
    /// answer is written. Until then the queue goes on with other chains.
    public func deferCompletion() -> ChainCompletion {
        ChainCompletion(sink: sink, element: UsedElement(chain))
    }

    /// True once the queue is being stopped (a reset, GET_VRING_BASE): a
    /// handler doing long work in steps checks it between steps and gives
    /// up, so that `QueueRunner.stop()` is not kept waiting.
    public var stopRequested: Bool { sink.stopRequested.load(ordering: .acquiring) }
}

/// A handler that may answer a chain now or later (see `ChainOutcome`).
public typealias DeferringChainHandler = @Sendable (ChainRequest) -> ChainOutcome

/// The promise to complete one chain later. The first `complete` pushes
/// the used element (and interrupts the driver if it wants); any later
/// call does nothing. A completion after the queue stopped (vhost-user
/// GET_VRING_BASE, a reset) is dropped: the driver may have reused the
/// ring. A token dropped without `complete` completes its chain with
/// length 0, so the driver gets its buffer back.
public final class ChainCompletion: Sendable {
    private let sink: CompletionSink
    private let element: UsedElement
    private let done = Atomic(false)

    init(sink: CompletionSink, element: UsedElement) {
        self.sink = sink
        self.element = element
    }

    deinit {
        if !done.load(ordering: .acquiring) {
            sink.log("queue \(sink.index): chain \(element.id) was deferred and never completed; completed empty")
            _ = finish(length: 0)
        }
    }

    /// The chain this token completes (its id: split head or packed buffer id).
    public var chainID: UInt16 { element.id }

    /// Completes the chain with `length` bytes written. True when this call
    /// pushed the used element; false for a repeated call or when the queue
    /// had stopped.
    @discardableResult
    public func complete(length: UInt32) -> Bool {
        guard !done.exchange(true, ordering: .acquiringAndReleasing) else { return false }
        return finish(length: length)
    }

    /// Writes the answer with `write` (which returns the bytes it wrote) and
    /// completes the chain, but only while the queue still runs: after a
    /// stop the driver may have reused the buffers, so nothing is written.
    /// True when this call wrote and pushed the used element.
    @discardableResult
    public func complete(writing write: () -> UInt32) -> Bool {
        guard !done.exchange(true, ordering: .acquiringAndReleasing) else { return false }
        return sink.complete(element, settling: 1, writing: write)
    }

    private func finish(length: UInt32) -> Bool {
        sink.complete(CollectionOfOne(element.with(length: length)), settling: 1)
    }
}

/// What completing one chain writes: its id, how many ring descriptors it
/// took (packed: the slots to skip), and the used length, already clamped
/// to the chain's writable bytes.
struct UsedElement: Sendable {
    let id: UInt16
    let descriptorCount: UInt16
    let writableLength: UInt32
    let length: UInt32

    init(_ chain: DescriptorChain, length: UInt32 = 0) {
        id = chain.id
        descriptorCount = chain.descriptorCount
        writableLength = UInt32(clamping: chain.writableLength)
        self.length = min(length, writableLength)
    }

    private init(id: UInt16, descriptorCount: UInt16, writableLength: UInt32, length: UInt32) {
        self.id = id
        self.descriptorCount = descriptorCount
        self.writableLength = writableLength
        self.length = min(length, writableLength)
    }

    func with(length: UInt32) -> UsedElement {
        UsedElement(id: id, descriptorCount: descriptorCount, writableLength: writableLength, length: length)
    }
}

/// The ring side of a queue runner: the `Virtqueue` behind its lock, and
/// completing chains into it, from the runner's thread or any other (pool
/// workers, deferred completions).
final class CompletionSink: Sendable {
    struct Slot {
        var queue: Virtqueue
        /// False once stopped or broken: late completions are dropped
        /// instead of touching a ring the driver may reuse.
        var live = true
        /// Chains popped and not completed yet (on the pool, waiting on a
        /// thread of their own, or deferred).
        var outstanding = 0
        /// The runner stopped popping because `outstanding` reached the
        /// ring size; the completion that brings it below wakes it.
        var throttled = false
    }

    let index: Int
    let memory: GuestMemory
    let interrupt: any VirtioInterrupt
    let onFatal: @Sendable (VirtqueueError) -> Void
    let log: @Sendable (String) -> Void
    let slot: Mutex<Slot>
    /// Signalled when a throttled runner may pop again.
    let resume: EventFD
    /// Set by `QueueRunner.stop()` before it waits for the handlers.
    let stopRequested = Atomic(false)

    init(index: Int, queue: Virtqueue, memory: GuestMemory, interrupt: any VirtioInterrupt,
         onFatal: @escaping @Sendable (VirtqueueError) -> Void, log: @escaping @Sendable (String) -> Void) throws(SystemError) {
        self.index = index
        self.memory = memory
        self.interrupt = interrupt
        self.onFatal = onFatal
        self.log = log
        slot = Mutex(Slot(queue: queue))
        resume = try EventFD(nonBlocking: true)
    }

    /// Pushes used elements for `done` (possibly none, to report refusals
    /// pushed earlier) and interrupts the driver once if it wants it;
    /// `settling` outstanding chains are done. False when the queue had
    /// stopped (nothing written).
    @discardableResult
    func complete(_ done: some Collection<UsedElement>, settling: Int) -> Bool {
        complete(settling: settling) { push throws(VirtqueueError) in
            for e in done { try push(e) }
        }
    }

    /// One chain whose answer `write` puts into its buffers under the
    /// queue's lock, so nothing is written once the queue has stopped.
    @discardableResult
    func complete(_ element: UsedElement, settling: Int, writing write: () -> UInt32) -> Bool {
        complete(settling: settling) { push throws(VirtqueueError) in
            try push(element.with(length: write()))
        }
    }

    /// Under the queue's lock: if it still runs, `body` pushes used
    /// elements through the function it is given; then one interrupt
    /// decision for them all.
    private func complete(
        settling: Int,
        _ body: ((UsedElement) throws(VirtqueueError) -> Void) throws(VirtqueueError) -> Void
    ) -> Bool {
        var fatal: VirtqueueError?
        var wake = false
        let (pushed, wanted): (Bool, Bool) = slot.withLock { slot in
            guard slot.live else { return (false, false) }
            slot.outstanding -= settling
            if slot.throttled && slot.outstanding < Int(slot.queue.ringSize) {
                slot.throttled = false
                wake = true
            }
            do throws(VirtqueueError) {
                try body { e throws(VirtqueueError) in
                    try slot.queue.pushUsed(id: e.id, descriptorCount: e.descriptorCount, length: e.length, memory)
                }
                return (true, try slot.queue.needsInterrupt(memory))
            } catch {
                fatal = memory.explainingTruncation(error)
                slot.live = false
                return (false, false)
            }
        }
        if let fatal { onFatal(fatal) }
        if wanted { signal() }
        if wake { try? resume.signal() }  // fails only if the counter is full: then it is signalled already
        return pushed
    }

    /// Interrupts that failed (a vhost-user call fd that is not an
    /// eventfd): the first is logged, the rest counted.
    private let signalFailures = Atomic(0)

    func signal() {
        do { try interrupt.signalQueue(index) } catch {
            if signalFailures.add(1, ordering: .relaxed).oldValue == 0 {
                log("queue \(index): interrupting the driver failed: \(error); further failures are not logged")
            }
        }
    }
}
