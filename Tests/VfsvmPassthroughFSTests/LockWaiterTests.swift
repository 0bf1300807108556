import VfsvmFUSETestSupport
import Foundation
import Glibc
import Testing
import VfsvmFUSE
import VfsvmMemory
import VfsvmPassthroughFS
import VfsvmSys

/// Requests that wait for a lock (SETLKW) run on threads of their own,
/// through FUSEServer's deferred entry point, within one budget per server.
@Suite(.serialized) struct LockWaiterTests {
    /// Lock requests blocked on inode `ino` now (the "->" lines of
    /// /proc/locks), so a test can wait until its waiters really wait.
    private func blockedRequests(ino: UInt64) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/locks", encoding: .utf8) else { return -1 }
        return text.split(separator: "\n").filter { line in
            line.contains("->") && line.split(separator: " ").contains { $0.hasSuffix(":\(ino)") }
        }.count
    }

    /// The attack of a guest that locks, queues waiters behind the lock,
    /// resets (a new INIT, as after a reboot: the waiters are abandoned, not
    /// ended) and does it again: the waiters' threads stay counted until
    /// they end, so the process never holds more than the budget of them,
    /// and waiters past the budget get ENOLCK at once.
    @Test func abandonedWaitersStayCountedAcrossResets() throws {
        let limit = 6
        var options = FUSEServerOptions()
        options.maxLockWaiters = limit
        // A host-side lock nothing in the session can release (an OFD lock
        // on an open file of the test's own: closing the server's fds, as a
        // reset does, cannot drop it as it would a classic fcntl lock of
        // this process).
        let l = try HostLockedFile(Fixture(server: options), contents: "locked by the host", hostLock: .ofd)
        let f = l.fixture, c = l.client
        let done = LateErrnos()
        let before = procEntries("/proc/self/task")
        var owner: UInt64 = 1
        var (node, fh) = (l.node, l.fh)
        for round in 0..<4 {
            if round > 0 {
                #expect(c.initSession().ok, "the reset (INIT again) works")
                node = c.lookup(1, "l").nodeID
                fh = c.open(node).openHandle
            }
            var deferred = 0
            var refused = 0
            for _ in 0..<(2 * limit) {
                let (handling, reply) = c.sendDeferred(SetlkwRequest(c, node: node, fh: fh, owner: owner), late: done)
                owner += 1
                if handling == .deferred { deferred += 1 } else if reply == ENOLCK { refused += 1 }
            }
            #expect(deferred == (round == 0 ? limit : 0), "round \(round): only the budget's worth wait")
            if round == 0 {
                // Reset only once they block in the kernel (a waiter still
                // on its way would find its node gone: ESTALE).
                let ino = UInt64(f.statHost("l")?.st_ino ?? 0)
                var tries = 0
                while blockedRequests(ino: ino) < limit, tries < 500 { usleep(10_000); tries += 1 }
                #expect(blockedRequests(ino: ino) == limit, "the waiters wait for the host's lock")
            }
            #expect(refused == 2 * limit - deferred, "round \(round): the rest get ENOLCK")
            #expect(f.server.lockWaiters == limit)
            #expect(procEntries("/proc/self/task") - before <= limit + 2, "round \(round): no thread beyond the budget")
        }
        // The host unlocks: every waiter gets the lock in turn (each one's
        // fd closes when its thread ends, the session that held it being
        // gone) and the budget is free again.
        try l.unlock()
        var waited = 0
        while f.server.lockWaiters > 0, waited < 500 { usleep(10_000); waited += 1 }
        #expect(f.server.lockWaiters == 0)
        #expect(done.all == [Int32](repeating: 0, count: limit), "each waiter completed once, granted")
        while procEntries("/proc/self/task") > before, waited < 1000 { usleep(10_000); waited += 1 }
        #expect(procEntries("/proc/self/task") <= before, "the waiters' threads are gone")
    }

    /// A caller with no room for another held request (a FUSE ring queue
    /// whose entries but one hold waits) refuses the deferral: the lock
    /// request is answered ENOLCK inline and its place in the server's
    /// budget comes back; an unlock, which flock(LOCK_UN) sends as a
    /// SETLKW, is answered inline and granted, refusal or not: were it
    /// deferred, the waiters it wakes could keep it from ever running.
    @Test func refusedDeferralAnswersENOLCKAndUnlocksRunInline() throws {
        var options = FUSEServerOptions()
        options.maxLockWaiters = 1
        let f = try Fixture(server: options)
        let c = f.client
        let r = c.create(1, "l")
        let done = LateErrnos()
        for flock in [false, true] {
            let lock = SetlkwRequest(c, node: r.nodeID, fh: r.createHandle, owner: 7, flock: flock)
            let (refused, errno) = c.sendDeferred(lock, late: done, refused: true)
            #expect(refused == .replied(16) && errno == ENOLCK, "flock \(flock): a refused wait is answered ENOLCK inline")
            // The budget of 1 is whole again: the next wait is admitted.
            let (admitted, _) = c.sendDeferred(SetlkwRequest(c, node: r.nodeID, fh: r.createHandle, owner: 7, flock: flock), late: done)
            #expect(admitted == .deferred, "flock \(flock): the refused wait gave its place back")
            var waited = 0
            while done.all.count < (flock ? 2 : 1), waited < 500 { usleep(10_000); waited += 1 }
            #expect(done.all.last == 0, "flock \(flock): the admitted wait is granted")
            let unlockRequest = SetlkwRequest(c, node: r.nodeID, fh: r.createHandle, owner: 7, type: F_UNLCK, flock: flock)
            let (unlock, unlockErrno) = c.sendDeferred(unlockRequest, late: done, refused: true)
            #expect(unlock == .replied(16) && unlockErrno == 0, "flock \(flock): the unlock is answered inline, granted")
        }
        #expect(done.all == [0, 0], "only the two admitted waits completed late")
    }

    /// A SETLKW that can be granted at once still goes through a waiter,
    /// and its completion carries the reply; other requests are answered
    /// inline.
    @Test func deferredFormAnswersInlineUnlessTheRequestWaits() throws {
        let f = try Fixture()
        let c = f.client
        let r = c.create(1, "l")
        let done = LateErrnos()
        #expect(c.sendDeferred(SetlkwRequest(c, node: r.nodeID, fh: r.createHandle, owner: 7), late: done).handling == .deferred)
        #expect(done.waitForOne(milliseconds: 5000) == [0])
        let b = Bytes(); b.name("l")
        let request = HostBuffer(c.header(FUSEOpcode.lookup.rawValue, node: 1, bodyLength: b.b.count) + b.b)
        let reply = HostBuffer(count: 4096)
        let inline = c.server.handle(request: request, reply: reply) { _ in Issue.record("LOOKUP must not be deferred") }
        #expect(inline == .replied(144))
    }
}
