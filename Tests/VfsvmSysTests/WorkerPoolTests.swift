import Glibc
import Synchronization
import Testing
@testable import VfsvmSys

@Suite struct WorkerPoolTests {
    @Test func runsEveryJobAndReportsIdle() throws {
        let pool = try WorkerPool(threads: 3, name: "test")
        let done = Mutex(0)
        for _ in 0..<200 { pool.submit { done.withLock { $0 += 1 } } }
        #expect(pool.waitIdle(timeoutMilliseconds: 5000))
        #expect(done.withLock { $0 } == 200)
        #expect(pool.busy == 0)
        pool.shutdown()
    }

    @Test func waitIdleTimesOutOnAStuckJobAndShutdownDoesNotHang() throws {
        let pool = try WorkerPool(threads: 1, name: "test")
        let (r, w) = try makePipe()
        // A job that blocks until the pipe is written, like a request
        // waiting for a lock.
        pool.submit {
            var b: UInt8 = 0
            _ = read(r.rawValue, &b, 1)
        }
        let start = ContinuousClock.now
        #expect(!pool.waitIdle(timeoutMilliseconds: 200))
        #expect(ContinuousClock.now - start >= .milliseconds(190))
        pool.shutdown(join: false)
        try w.writeAll([1])
    }
}
