import CVfsvmLinux
import Glibc

/// Waits until one of `fds` is readable (or hung up, in error, or not an
/// open fd: the caller's next read says which); returns which are.
/// `timeoutMilliseconds` < 0 waits forever; on timeout all are false.
public func pollReadable(_ fds: [Int32], timeoutMilliseconds: Int32 = -1) throws(SystemError) -> [Bool] {
    var entries = fds.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
    _ = try sysCall("poll") { poll(&entries, nfds_t(entries.count), timeoutMilliseconds) }
    return entries.map { $0.revents & Int16(POLLIN | POLLHUP | POLLERR | POLLNVAL) != 0 }
}

/// `pollReadable` of three fds without an allocation (a queue thread's
/// wait, once per request at one in flight): bit i of the result is set
/// when fd i is ready. A negative fd is ignored (never ready).
public func pollReadable(_ a: Int32, _ b: Int32, _ c: Int32, timeoutMilliseconds: Int32 = -1) throws(SystemError) -> UInt8 {
    let events = Int16(POLLIN)
    var entries = (pollfd(fd: a, events: events, revents: 0), pollfd(fd: b, events: events, revents: 0),
                   pollfd(fd: c, events: events, revents: 0))
    _ = try sysCall("poll") {
        // Safe: a homogeneous tuple of three pollfd is laid out as an array of three.
        withUnsafeMutablePointer(to: &entries) { t in
            t.withMemoryRebound(to: pollfd.self, capacity: 3) { poll($0, 3, timeoutMilliseconds) }
        }
    }
    let ready = Int16(POLLIN | POLLHUP | POLLERR | POLLNVAL)
    return (entries.0.revents & ready != 0 ? 1 : 0) | (entries.1.revents & ready != 0 ? 2 : 0) | (entries.2.revents & ready != 0 ? 4 : 0)
}

/// Up to eight fds watched through epoll, edge-triggered: `wait` returns
/// when something was written to one of them since the last `wait` that
/// reported it, and the caller need not read the fd to re-arm it. A queue
/// thread's kick eventfd is a doorbell (the ring says what is new, not the
/// counter), so where `pollReadable` needs a poll and a read of the
/// counter per wake-up, this needs one epoll_wait. An eventfd wakes its
/// waiters on every write, so no kick is lost between a `wait` and the
/// next; the counter just grows (the kernel saturates it; a frontend's
/// 2^64 kicks are out of reach). Owned by one thread (not Sendable).
public final class EdgeTriggeredWait {
    private let epoll: FileDescriptor

    /// Watches `fds` (a negative fd is skipped); readiness of `fds[i]` is
    /// bit i of `wait`'s results. A fd already readable is reported by the
    /// first `wait`.
    public init(_ fds: [Int32]) throws(SystemError) {
        precondition(fds.count <= 8, "EdgeTriggeredWait reports at most 8 fds")
        epoll = FileDescriptor(owning: try sysCall("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) })
        for (i, fd) in fds.enumerated() where fd >= 0 {
            var event = epoll_event()
            event.events = EPOLLIN.rawValue | EPOLLET.rawValue
            event.data.u64 = UInt64(i)
            _ = try sysCall("epoll_ctl") { epoll_ctl(epoll.rawValue, EPOLL_CTL_ADD, fd, &event) }
        }
    }

    /// Stops watching `fd` (one that keeps failing).
    public func remove(_ fd: Int32) {
        _ = epoll_ctl(epoll.rawValue, EPOLL_CTL_DEL, fd, nil)
    }

    /// Blocks until at least one fd had an event (or for
    /// `timeoutMilliseconds`, when not negative: then both are 0); `ready`
    /// has bit i set for each, `failed` for those that also reported a
    /// hang-up or an error (a pipe whose writer is gone; an eventfd never
    /// does).
    public func wait(timeoutMilliseconds: Int32 = -1) throws(SystemError) -> (ready: UInt8, failed: UInt8) {
        var events = (epoll_event(), epoll_event(), epoll_event(), epoll_event())
        let n = try sysCall("epoll_wait") {
            // Safe: a homogeneous tuple of four epoll_event is laid out as an array of four.
            withUnsafeMutablePointer(to: &events) { t in
                t.withMemoryRebound(to: epoll_event.self, capacity: 4) { epoll_wait(epoll.rawValue, $0, 4, timeoutMilliseconds) }
            }
        }
        var ready: UInt8 = 0, failed: UInt8 = 0
        withUnsafePointer(to: &events) { t in
            t.withMemoryRebound(to: epoll_event.self, capacity: 4) { e in
                for k in 0..<Int(n) {
                    let bit = UInt8(1) << UInt8(truncatingIfNeeded: e[k].data.u64 & 7)
                    ready |= bit
                    if e[k].events & (EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 { failed |= bit }
                }
            }
        }
        return (ready, failed)
    }
}
