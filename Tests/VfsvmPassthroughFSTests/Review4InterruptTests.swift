import VfsvmFUSETestSupport
import Glibc
import Synchronization
import Testing
import VfsvmFUSE
import VfsvmMemory
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
private final class Errnos: Sendable {
    let m = Mutex<[Int32]>([])
    func withLock<R>(_ body: (inout [Int32]) -> R) -> R { m.withLock { body(&$0) } }
}

@Suite(.serialized) struct Review4InterruptTests {
    /// How often the kernel would send `target`'s INTERRUPT (at most
    /// `limit`): once, plus once per EAGAIN answer.
    private func kernelSends(_ c: Client, target: UInt64, limit: Int = 1000) -> Int {
        let i = Bytes(); i.u64(target)
        var sends = 0
        while sends < limit {
            sends += 1
            let r = c.call(.interrupt, node: 0, i)
            if !(r.length == 16 && r.errno == EAGAIN) { break }
        }
        return sends
    }

    private func unique(of header: [UInt8]) -> UInt64 {
        header[8..<16].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }

    private func lockBody(fh: UInt64, flock: Bool = false) -> Bytes {
        let b = Bytes()
        b.u64(fh).u64(9).u64(0).u64(0).u32(UInt32(F_WRLCK)).u32(1).u32(flock ? 1 : 0).u32(0)
        return b
    }

    private func waitFor(_ errnos: Errnos) -> [Int32] {
        var waited = 0
        while errnos.withLock({ $0.isEmpty }) && waited < 100 { usleep(20_000); waited += 1 }
        return errnos.withLock { $0 }
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
        let f = try Fixture()
        f.writeHost("l", "x")
        let host = try FileDescriptor.open(f.path("l"), O_RDWR)
        _ = try host.ofdLock(.set, type: Int16(F_WRLCK), start: 0, length: 0)
        let c = f.client
        let node = c.lookup(1, "l").nodeID
        let fh = c.open(node).openHandle
        let b = lockBody(fh: fh)
        let header = c.header(FUSEOpcode.setlkw.rawValue, node: node, bodyLength: b.b.count)
        let i = Bytes(); i.u64(unique(of: header))
        let r = c.call(.interrupt, node: 0, i)
        #expect(r.length == 0, "no reply: the INTERRUPT is kept for the request it names")
        let errnos = Errnos()
        let handling = c.server.handle(request: HostBuffer(header + b.b), reply: HostBuffer(count: 4096)) { bytes in
            var d = Decoder(bytes)
            _ = d.u32()
            errnos.withLock { $0.append(-Int32(bitPattern: d.u32())) }
        }
        #expect(handling == .deferred)
        #expect(waitFor(errnos) == [EINTR])
        _ = try host.ofdLock(.set, type: Int16(F_UNLCK), start: 0, length: 0)
    }

    /// A waiter blocked in its lock call: the INTERRUPT ends it with EINTR
    /// and is not answered. (An EAGAIN asking the kernel to send it again
    /// is lost on `vfsvm mount`: it goes out on the cloned /dev/fuse fd that
    /// read the INTERRUPT, and the kernel finds the request only among those
    /// read through the same fd - strace showed the write fail with ENOENT.)
    @Test func aBlockedWaiterIsWokenWithoutAskingForAResend() throws {
        let f = try Fixture()
        f.writeHost("l", "x")
        let host = try FileDescriptor.open(f.path("l"), O_RDWR)
        try host.flock(LOCK_EX)
        let c = f.client
        let node = c.lookup(1, "l").nodeID
        let fh = c.open(node).openHandle
        let b = lockBody(fh: fh, flock: true)
        let header = c.header(FUSEOpcode.setlkw.rawValue, node: node, bodyLength: b.b.count)
        let errnos = Errnos()
        let handling = c.server.handle(request: HostBuffer(header + b.b), reply: HostBuffer(count: 4096)) { bytes in
            var d = Decoder(bytes)
            _ = d.u32()
            errnos.withLock { $0.append(-Int32(bitPattern: d.u32())) }
        }
        #expect(handling == .deferred)
        usleep(200_000)
        let i = Bytes(); i.u64(unique(of: header))
        let r = c.call(.interrupt, node: 0, i)
        #expect(r.length == 0, "an INTERRUPT reply (errno \(r.errno)) the kernel may drop")
        #expect(waitFor(errnos) == [EINTR])
        try host.flock(LOCK_UN)
    }
}
