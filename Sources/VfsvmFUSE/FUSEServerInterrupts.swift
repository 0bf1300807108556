import Synchronization
import VfsvmMemory
import VfsvmSys

/// Requests that wait for a lock, each on a thread of its own, and the
/// INTERRUPTs that wake them.
extension FUSEServer {
    public func wait(_ waiter: FUSELockWaiter, late: some FUSELateReply) {
        let r = waiter.request, room = waiter.room
        // Known to INTERRUPT before the thread runs: one that comes first
        // marks the wait, and the thread answers EINTR without waiting.
        let unique = r.header.unique
        let wait = Interruption()
        waiting.withLock { $0.enter(unique, wait) }
        do {
            let thread = try OSThread(name: options.lockWaiterThreadName) { [self] in
                let own = HostBuffer(count: room)
                wait.enter()
                let n = wait.isInterrupted ? refuse(r, with: .EINTR, reply: own)
                    : run(r, session: currentSession, payload: NoPayload(), reply: own)
                // No wake-up signal reaches this thread after leave().
                wait.leave()
                waiting.withLock { $0.leave(unique, wait) }
                late.send(Array(own.array.prefix(n)))
                waiters.withLock { $0 -= 1 }
            }
            thread.detach()
        } catch {
            // The reply is deferred already (the caller may have taken the
            // request over): the refusal goes the late way too.
            waiting.withLock { $0.leave(unique, wait) }
            waiters.withLock { $0 -= 1 }
            logLine("vfsvm: no thread for a request that waits for a lock: \(error)")
            let own = HostBuffer(count: room)
            late.send(Array(own.array.prefix(refuse(r, with: .ENOLCK, reply: own))))
        }
    }

    func admitWaiter() -> Bool {
        waiters.withLock { n in
            guard n < options.maxLockWaiters else { return false }
            n += 1
            return true
        }
    }

    /// FUSE_INTERRUPT for request `target`: the caller got a signal. Only
    /// requests deferred to a thread of their own (lock waits) can wait for
    /// long; such a wait is woken (`Interruption`) and its request answers
    /// EINTR (the kernel restarts the call after a non-fatal signal). The
    /// INTERRUPT itself is never answered: not EAGAIN either, which would
    /// make the kernel send it again at once (a ping-pong for as long as a
    /// request runs) where it does not drop it (on `vfsvm mount` it does:
    /// the reply goes out on another cloned fd than the request's). One for
    /// a request not waiting here is kept (`Waits`) in case that request is
    /// about to be deferred by another thread; else the kernel forgets it
    /// when its request ends.
    func interrupt(_ target: UInt64, reply: some ScatterGatherList, unique: UInt64) -> (Int, FUSEErrno?) {
        // Woken outside the table's lock: `interrupt` may wait for the
        // thread to leave its blocking call.
        waiting.withLock { $0.interrupt(target) }?.interrupt()
        return (0, nil)
    }
}

/// The lock waiters by unique, and the INTERRUPTs that named a request
/// that was not one of them: a request running to completion (it ends by
/// itself; the kernel drops the INTERRUPT with it), or one read by another
/// thread that is about to defer it (it must still be interrupted when it
/// does: review4). At most `earlyLimit` are remembered, the oldest
/// forgotten first: Linux's uniques only grow, so a remembered one that
/// never comes back costs only its slot.
struct Waits {
    static let earlyLimit = 1024
    private var waiters: [UInt64: Interruption] = [:]
    private var early: Set<UInt64> = []
    private var earlyOrder: [UInt64] = []
    private var earlyHead = 0

    /// `wait` waits for request `unique` now; an INTERRUPT that came first
    /// marks it at once (its thread has not started: nothing to signal).
    mutating func enter(_ unique: UInt64, _ wait: Interruption) {
        waiters[unique] = wait
        if early.remove(unique) != nil { wait.interrupt() }
    }

    mutating func leave(_ unique: UInt64, _ wait: Interruption) {
        if waiters[unique] === wait { waiters[unique] = nil }
    }

    /// INTERRUPT for `target`: its waiter, to be woken, or nil (then the
    /// INTERRUPT is remembered for `enter`).
    mutating func interrupt(_ target: UInt64) -> Interruption? {
        if let wait = waiters[target] { return wait }
        guard !early.contains(target) else { return nil }
        if earlyOrder.count - earlyHead >= Self.earlyLimit {
            early.remove(earlyOrder[earlyHead])
            earlyHead += 1
            if earlyHead >= Self.earlyLimit {
                earlyOrder.removeFirst(earlyHead)
                earlyHead = 0
            }
        }
        early.insert(target)
        earlyOrder.append(target)
        return nil
    }
}

/// The payload of a request run away from its buffers: none (a deferred
/// request has no WRITE data).
struct NoPayload: ScatterGatherList {
    var segments: [HostSegment] { [] }
    var byteCount: Int { 0 }
}
