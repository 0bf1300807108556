import Glibc

/// A fixed set of threads running submitted jobs in FIFO order.
///
/// A queue hands requests to a pool when several may be in flight at once
/// (`vfsvm serve --thread-pool-size`). One job wakes one idle worker
/// (a condition variable, not a shared eventfd that wakes them all).
public final class WorkerPool: @unchecked Sendable {
    // @unchecked: every mutable field is guarded by `mutex`.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    /// Signalled when a job arrives or on shutdown.
    private let workAvailable: UnsafeMutablePointer<pthread_cond_t>
    /// Broadcast when the pool goes idle while someone waits for it.
    private let becameIdle: UnsafeMutablePointer<pthread_cond_t>

    private var jobs: [@Sendable () -> Void] = []
    private var head = 0
    private var running = 0
    private var idleWaiters = 0
    private var shuttingDown = false
    private var threads: [OSThread] = []

    public init(threads count: Int, name: String) throws(SystemError) {
        // Safe: allocated here, initialised before use, destroyed and
        // freed in deinit after every thread has been joined or detached.
        mutex = .allocate(capacity: 1)
        workAvailable = .allocate(capacity: 1)
        becameIdle = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(workAvailable, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(becameIdle, &attr)
        pthread_condattr_destroy(&attr)
        for i in 0..<max(1, count) {
            do {
                let t = try OSThread(name: "\(name)-\(i)") { [self] in self.runWorker() }
                locked { threads.append(t) }
            } catch {
                shutdown()
                throw error
            }
        }
    }

    deinit {
        pthread_cond_destroy(becameIdle)
        pthread_cond_destroy(workAvailable)
        pthread_mutex_destroy(mutex)
        becameIdle.deallocate()
        workAvailable.deallocate()
        mutex.deallocate()
    }

    private func locked<R>(_ body: () -> R) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }

    private var pending: Int { jobs.count - head }

    public func submit(_ job: @escaping @Sendable () -> Void) {
        locked {
            jobs.append(job)
            pthread_cond_signal(workAvailable)
        }
    }

    /// Jobs queued or running.
    public var busy: Int { locked { pending + running } }

    /// Waits until no job is queued or running, or `timeoutMilliseconds`
    /// passes (< 0: forever); returns whether the pool is idle.
    @discardableResult
    public func waitIdle(timeoutMilliseconds: Int = -1) -> Bool {
        var deadline = timespec()
        clock_gettime(CLOCK_MONOTONIC, &deadline)
        if timeoutMilliseconds >= 0 {
            let ns = Int(deadline.tv_nsec) + (timeoutMilliseconds % 1000) * 1_000_000
            deadline.tv_sec += timeoutMilliseconds / 1000 + ns / 1_000_000_000
            deadline.tv_nsec = ns % 1_000_000_000
        }
        return locked {
            idleWaiters += 1
            defer { idleWaiters -= 1 }
            while pending + running > 0 {
                if timeoutMilliseconds < 0 {
                    pthread_cond_wait(becameIdle, mutex)
                } else if pthread_cond_timedwait(becameIdle, mutex, &deadline) == ETIMEDOUT {
                    return pending + running == 0
                }
            }
            return true
        }
    }

    /// Lets queued jobs finish, then stops the threads. With `join` it
    /// waits for them; without, they are detached and end on their own once
    /// their current job returns (for jobs that may never return).
    public func shutdown(join: Bool = true) {
        let all: [OSThread] = locked {
            shuttingDown = true
            pthread_cond_broadcast(workAvailable)
            defer { threads = [] }
            return threads
        }
        for t in all {
            if join { t.join() } else { t.detach() }
        }
    }

    private func runWorker() {
        while true {
            let next: (@Sendable () -> Void)? = locked {
                while pending == 0 && !shuttingDown { pthread_cond_wait(workAvailable, mutex) }
                guard pending > 0 else { return nil }
                let job = jobs[head]
                head += 1
                if head > 64 && head * 2 > jobs.count {
                    jobs.removeFirst(head)
                    head = 0
                }
                running += 1
                return job
            }
            guard let next else { return }
            next()
            locked {
                running -= 1
                if idleWaiters > 0 && pending + running == 0 { pthread_cond_broadcast(becameIdle) }
            }
        }
    }
}
