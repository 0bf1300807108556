import VfsvmFUSETestSupport
import Glibc
import Testing
import VfsvmFUSE
import VfsvmPassthroughFS
import VfsvmSys

/// FUSE_INTERRUPT beyond review3's SETLKW case: a blocking flock waiter is
/// woken the same way; an INTERRUPT is never answered (review4: the EAGAIN
/// retry it used to ask for is dropped by the kernel on `vfsvm mount`).
@Suite(.serialized) struct InterruptTests {
    @Test func interruptEndsAWaitingFlock() throws {
        let l = try HostLockedFile(hostLock: .flock)
        let c = l.client
        let late = LateErrnos()
        let request = l.setlkw(owner: 9, flock: true)
        #expect(c.sendDeferred(request, late: late).handling == .deferred)
        usleep(200_000)
        #expect(late.all.isEmpty, "the flock waits while the host holds the lock")
        #expect(c.interrupt(request.unique).length == 0)
        #expect(late.waitForOne() == [EINTR])
        // Now the waiter has left: an INTERRUPT for it changes nothing, no
        // second reply to the SETLKW.
        _ = c.interrupt(request.unique)
        usleep(50_000)
        #expect(late.all == [EINTR])
        try l.unlock()
        // The file is not left locked by the interrupted waiter.
        #expect(c.lk(.setlk, node: l.node, fh: l.fh, owner: 1, start: 0, end: 0, type: UInt32(F_WRLCK), flock: true).ok)
    }

    @Test func interruptForAnUnknownRequestIsNotAnswered() throws {
        let f = try Fixture()
        #expect(f.client.interrupt(0xdead_beef).length == 0)
    }

    /// A SETLKW that is not blocked is not disturbed by the machinery: it
    /// takes its lock and answers 0.
    @Test func anUncontendedDeferredLockStillSucceeds() throws {
        let l = try HostLockedFile(hostLock: nil)
        let late = LateErrnos()
        #expect(l.client.sendDeferred(l.setlkw(owner: 9), late: late).handling == .deferred)
        #expect(late.waitForOne() == [0])
        #expect(throws: SystemError.self) { _ = try l.host.ofdLock(.set, type: Int16(F_WRLCK), start: 0, length: 0) }
    }
}
