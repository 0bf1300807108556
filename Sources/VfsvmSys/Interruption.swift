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
/// step); FUSE covers that: an INTERRUPT answered EAGAIN is sent again (see
/// FUSEServer), and each one signals again until the waiter has left.
public final class Interruption: Sendable {
    /// The wake-up signal (SIGUSR2 is the vCPU kick; this one is unused
    /// elsewhere).
    public static let signal = SIGUSR1

    private struct State { var thread: pthread_t?; var interrupted = false; var left = false }
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

    /// Marks the wait interrupted and signals its thread if it has one.
    /// Returns false once the waiter has left (nothing left to wake).
    @discardableResult
    public func interrupt() -> Bool {
        state.withLock { s in
            s.interrupted = true
            if let t = s.thread { _ = pthread_kill(t, Self.signal) }
            return !s.left
        }
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
    let wait = Interruption.current
    while true {
        if let wait, wait.isInterrupted { throw SystemError(call(), .EINTR) }
        let result = body()
        if result != -1 { return result }
        let err = Errno.current
        if err == .EINTR { continue }
        throw SystemError(call(), err)
    }
}
