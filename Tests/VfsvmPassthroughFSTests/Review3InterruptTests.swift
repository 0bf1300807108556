import VfsvmFUSETestSupport
import Glibc
import Testing
import VfsvmFUSE
import VfsvmPassthroughFS
import VfsvmSys

/// A SETLKW waiting behind another owner's lock must end when the kernel
/// sends FUSE_INTERRUPT for it (the caller got a signal): Linux waits for
/// the reply of a request already read uninterruptibly once a fatal signal
/// came, so a server that ignores INTERRUPT leaves the caller in D state,
/// immune to SIGKILL, for as long as the lock is held (shown on a real
/// `vfsvm mount`: python3 in fcntl(F_SETLKW) stayed D in
/// request_wait_answer after kill -9 until the holder let go).
@Suite(.serialized) struct Review3InterruptTests {
    @Test func interruptEndsAWaitingSetlkw() throws {
        let l = try HostLockedFile(contents: "locked by the host", hostLock: .ofd)
        let c = l.client
        let late = LateErrnos()
        let request = l.setlkw(owner: 7)
        #expect(c.sendDeferred(request, late: late).handling == .deferred)
        usleep(200_000)
        // FUSE_INTERRUPT (opcode 36) naming the waiting request.
        _ = c.interrupt(request.unique)
        let got = late.waitForOne()
        #expect(got == [EINTR], "the interrupted SETLKW's reply: \(got) (none: the caller stays blocked)")
        // Let the waiter finish so the test leaves no thread behind.
        try l.unlock()
        var waited = 0
        while l.fixture.server.lockWaiters > 0 && waited < 100 { usleep(20_000); waited += 1 }
    }
}
