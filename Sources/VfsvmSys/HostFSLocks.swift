import Glibc
import CVfsvmLinux

// OFD locks, flock(2) and classic POSIX locks.
extension FileDescriptor {
    /// An OFD lock request. `type` is F_RDLCK/F_WRLCK/F_UNLCK; `length` 0 is
    /// "to end of file". For `.get` the answer is the conflicting lock, or
    /// type F_UNLCK.
    public func ofdLock(_ command: OFDLockCommand, type: Int16, start: Int64, length: Int64)
        throws(SystemError) -> (type: Int16, start: Int64, length: Int64, pid: Int32) {
        var t = type, s = start, l = length, pid: Int32 = 0
        let cmd: Int32
        switch command {
        case .get: cmd = vfsvm_f_ofd_getlk()
        case .set: cmd = vfsvm_f_ofd_setlk()
        case .setWait: cmd = vfsvm_f_ofd_setlkw()
        }
        _ = try interruptibleCall("fcntl(OFD lock)") { vfsvm_ofd_lock(rawValue, cmd, &t, &s, &l, &pid) }
        return (t, s, l, pid)
    }

    /// flock(2).
    public func flock(_ operation: Int32) throws(SystemError) {
        _ = try interruptibleCall("flock") { vfsvm_flock(rawValue, operation) }
    }

    /// A classic (process-associated) fcntl lock: F_SETLK/F_SETLKW/F_GETLK.
    /// Returns 0 on success.
    public func posixLock(command: Int32, type: Int16, start: Int64, length: Int64) throws(SystemError) {
        _ = try sysCall("fcntl(POSIX lock)") { vfsvm_posix_lock(rawValue, command, type, start, length) }
    }
}

public enum OFDLockCommand: Sendable { case get, set, setWait }
