import Glibc
import Synchronization

/// Wakes a thread blocked in a system call for a request (a lock wait:
/// fcntl(F_OFD_SETLKW), flock(LOCK_EX)) when the request's caller is
/// interrupted. The thread records itself (`enter`); `interrupt` marks the
/// wait and sends it `signal`, whose handler does nothing and is installed
/// without SA_RESTART, so the blocking call returns EINTR; the calls made
/// through `interruptibleCall` then throw EINTR instead of retrying.
///
/// A signal that comes between the check of the mark and the start of the
/// call is lost (no system call unblocks a signal and takes a lock in one
/// step): the thread counts as blocking from that check until the call
/// returns (`beginBlocking`), and `interrupt` signals it again while it
/// still is. (Not by answering the INTERRUPT EAGAIN for the kernel to send
/// it again: on `vfsvm mount` that reply goes out on the cloned /dev/fuse
/// fd that read the INTERRUPT, and the kernel finds the request only among
/// those read through the same fd, so it drops it with ENOENT - review4.)
public final class Interruption: Sendable {
    /// The wake-up signal (SIGUSR2 is the vCPU kick; this one is unused
    /// elsewhere).
    public static let signal = SIGUSR1

    private struct State { var thread: pthread_t?; var interrupted = false; var left = false; var blocking = false }
    private let state = Mutex(State())

    public init() { Self.installHandler() }

    private static let handlerInstalled: Bool = {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0  // no SA_RESTART: the blocked call must return EINTR
        return sigaction(signal, &action, nil) == 0
    }()

    /// Installs the no-op handler (once per process). Call before a
    /// seccomp filter, though rt_sigaction stays allowed.
    public static func installHandler() { _ = handlerInstalled }

    /// Makes the calling thread the one `interrupt` wakes, and the wait
    /// `interruptibleCall` on this thread consults. Unblocks the signal here.
    public func enter() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, Self.signal)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        let me = pthread_self()
        state.withLock { $0.thread = me }
        Interruption.current = self
    }

    /// Ends the wait: no signal is sent to the thread after this returns.
    public func leave() {
        state.withLock { $0.left = true; $0.thread = nil }
        Interruption.current = nil
    }

    public var isInterrupted: Bool { state.withLock { $0.interrupted } }

    /// Marks the wait interrupted and, when its thread is in (or about to
    /// start) a blocking call, signals it until that call has returned: a
    /// signal sent just before the call began is lost. Gives up after
    /// `patience` (a thread stuck where signals do not reach; the mark
    /// still ends its next call). Returns false once the waiter has left.
    @discardableResult
    public func interrupt(patience: Duration = .milliseconds(100)) -> Bool {
        var pause: UInt32 = 50  // µs, doubling up to 10 ms
        var waited: UInt32 = 0
        let limit = UInt32(clamping: patience.components.seconds * 1_000_000 + patience.components.attoseconds / 1_000_000_000_000)
        while true {
            let (signalled, left) = state.withLock { s -> (Bool, Bool) in
                s.interrupted = true
                guard s.blocking, !s.left, let t = s.thread else { return (false, s.left) }
                _ = pthread_kill(t, Self.signal)
                return (true, false)
            }
            guard signalled, waited < limit else { return !left }
            usleep(pause)
            waited += pause
            pause = min(pause * 2, 10_000)
        }
    }

    /// Before a blocking call: false when the wait is interrupted already
    /// (the call must not start), else the thread counts as blocking until
    /// `endBlocking`.
    func beginBlocking() -> Bool {
        state.withLock { s in
            if s.interrupted { return false }
            s.blocking = true
            return true
        }
    }

    func endBlocking() {
        state.withLock { $0.blocking = false }
    }

    // MARK: - The calling thread's wait

    private static let key: pthread_key_t = {
        var k = pthread_key_t()
        pthread_key_create(&k, nil)
        return k
    }()

    /// The wait the calling thread entered, if any (unretained: `enter`'s
    /// caller keeps it alive until `leave`).
    static var current: Interruption? {
        get {
            guard let p = pthread_getspecific(key) else { return nil }
            return Unmanaged<Interruption>.fromOpaque(p).takeUnretainedValue()
        }
        set { pthread_setspecific(key, newValue.map { Unmanaged.passUnretained($0).toOpaque() }) }
    }
}

/// As `sysCall`, but a call the calling thread's `Interruption` was
/// interrupted for (before or during the call) throws EINTR instead of
/// being retried.
public func interruptibleCall<R: FixedWidthInteger>(_ call: @autoclosure () -> String, _ body: () -> R) throws(SystemError) -> R {
    guard let wait = Interruption.current else { return try sysCall(call(), body) }
    while true {
        guard wait.beginBlocking() else { throw SystemError(call(), .EINTR) }
        let result = body()
        let err = Errno.current  // before the lock, which may touch errno
        wait.endBlocking()
        if result != -1 { return result }
        if err == .EINTR { continue }
        throw SystemError(call(), err)
    }
}
