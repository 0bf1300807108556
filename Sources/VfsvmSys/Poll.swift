import Glibc

/// Waits until one of `fds` is readable (or hung up, in error, or not an
/// open fd: the caller's next read says which); returns which are.
/// `timeoutMilliseconds` < 0 waits forever; on timeout all are false.
public func pollReadable(_ fds: [Int32], timeoutMilliseconds: Int32 = -1) throws(SystemError) -> [Bool] {
    var entries = fds.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
    _ = try sysCall("poll") { poll(&entries, nfds_t(entries.count), timeoutMilliseconds) }
    return entries.map { $0.revents & Int16(POLLIN | POLLHUP | POLLERR | POLLNVAL) != 0 }
}
