import Glibc
import Synchronization
import CVfsvmLinux

/// A fixed set of threads running submitted jobs in FIFO order.
///
/// Request handlers may block for a long time (a FUSE SETLKW waits for a
/// lock another request will release), so a queue hands each request to a
/// pool instead of running it inline.
public final class WorkerPool: Sendable {
    private struct State {
        var jobs: [@Sendable () -> Void] = []
        var head = 0
        var running = 0
        var shuttingDown = false
        var pending: Int { jobs.count - head }
    }

    private let state = Mutex(State())
    /// Woken when a job arrives or on shutdown.
    private let work = EventCounter()
    /// Woken when a job finishes.
    private let finished = EventCounter()
    private let threads: Mutex<[OSThread]>

    public init(threads count: Int, name: String) throws(SystemError) {
        threads = Mutex([])
        for i in 0..<max(1, count) {
            let t = try OSThread(name: "\(name)-\(i)") { [self] in self.runWorker() }
            threads.withLock { $0.append(t) }
        }
    }

    public func submit(_ job: @escaping @Sendable () -> Void) {
        state.withLock { s in
            s.jobs.append(job)
        }
        work.signal()
    }

    /// Jobs queued or running.
    public var busy: Int { state.withLock { $0.pending + $0.running } }

    /// Waits until no job is queued or running, or `timeoutMilliseconds`
    /// passes; returns whether the pool is idle.
    @discardableResult
    public func waitIdle(timeoutMilliseconds: Int = -1) -> Bool {
        var clock = timespec()
        clock_gettime(CLOCK_MONOTONIC, &clock)
        let deadline = Int(clock.tv_sec) * 1000 + Int(clock.tv_nsec) / 1_000_000 + timeoutMilliseconds
        while busy > 0 {
            clock_gettime(CLOCK_MONOTONIC, &clock)
            let now = Int(clock.tv_sec) * 1000 + Int(clock.tv_nsec) / 1_000_000
            if timeoutMilliseconds >= 0 && now >= deadline { return false }
            finished.wait(timeoutMilliseconds: timeoutMilliseconds < 0 ? 100 : min(100, deadline - now))
        }
        return true
    }

    /// Lets queued jobs finish, then stops the threads. With `join` it
    /// waits for them; without, they are detached and end on their own once
    /// their current job returns (for jobs that may never return).
    public func shutdown(join: Bool = true) {
        let count = threads.withLock { $0.count }
        state.withLock { $0.shuttingDown = true }
        for _ in 0..<count { work.signal() }
        let all = threads.withLock { t in defer { t = [] }; return t }
        for t in all {
            if join { t.join() } else { t.detach() }
        }
    }

    private func runWorker() {
        while true {
            let next: (@Sendable () -> Void)? = state.withLock { s in
                guard s.pending > 0 else { return nil }
                let job = s.jobs[s.head]
                s.head += 1
                if s.head > 64 && s.head * 2 > s.jobs.count {
                    s.jobs.removeFirst(s.head)
                    s.head = 0
                }
                s.running += 1
                return job
            }
            if let next {
                next()
                state.withLock { $0.running -= 1 }
                finished.signal()
                continue
            }
            if state.withLock({ $0.shuttingDown && $0.pending == 0 }) { return }
            work.wait(timeoutMilliseconds: -1)
        }
    }
}

/// A counting wake-up built on an eventfd in semaphore mode: each `signal`
/// lets one `wait` return.
final class EventCounter: Sendable {
    private let fd: FileDescriptor

    init() {
        // An eventfd cannot fail here short of fd exhaustion, which the
        // pool's creator would already have hit; trap with the reason.
        let raw = eventfd(0, Int32(EFD_CLOEXEC | EFD_SEMAPHORE | EFD_NONBLOCK))
        precondition(raw >= 0, "eventfd for a worker pool failed: \(Errno.current)")
        fd = FileDescriptor(owning: raw)
    }

    func signal() {
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { Glibc.write(fd.rawValue, $0.baseAddress, 8) }
    }

    /// Waits for one signal, or the timeout (< 0: forever).
    func wait(timeoutMilliseconds: Int) {
        var p = pollfd(fd: fd.rawValue, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, Int32(clamping: timeoutMilliseconds)) > 0 else { return }
        var value: UInt64 = 0
        _ = withUnsafeMutableBytes(of: &value) { Glibc.read(fd.rawValue, $0.baseAddress, 8) }
    }
}
