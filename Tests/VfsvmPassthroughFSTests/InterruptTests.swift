import VfsvmFUSETestSupport
import Glibc
import Synchronization
import Testing
import VfsvmFUSE
import VfsvmMemory
import VfsvmPassthroughFS
import VfsvmSys

/// FUSE_INTERRUPT beyond review3's SETLKW case: a blocking flock waiter is
/// woken the same way; an INTERRUPT is never answered (review4: the EAGAIN
/// retry it used to ask for is dropped by the kernel on `vfsvm mount`).
private final class Errnos: Sendable {
    let m = Mutex<[Int32]>([])
    func withLock<R>(_ body: (inout [Int32]) -> R) -> R { m.withLock { body(&$0) } }
}

@Suite(.serialized) struct InterruptTests {
    private func deferredLock(_ c: Client, node: UInt64, fh: UInt64, flock: Bool, errnos: Errnos) -> (FUSEHandling, UInt64) {
        let b = Bytes()
        b.u64(fh).u64(9).u64(0).u64(0).u32(UInt32(F_WRLCK)).u32(1).u32(flock ? 1 : 0).u32(0)
        let header = c.header(FUSEOpcode.setlkw.rawValue, node: node, bodyLength: b.b.count)
        let unique = header[8..<16].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        let handling = c.server.handle(request: HostBuffer(header + b.b), reply: HostBuffer(count: 4096)) { bytes in
            var d = Decoder(bytes)
            _ = d.u32()
            let e = -Int32(bitPattern: d.u32())
            errnos.withLock { $0.append(e) }
        }
        return (handling, unique)
    }

    private func waitFor(_ errnos: Errnos) -> [Int32] {
        var waited = 0
        while errnos.withLock({ $0.isEmpty }) && waited < 100 { usleep(20_000); waited += 1 }
        return errnos.withLock { $0 }
    }

    @Test func interruptEndsAWaitingFlock() throws {
        let f = try Fixture()
        f.writeHost("l", "x")
        let host = try FileDescriptor.open(f.path("l"), O_RDWR)
        try host.flock(LOCK_EX)
        let c = f.client
        let node = c.lookup(1, "l").nodeID
        let fh = c.open(node).openHandle
        let errnos = Errnos()
        let (handling, unique) = deferredLock(c, node: node, fh: fh, flock: true, errnos: errnos)
        #expect(handling == .deferred)
        usleep(200_000)
        #expect(errnos.withLock { $0 }.isEmpty, "the flock waits while the host holds the lock")
        let i = Bytes(); i.u64(unique)
        let r = c.call(.interrupt, node: 0, i)
        #expect(r.length == 0)
        #expect(waitFor(errnos) == [EINTR])
        // Now the waiter has left: an INTERRUPT for it changes nothing, no
        // second reply to the SETLKW.
        _ = c.call(.interrupt, node: 0, i)
        usleep(50_000)
        #expect(errnos.withLock { $0 } == [EINTR])
        try host.flock(LOCK_UN)
        // The file is not left locked by the interrupted waiter.
        #expect(c.lk(.setlk, node: node, fh: fh, owner: 1, start: 0, end: 0, type: UInt32(F_WRLCK), flock: true).ok)
    }

    @Test func interruptForAnUnknownRequestIsNotAnswered() throws {
        let f = try Fixture()
        let c = f.client
        let i = Bytes(); i.u64(0xdead_beef)
        let r = c.call(.interrupt, node: 0, i)
        #expect(r.length == 0)
    }

    /// A SETLKW that is not blocked is not disturbed by the machinery: it
    /// takes its lock and answers 0.
    @Test func anUncontendedDeferredLockStillSucceeds() throws {
        let f = try Fixture()
        f.writeHost("l", "x")
        let c = f.client
        let node = c.lookup(1, "l").nodeID
        let fh = c.open(node).openHandle
        let errnos = Errnos()
        let (handling, _) = deferredLock(c, node: node, fh: fh, flock: false, errnos: errnos)
        #expect(handling == .deferred)
        #expect(waitFor(errnos) == [0])
        let host = try FileDescriptor.open(f.path("l"), O_RDWR)
        #expect(throws: SystemError.self) { _ = try host.ofdLock(.set, type: Int16(F_WRLCK), start: 0, length: 0) }
    }
}
