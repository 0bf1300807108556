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
