import VfsvmSys

/// Checks the kick, call and error fds a front-end passes
/// (SET_VRING_KICK/CALL/ERR) before adopting them: each must be an eventfd.
/// A pipe as the call fd would block the queue thread once full; a pipe
/// with no writer or a regular file as the kick fd is always "readable" and
/// would spin a core. Adopted fds are made non-blocking.
///
/// How, without /proc (the sandbox has none): every eventfd is a file on
/// the kernel's one shared anonymous inode, so its (st_dev, st_ino) equal
/// those of an eventfd of our own. Timerfds, epoll and signalfds share that
/// inode too; for the kick and error fds an 8-byte write of 0 tells them
/// apart (an eventfd adds 0 to its counter, the others refuse it with
/// EINVAL). The call fd is not probed that way (it may be KVM's irqfd, and
/// the write would inject an interrupt); if it is another anonymous file,
/// signalling it fails, which the queue logs once.
enum RingFDs {
    /// (st_dev, st_ino) of the anonymous inode eventfds live on, from an
    /// eventfd of our own (SET_VRING_* messages are few).
    private static func anonymousInode() throws(SystemError) -> (dev: UInt64, ino: UInt64) {
        let st = try EventFD().fd.stat()
        return (st.dev, st.ino)
    }

    /// `fd` as an eventfd for `request` on queue `index`, non-blocking; or
    /// the error saying what the front-end passed instead.
    static func adopt(_ fd: FileDescriptor, for request: VhostUserRequest, index: Int) throws(VhostUserError) -> EventFD {
        let st: FileStat, anon: (dev: UInt64, ino: UInt64)
        do {
            st = try fd.stat()
            anon = try anonymousInode()
        } catch { throw .system(error) }
        guard st.dev == anon.dev, st.ino == anon.ino else {
            throw .notAnEventFD(request, index: index, passed: kind(of: st))
        }
        do { try fd.setNonBlocking(true) } catch { throw .system(error) }
        if request != .setVringCall {
            do { try fd.writeAll([UInt8](repeating: 0, count: 8)) } catch {
                throw .notAnEventFD(request, index: index,
                                    passed: "an anonymous-inode file that is not an eventfd (a timerfd, epoll or signalfd refuses an eventfd write: \(error))")
            }
        }
        return EventFD(adopting: fd)
    }

    private static func kind(of st: FileStat) -> String {
        switch st.fileType {
        case 0o010000: "a pipe"
        case 0o100000: "a regular file"
        case 0o140000: "a socket"
        case 0o020000: "a character device"
        case 0o060000: "a block device"
        case 0o040000: "a directory"
        default: "a file of type 0o\(String(st.fileType, radix: 8))"
        }
    }
}
