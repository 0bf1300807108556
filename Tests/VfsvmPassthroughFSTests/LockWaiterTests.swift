import VfsvmFUSETestSupport
import Foundation
import Glibc
import Synchronization
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

    /// The errnos of the replies deferred requests completed with.
    final class Completions: Sendable {
        let errnos = Mutex<[Int32]>([])
        var all: [Int32] { errnos.withLock { $0 } }
    }

    /// Sends one SETLKW through the deferred entry point; the errno of an
    /// inline reply.
    private func setlkw(_ c: Client, node: UInt64, fh: UInt64, owner: UInt64, done: Completions,
                        type: Int32 = F_WRLCK, flock: Bool = false, refused: Bool = false) -> (FUSEHandling, Int32?) {
        let b = Bytes()
        b.u64(fh).u64(owner).u64(0).u64(UInt64(Int64.max)).u32(UInt32(type)).u32(1).u32(flock ? 1 : 0).u32(0)
        let request = HostBuffer(c.header(FUSEOpcode.setlkw.rawValue, node: node, bodyLength: b.b.count) + b.b)
        let reply = HostBuffer(count: 4096)
        let late = FUSEClosureDeferral { bytes in
            var d = Decoder(bytes)
            _ = d.u32()
            let error = -Int32(bitPattern: d.u32())
            done.errnos.withLock { $0.append(error) }
        }
        let handling = refused ? c.server.handle(request: request, reply: reply, deferral: RefusingDeferral(late: late))
            : c.server.handle(request: request, reply: reply, deferral: late)
        guard case let .replied(n) = handling else { return (handling, nil) }
        var d = Decoder(reply.array)
        _ = d.u32()
        return (handling, n >= 16 ? -Int32(bitPattern: d.u32()) : nil)
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
        let f = try Fixture(server: options)
        f.writeHost("l", "locked by the host")
        // A host-side lock nothing in the session can release (an OFD lock
        // on an open file of the test's own: closing the server's fds, as a
        // reset does, cannot drop it as it would a classic fcntl lock of
        // this process).
        let host = try FileDescriptor.open(f.path("l"), O_RDWR)
        _ = try host.ofdLock(.set, type: Int16(F_WRLCK), start: 0, length: 0)
        let done = Completions()
        let before = procEntries("/proc/self/task")
        var owner: UInt64 = 1
        for round in 0..<4 {
            if round > 0 { #expect(f.client.initSession().ok, "the reset (INIT again) works") }
            let c = f.client
            let node = c.lookup(1, "l").nodeID
            let fh = c.open(node).openHandle
            var deferred = 0
            var refused = 0
            for _ in 0..<(2 * limit) {
                let (handling, reply) = setlkw(c, node: node, fh: fh, owner: owner, done: done)
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
        _ = try host.ofdLock(.set, type: Int16(F_UNLCK), start: 0, length: 0)
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
        let done = Completions()
        for flock in [false, true] {
            let (refused, errno) = setlkw(c, node: r.nodeID, fh: r.createHandle, owner: 7, done: done, flock: flock, refused: true)
            #expect(refused == .replied(16) && errno == ENOLCK, "flock \(flock): a refused wait is answered ENOLCK inline")
            // The budget of 1 is whole again: the next wait is admitted.
            let (admitted, _) = setlkw(c, node: r.nodeID, fh: r.createHandle, owner: 7, done: done, flock: flock)
            #expect(admitted == .deferred, "flock \(flock): the refused wait gave its place back")
            var waited = 0
            while done.all.count < (flock ? 2 : 1), waited < 500 { usleep(10_000); waited += 1 }
            #expect(done.all.last == 0, "flock \(flock): the admitted wait is granted")
            let (unlock, unlockErrno) = setlkw(c, node: r.nodeID, fh: r.createHandle, owner: 7, done: done,
                                               type: F_UNLCK, flock: flock, refused: true)
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
        let done = Completions()
        let (handling, _) = setlkw(c, node: r.nodeID, fh: r.createHandle, owner: 7, done: done)
        #expect(handling == .deferred)
        var waited = 0
        while done.all.isEmpty, waited < 500 { usleep(10_000); waited += 1 }
        #expect(done.all == [0])
        let b = Bytes(); b.name("l")
        let request = HostBuffer(c.header(FUSEOpcode.lookup.rawValue, node: 1, bodyLength: b.b.count) + b.b)
        let reply = HostBuffer(count: 4096)
        let inline = c.server.handle(request: request, reply: reply) { _ in Issue.record("LOOKUP must not be deferred") }
        #expect(inline == .replied(144))
    }
}

/// A deferral that has no room: `admitsWait()` says no, so nothing is
/// ever deferred through it.
private struct RefusingDeferral: FUSEReplyDeferral {
    let late: FUSEClosureDeferral
    func admitsWait() -> Bool { false }
    func deferReply() -> FUSEClosureDeferral {
        Issue.record("a refused deferral was deferred")
        return late
    }
}
