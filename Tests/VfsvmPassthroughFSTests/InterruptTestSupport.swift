import VfsvmFUSETestSupport
import Glibc
import Testing
import Synchronization
import VfsvmFUSE
import VfsvmMemory
import VfsvmSys

/// What the INTERRUPT and lock-waiter tests set up alike: a share whose
/// file "l" the client has open, and an fd of the test's own on it through
/// which the host holds the whole file (an OFD write lock, or flock
/// LOCK_EX), so that a SETLKW for it waits until the host lets go or an
/// INTERRUPT ends it. The host's lock is one the session cannot drop:
/// closing the server's fds (a reset) releases neither kind.
final class HostLockedFile {
    enum HostLock { case ofd, flock }

    let fixture: Fixture
    /// The test's own fd on "l", open whether or not it holds a lock.
    let host: FileDescriptor
    let lock: HostLock?
    let node: UInt64
    let fh: UInt64
    var client: Client { fixture.client }

    /// In `fixture`, else a share of its own; `lock` nil: the host holds
    /// nothing.
    init(_ fixture: Fixture? = nil, contents: String = "x", hostLock lock: HostLock?) throws {
        let fixture = try fixture ?? Fixture()
        self.fixture = fixture
        fixture.writeHost("l", contents)
        host = try FileDescriptor.open(fixture.path("l"), O_RDWR)
        self.lock = lock
        switch lock {
        case .ofd: _ = try host.ofdLock(.set, type: Int16(F_WRLCK), start: 0, length: 0)
        case .flock: try host.flock(LOCK_EX)
        case nil: break
        }
        node = fixture.client.lookup(1, "l").nodeID
        fh = fixture.client.open(node).openHandle
    }

    /// The host lets go, and a waiter still blocked gets the lock.
    func unlock() throws {
        switch lock {
        case .ofd: _ = try host.ofdLock(.set, type: Int16(F_UNLCK), start: 0, length: 0)
        case .flock: try host.flock(LOCK_UN)
        case nil: break
        }
    }

    /// A SETLKW for all of "l" (flock with `flock`, else POSIX).
    func setlkw(owner: UInt64, flock: Bool = false) -> SetlkwRequest {
        SetlkwRequest(client, node: node, fh: fh, owner: owner, flock: flock)
    }
}

/// A SETLKW (write lock on the whole file) built but not yet sent: its
/// unique is known first, so an INTERRUPT can name it before it goes.
struct SetlkwRequest {
    let bytes: [UInt8]
    let unique: UInt64

    init(_ c: Client, node: UInt64, fh: UInt64, owner: UInt64, type: Int32 = F_WRLCK, flock: Bool = false) {
        // fuse_lk_in: fh, owner, fuse_file_lock (start, end, type, pid), lk_flags, padding.
        let b = Bytes()
        b.u64(fh).u64(owner).u64(0).u64(0).u32(UInt32(type)).u32(1).u32(flock ? 1 : 0).u32(0)
        bytes = c.header(FUSEOpcode.setlkw.rawValue, node: node, bodyLength: b.b.count) + b.b
        var d = Decoder(bytes, at: 8)  // fuse_in_header.unique
        unique = d.u64()
    }
}

/// The errnos of the late replies to deferred requests, in the order they
/// came (0 for a granted lock).
final class LateErrnos: Sendable {
    private let errnos = Mutex<[Int32]>([])

    var all: [Int32] { errnos.withLock { $0 } }

    /// Takes one late reply: fuse_out_header.error, negated.
    func record(_ reply: [UInt8]) {
        var d = Decoder(reply)
        _ = d.u32()
        let e = -Int32(bitPattern: d.u32())
        errnos.withLock { $0.append(e) }
    }

    /// `all` once a reply came, or after `milliseconds` without one (then
    /// empty: the caller would still be blocked).
    func waitForOne(milliseconds: Int = 2000) -> [Int32] {
        var waited = 0
        while all.isEmpty && waited < milliseconds { usleep(10_000); waited += 10 }
        return all
    }
}

extension Client {
    /// Sends `request` through the deferred entry point, the errno of a
    /// late reply going to `late`; returns how it was handled and the errno
    /// of an inline reply.
    @discardableResult
    /// With `refused`, through a deferral that admits no wait (as a
    /// FUSE-over-io_uring queue with no entry to spare).
    func sendDeferred(_ request: SetlkwRequest, late: LateErrnos, refused: Bool = false) -> (handling: FUSEHandling, inlineErrno: Int32?) {
        let reply = HostBuffer(count: 4096)
        let deferral = FUSEClosureDeferral { late.record($0) }
        let handling = refused ? server.handle(request: HostBuffer(request.bytes), reply: reply, deferral: RefusingDeferral(late: deferral))
            : server.handle(request: HostBuffer(request.bytes), reply: reply, deferral: deferral)
        guard case let .replied(n) = handling, n >= 16 else { return (handling, nil) }
        var d = Decoder(reply.array)
        _ = d.u32()
        return (handling, -Int32(bitPattern: d.u32()))
    }

    /// FUSE_INTERRUPT naming the request `unique`.
    func interrupt(_ unique: UInt64) -> Reply {
        let i = Bytes(); i.u64(unique)
        return call(.interrupt, node: 0, i)
    }
}

/// A deferral that has no room: `admitsWait()` says no, so nothing is
/// ever deferred through it.
struct RefusingDeferral: FUSEReplyDeferral {
    let late: FUSEClosureDeferral
    func admitsWait() -> Bool { false }
    func deferReply() -> FUSEClosureDeferral {
        Issue.record("a refused deferral was deferred")
        return late
    }
}
