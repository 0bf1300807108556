import VfsvmFUSETestSupport
import Glibc
import Testing
import VfsvmFUSE
import VfsvmPassthroughFS
import VfsvmSys

/// review4: FUSEServer answered FUSE_INTERRUPT EAGAIN whenever its request
/// was not a lock waiter, or was one still running, and relied on the
/// kernel sending it again (fs/fuse/dev.c fuse_dev_do_write →
/// queue_interrupt) to cover an INTERRUPT read before its SETLKW was
/// deferred. On `vfsvm mount` that retry never happens: the EAGAIN goes
/// out on the cloned /dev/fuse fd that read the INTERRUPT, the kernel looks
/// the request up only among those read through that fd, and the write
/// fails with ENOENT (strace of a 4-thread mount with an OPEN blocked on a
/// host lease: write(11, "\20\0\0\0\365\377\377\377\t\0...", 16) = -1
/// ENOENT). So the early INTERRUPT is lost, and with it a SIGKILLed
/// caller's way out of request_wait_answer; and where the reply did reach
/// the request's fd, it would come straight back for as long as the
/// request runs. These tests play a kernel that does not send again.
@Suite(.serialized) struct Review4InterruptTests {
    /// How often the kernel would send `target`'s INTERRUPT (at most
    /// `limit`): once, plus once per EAGAIN answer.
    private func kernelSends(_ c: Client, target: UInt64, limit: Int = 1000) -> Int {
        var sends = 0
        while sends < limit {
            sends += 1
            let r = c.interrupt(target)
            if !(r.length == 16 && r.errno == EAGAIN) { break }
        }
        return sends
    }

    /// An INTERRUPT for a request the server is running to completion (not
    /// a lock waiter) is not answered: an EAGAIN is dropped (another fd) or
    /// bounced back at once until that request ends (the request's fd).
    @Test func anInterruptForARunningRequestIsNotAnswered() throws {
        let f = try Fixture()
        let c = f.client
        // 0x1234: a unique the server never saw deferred (in flight on another
        // thread, or already answered: the server cannot tell those apart).
        let sends = kernelSends(c, target: 0x1234)
        #expect(sends == 1, "the INTERRUPT went back and forth \(sends) times (one signal, one reader thread busy while the request runs)")
    }

    /// The race an EAGAIN covered: the INTERRUPT is read (on another
    /// thread) before the SETLKW it names has been deferred. The waiter must
    /// still end with EINTR, without the kernel sending the INTERRUPT again.
    @Test func anInterruptThatOvertakesItsSetlkwStillEndsTheWait() throws {
        let l = try HostLockedFile(hostLock: .ofd)
        let c = l.client
        let request = l.setlkw(owner: 9)
        #expect(c.interrupt(request.unique).length == 0, "no reply: the INTERRUPT is kept for the request it names")
        let late = LateErrnos()
        #expect(c.sendDeferred(request, late: late).handling == .deferred)
        #expect(late.waitForOne() == [EINTR])
        try l.unlock()
    }

    /// A waiter blocked in its lock call: the INTERRUPT ends it with EINTR
    /// and is not answered. (An EAGAIN asking the kernel to send it again
    /// is lost on `vfsvm mount`: it goes out on the cloned /dev/fuse fd that
    /// read the INTERRUPT, and the kernel finds the request only among those
    /// read through the same fd - strace showed the write fail with ENOENT.)
    @Test func aBlockedWaiterIsWokenWithoutAskingForAResend() throws {
        let l = try HostLockedFile(hostLock: .flock)
        let c = l.client
        let request = l.setlkw(owner: 9, flock: true)
        let late = LateErrnos()
        #expect(c.sendDeferred(request, late: late).handling == .deferred)
        usleep(200_000)
        let r = c.interrupt(request.unique)
        #expect(r.length == 0, "an INTERRUPT reply (errno \(r.errno)) the kernel may drop")
        #expect(late.waitForOne() == [EINTR])
        try l.unlock()
    }
}
