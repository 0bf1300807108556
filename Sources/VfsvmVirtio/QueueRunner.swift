import Glibc
import Synchronization
import VfsvmMemory
import VfsvmSys

/// Handles one descriptor chain and returns how many bytes it wrote into
/// the chain's writable buffers (the used length).
public typealias ChainHandler = @Sendable (DescriptorChain, GuestMemory) -> UInt32

/// Runs one virtqueue: a thread waits for the driver's kick, pops every
/// available chain and hands it to the handler (on a worker pool when one
/// is given, inline otherwise), pushes the used element and interrupts the
/// driver when `Virtqueue.needsInterrupt` says it wants one. A handler may
/// also keep a chain and complete it later from any thread
/// (`ChainOutcome.deferred`).
///
/// The same runner serves the in-process VMM (kick = ioeventfd,
/// interrupt = irqfd) and the vhost-user backend (kick/call eventfds from
/// the frontend).
///
/// A refused chain is completed with length 0 and logged; a fatal queue
/// error stops the queue and is reported through `onFatal` (a transport
/// sets DEVICE_NEEDS_RESET, vhost-user logs it; the runner itself does not
/// log it).
public final class QueueRunner: Sendable {
    public let index: Int
    /// The eventfd the driver's notifications arrive on.
    public let kick: EventFD
    private let sink: CompletionSink
    private let stopSignal: EventFD
    private let handler: DeferringChainHandler
    private let pool: WorkerPool?
    private let thread = Mutex<OSThread?>(nil)
    /// Set by `stop()`; the thread checks it between passes.
    private let stopping = Atomic(false)
    private let refusalReport = Mutex(RefusalReport())

    /// - Parameters:
    ///   - poolThreads: 0 handles chains inline on the queue's thread;
    ///     more hands them to that many worker threads (requests may then
    ///     complete out of order, which virtio allows unless IN_ORDER was
    ///     negotiated; do not offer IN_ORDER with a pool).
    ///   - handler: answers a chain now (`.completed`) or later
    ///     (`.deferred`, having taken a token from `ChainRequest.deferCompletion()`).
    ///   - log: where the runner's lines go (refused chains, failures of
    ///     its own); stderr by default.
    public init(
        index: Int, queue: Virtqueue, memory: GuestMemory, kick: EventFD, interrupt: any VirtioInterrupt,
        poolThreads: Int = 0, requestHandler handler: @escaping DeferringChainHandler,
        log: @escaping @Sendable (String) -> Void = { logLine("vfsvm: " + $0) },
        onFatal: @escaping @Sendable (VirtqueueError) -> Void
    ) throws(SystemError) {
        self.index = index
        self.kick = kick
        sink = try CompletionSink(index: index, queue: queue, memory: memory, interrupt: interrupt, onFatal: onFatal, log: log)
        stopSignal = try EventFD(nonBlocking: true)
        self.handler = handler
        pool = poolThreads > 0 ? try WorkerPool(threads: poolThreads, name: "vfsvm-q\(index)") : nil
    }

    /// A runner whose handler always answers at once.
    public convenience init(
        index: Int, queue: Virtqueue, memory: GuestMemory, kick: EventFD, interrupt: any VirtioInterrupt,
        poolThreads: Int = 0, handler: @escaping ChainHandler,
        log: @escaping @Sendable (String) -> Void = { logLine("vfsvm: " + $0) },
        onFatal: @escaping @Sendable (VirtqueueError) -> Void
    ) throws(SystemError) {
        try self.init(index: index, queue: queue, memory: memory, kick: kick, interrupt: interrupt, poolThreads: poolThreads,
                      requestHandler: { .completed(handler($0.chain, $0.memory)) }, log: log, onFatal: onFatal)
    }

    private var memory: GuestMemory { sink.memory }

    /// Starts the queue's thread. It first drains what is already
    /// available (the driver may have kicked before we listened).
    public func start() throws(SystemError) {
        let t = try OSThread(name: "vfsvm-queue\(index)") { [self] in self.run() }
        thread.withLock { $0 = t }
    }

    /// Stops the thread, lets in-flight requests finish for up to
    /// `graceMilliseconds`, and returns the queue (for GET_VRING_BASE).
    /// Requests still running after that, and deferred ones, are abandoned:
    /// their completions are dropped.
    @discardableResult
    public func stop(graceMilliseconds: Int = 2000) -> Virtqueue {
        stopping.store(true, ordering: .releasing)
        sink.stopRequested.store(true, ordering: .releasing)
        try? stopSignal.signal()
        let t = thread.withLock { t in defer { t = nil }; return t }
        t?.join()
        let idle = pool?.waitIdle(timeoutMilliseconds: graceMilliseconds) ?? true
        let q = sink.slot.withLock { slot in
            slot.live = false
            return slot.queue
        }
        // Workers still stuck in a request are left to finish on their own.
        pool?.shutdown(join: idle)
        flushRefusals()
        return q
    }

    /// Drains the queue now, as a kick would (pass after pass until the
    /// ring is empty). For transports without a kick eventfd and for tests.
    public func processAvailable() {
        callerScratch.withLock { drain(&$0) }
    }

    /// `processAvailable`'s pass arrays (the thread keeps its own).
    private let callerScratch = Mutex(PassScratch())

    private func run() {
        // The pass's arrays live as long as the thread: no allocation per
        // wake-up once they have grown to the batch size.
        var scratch = PassScratch()
        // Edge-triggered: a wake-up costs one epoll_wait, not a poll and a
        // read of the kick counter (at one request in flight, one system
        // call in four). The kick fd is a doorbell: what is new is in the
        // ring, so its counter is never read.
        let wakeups: EdgeTriggeredWait
        do { wakeups = try EdgeTriggeredWait([stopSignal.fd.rawValue, sink.resume.fd.rawValue, kick.fd.rawValue]) } catch {
            log("queue \(index): cannot wait for kicks: \(error)")
            return
        }
        drain(&scratch)
        // The kick fd is listened to until it fails: a pipe whose writer is
        // gone (an eventfd never hangs up) is dropped from the set at once.
        var listening = true
        while true {
            let ready: UInt8, failed: UInt8
            do { (ready, failed) = try wakeups.wait() } catch {
                log("queue \(index): waiting for a kick failed: \(error)")
                return
            }
            if ready & 1 != 0 || stopping.load(ordering: .acquiring) { return }
            var kicked = ready & 4 != 0
            if kicked && failed & 4 != 0 && listening {
                wakeups.remove(kick.fd.rawValue)
                listening = false
                kicked = false
                log("queue \(index): the kick fd keeps waking without a kick (hung up?); the queue no longer listens for kicks")
            }
            // The resume eventfd is read: it is signalled with a
            // non-blocking write, which a full counter would refuse.
            let resumed = ready & 2 != 0
            if resumed { _ = try? sink.resume.drain() }
            if kicked || resumed { drain(&scratch) }
        }
    }

    /// What one pass found.
    private enum Pass {
        /// The ring is empty and notifications are back on.
        case idle
        /// There may be more: the pass hit its bound, or buffers arrived
        /// while notifications were off (the race in 2.7.10 / 2.8.10).
        case more
        /// As many chains as the ring holds are outstanding (on the pool,
        /// deferred): no more are taken until one
        /// completes. A driver cannot have more in flight lawfully (2.7.6:
        /// it adds only buffers it owns), so only a driver that republishes
        /// buffers the device still holds is slowed.
        case throttled
        /// The queue is stopped or broken.
        case dead
    }

    /// Passes until the ring is empty, checking for `stop()` between passes
    /// and yielding the CPU, so a driver that republishes as fast as the
    /// device completes (a storm of refused chains) can neither hold the
    /// thread nor keep `stop()` waiting for more than one pass.
    private func drain(_ scratch: inout PassScratch) {
        while !stopping.load(ordering: .acquiring) {
            switch pass(&scratch) {
            case .more: sched_yield()
            case .idle, .throttled, .dead: return
            }
        }
    }

    /// Pops at most a ring's worth of chains with driver notifications off,
    /// then (if the ring ran empty) turns them back on and re-checks. Chains
    /// run on the pool, or inline on this thread (a handler that must wait,
    /// such as a FUSE SETLKW, defers its chain rather than hold the queue), and are completed as one batch (one
    /// interrupt decision for the batch). Refused chains are completed with
    /// length 0 in the pass and counted, not kept.
    private func pass(_ scratch: inout PassScratch) -> Pass {
        // Read once: each use of the `memory` property retained and
        // released the sink's memory again (three pairs a pass).
        let memory = sink.memory
        var chains = scratch.takeChains()
        defer { chains.emptyKeepingCapacity(); scratch.chains = chains }
        var refusals = 0
        var latestRefusal: RefusedChain?
        var fatal: VirtqueueError?
        let result: Pass = sink.slot.withLock { slot in
            guard slot.live else { return .dead }
            do throws(VirtqueueError) {
                try checkMemory(memory)
                try slot.queue.disableNotifications(memory)
                let bound = Int(slot.queue.ringSize)
                var taken = 0
                var empty = false
                while taken < bound {
                    if slot.outstanding + chains.count >= bound {
                        slot.throttled = true
                        break
                    }
                    do throws(VirtqueueError) {
                        guard let chain = try slot.queue.pop(memory) else {
                            empty = true
                            break
                        }
                        chains.append(chain)
                    } catch .refusedChain(let r) {
                        refusals += 1
                        latestRefusal = r
                        try slot.queue.pushUsed(id: r.id, descriptorCount: r.descriptorCount, length: 0, memory)
                    }
                    taken += 1
                }
                slot.outstanding += chains.count
                // Throttled: notifications stay off; the completion that
                // makes room wakes the thread (`CompletionSink.resume`).
                if slot.throttled { return .throttled }
                if !empty { return .more }
                return try slot.queue.enableNotifications(memory) ? .more : .idle
            } catch {
                fatal = memory.explainingTruncation(error)
                slot.live = false
                return .dead
            }
        }
        if let latestRefusal { noteRefusals(refusals, latest: latestRefusal) }
        if let fatal {
            sink.onFatal(fatal)
            return .dead
        }
        var inline = scratch.takeCompletions()
        defer { inline.emptyKeepingCapacity(); scratch.completions = inline }
        for chain in chains {
            let request = ChainRequest(chain: chain, memory: memory, sink: sink)
            if let pool {
                pool.submit { [self] in self.settle(chain, handler(request)) }
            } else {
                switch handler(request) {
                case let .completed(length): inline.append(UsedElement(chain, length: length))
                case .deferred: break  // outstanding until its token completes
                }
            }
        }
        if !inline.isEmpty || refusals > 0 { sink.complete(inline, settling: inline.count) }
        // A handler may have been the one to touch a truncated region.
        if memory.truncatedRegion != nil, sink.slot.withLock({ s in defer { s.live = false }; return s.live }) {
            do throws(VirtqueueError) { try checkMemory(memory) } catch { sink.onFatal(error) }
            return .dead
        }
        return result
    }

    /// The arrays one pass fills, kept by the caller of `drain` from pass
    /// to pass (emptied at the end of each, capacity kept).
    struct PassScratch {
        var chains: [DescriptorChain] = []
        var completions: [UsedElement] = []

        /// The chain array, leaving none behind (so appending to it in
        /// the pass does not copy it).
        mutating func takeChains() -> [DescriptorChain] {
            var c: [DescriptorChain] = []
            swap(&c, &chains)
            return c
        }

        mutating func takeCompletions() -> [UsedElement] {
            var c: [UsedElement] = []
            swap(&c, &completions)
            return c
        }
    }

    /// A front-end that shrank the file under guest memory (the SIGBUS was
    /// absorbed: see `GuestRegion.frontendShared`) breaks the ring.
    private func checkMemory(_ memory: GuestMemory) throws(VirtqueueError) {
        if let region = memory.truncatedRegion { throw .memory(.truncated(region: region.start)) }
    }

    // MARK: - Refused chains, logged at a bounded rate

    /// How often a storm of refused chains is summed up in the log.
    static let refusalReportInterval: Duration = .seconds(1)

    private struct RefusalReport {
        var unreported = 0
        var latest: RefusedChain?
        var lastLine: ContinuousClock.Instant?
    }

    /// The first refused chain is logged as it comes; after that one line
    /// per `refusalReportInterval` at most says how many more there were
    /// (the rest is said when the runner stops).
    private func noteRefusals(_ count: Int, latest: RefusedChain) {
        let now = ContinuousClock.now
        let line: String? = refusalReport.withLock { r in
            r.unreported += count
            r.latest = latest
            if let last = r.lastLine, now - last < Self.refusalReportInterval { return nil }
            defer { r.unreported = 0; r.lastLine = now }
            return r.lastLine == nil && r.unreported == 1
                ? "queue \(index): \(latest)"
                : "queue \(index): \(r.unreported) chains refused (the latest: \(latest))"
        }
        if let line { log(line) }
    }

    private func flushRefusals() {
        let line: String? = refusalReport.withLock { r in
            guard r.unreported > 0, let latest = r.latest else { return nil }
            defer { r.unreported = 0 }
            return "queue \(index): \(r.unreported) more chains refused (the latest: \(latest))"
        }
        if let line { log(line) }
    }

    /// A chain answered off the queue's thread: complete it now, or leave
    /// it to its deferral token.
    private func settle(_ chain: DescriptorChain, _ outcome: ChainOutcome) {
        switch outcome {
        case let .completed(length): sink.complete(CollectionOfOne(UsedElement(chain, length: length)), settling: 1)
        case .deferred: break  // outstanding until its token completes
        }
    }

    private func log(_ line: String) { sink.log(line) }
}

extension Array {
    /// Empties the array and keeps its storage. `removeAll(keepingCapacity:)`
    /// goes through `replaceSubrange` (~70 instructions, callgrind); a pass
    /// at one request in flight holds one element, which `removeLast` drops
    /// for a fraction of that.
    mutating func emptyKeepingCapacity() {
        if count == 1 { removeLast() } else { removeAll(keepingCapacity: true) }
    }
}

extension GuestMemory {
    /// `error`, or the truncation behind it: a ring that read zeros from a
    /// region whose file was shrunk fails in odd ways (an avail index that
    /// jumps back); the cause is the truncation.
    func explainingTruncation(_ error: VirtqueueError) -> VirtqueueError {
        truncatedRegion.map { .memory(.truncated(region: $0.start)) } ?? error
    }
}
