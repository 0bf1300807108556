import Glibc

/// A plain OS thread for blocking loops (a vhost-user connection, a queue
/// worker) that must not sit on Swift concurrency's small cooperative pool.
public final class OSThread: Sendable {
    // @unchecked would be needed for a var; the id is set once in init.
    private let id: pthread_t

    private final class Box {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }

    /// Starts `body` on a new thread.
    public init(_ body: @escaping @Sendable () -> Void) throws(SystemError) {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            // Safe: arg is the Box retained just above, released exactly once here.
            guard let arg else { return nil }
            let box = Unmanaged<Box>.fromOpaque(arg).takeRetainedValue()
            box.body()
            return nil
        }, box)
        guard rc == 0 else {
            Unmanaged<Box>.fromOpaque(box).release()
            throw SystemError("pthread_create", Errno(rawValue: rc))
        }
        id = tid
    }

    /// Waits for the thread to finish. Call at most once.
    public func join() {
        _ = pthread_join(id, nil)
    }
}
