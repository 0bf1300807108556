import Glibc
import CVfsvmLinux

/// A joinable OS thread running a closure. vfsvm uses plain threads for
/// vCPUs and queue workers: they block in syscalls (KVM_RUN, read on an
/// eventfd or /dev/fuse), which must not happen on Swift's cooperative pool.
public final class OSThread: @unchecked Sendable {
    // @unchecked: `handle` is written once in init before any other access.
    private var handle = pthread_t()

    private final class Box {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }

    public init(name: String = "vfsvm", _ body: @escaping @Sendable () -> Void) throws(SystemError) {
        let threadName = String(name.prefix(15))
        let box = Unmanaged.passRetained(Box {
            vfsvm_set_thread_name(threadName)
            body()
        }).toOpaque()
        let rc = pthread_create(&handle, nil, { arg in
            let box = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
            box.body()
            return nil
        }, box)
        guard rc == 0 else {
            Unmanaged<Box>.fromOpaque(box).release()
            throw SystemError("pthread_create(\(name))", Errno(rawValue: rc))
        }
    }

    /// Waits for the thread to finish. Call at most once, and not after
    /// `detach`.
    public func join() { _ = pthread_join(handle, nil) }

    /// Lets the thread's resources go when it ends; it can no longer be
    /// joined. For threads nobody waits for (a signal watcher, a request
    /// that may block for as long as the guest wants).
    public func detach() { _ = pthread_detach(handle) }
}

/// Blocks `signals` in the calling thread (and threads it creates after),
/// so they can be taken synchronously with `waitForSignal`.
public func blockSignals(_ signals: [Int32]) {
    var set = sigset_t()
    sigemptyset(&set)
    for s in signals { sigaddset(&set, s) }
    pthread_sigmask(SIG_BLOCK, &set, nil)
}

/// Waits for one of `signals` (which must be blocked) and returns it.
public func waitForSignal(_ signals: [Int32]) -> Int32 {
    var set = sigset_t()
    sigemptyset(&set)
    for s in signals { sigaddset(&set, s) }
    var sig: Int32 = 0
    while sigwait(&set, &sig) != 0 {}
    return sig
}
