import VfsvmFUSETestSupport
import Foundation
import Glibc
import Synchronization
import Testing
import VfsvmFUSE
import VfsvmMemory
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
        let f = try Fixture()
        f.writeHost("l", "locked by the host")
        let host = try FileDescriptor.open(f.path("l"), O_RDWR)
        _ = try host.ofdLock(.set, type: Int16(F_WRLCK), start: 0, length: 0)
        let c = f.client
        let node = c.lookup(1, "l").nodeID
        let fh = c.open(node).openHandle
        let errnos = Mutex<[Int32]>([])
        let b = Bytes()
        b.u64(fh).u64(7).u64(0).u64(0).u32(UInt32(F_WRLCK)).u32(1).u32(0).u32(0)
        let header = c.header(FUSEOpcode.setlkw.rawValue, node: node, bodyLength: b.b.count)
        let unique = header[8..<16].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        let handling = c.server.handle(request: HostBuffer(header + b.b), reply: HostBuffer(count: 4096)) { bytes in
            var d = Decoder(bytes)
            _ = d.u32()
            let e = -Int32(bitPattern: d.u32())
            errnos.withLock { $0.append(e) }
        }
        #expect(handling == .deferred)
        usleep(200_000)
        // FUSE_INTERRUPT (opcode 36) naming the waiting request.
        let i = Bytes(); i.u64(unique)
        _ = c.call(.interrupt, node: 0, i)
        var waited = 0
        while errnos.withLock({ $0.isEmpty }) && waited < 100 { usleep(20_000); waited += 1 }
        let got = errnos.withLock { $0 }
        #expect(got == [EINTR], "the interrupted SETLKW's reply: \(got) (none: the caller stays blocked)")
        // Let the waiter finish so the test leaves no thread behind.
        _ = try host.ofdLock(.set, type: Int16(F_UNLCK), start: 0, length: 0)
        waited = 0
        while errnos.withLock({ $0.isEmpty }) && waited < 100 { usleep(20_000); waited += 1 }
    }
}
