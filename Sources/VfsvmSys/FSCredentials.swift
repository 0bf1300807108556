import Glibc
import CVfsvmLinux

// Per-thread file-system credentials.

public enum FSCredentials {
    /// Runs `body` with this thread's fsuid/fsgid set to `uid`/`gid`, so
    /// what it creates is owned by them and permission checks are theirs;
    /// restores the previous ids afterwards. setfsuid is per thread on
    /// Linux. Throws `refused` if the kernel did not take the ids (setfsuid
    /// reports failure only by not changing anything, so the result is read
    /// back).
    public static func with<R, E: Error>(uid: UInt32, gid: UInt32, refused: @autoclosure () -> E, _ body: () throws(E) -> R) throws(E) -> R {
        let oldGid = vfsvm_setfsgid(gid)
        let oldUid = vfsvm_setfsuid(uid)
        defer {
            _ = vfsvm_setfsuid(UInt32(bitPattern: oldUid))
            _ = vfsvm_setfsgid(UInt32(bitPattern: oldGid))
        }
        // setfsuid(-1) changes nothing and returns the current id.
        guard UInt32(bitPattern: vfsvm_setfsuid(UInt32.max)) == uid,
              UInt32(bitPattern: vfsvm_setfsgid(UInt32.max)) == gid else {
            throw refused()
        }
        return try body()
    }

    /// `with(uid:gid:refused:_:)` failing with EPERM as a `SystemError`.
    public static func with<R>(uid: UInt32, gid: UInt32, _ body: () throws(SystemError) -> R) throws(SystemError) -> R {
        try with(uid: uid, gid: gid, refused: SystemError("setfsuid(\(uid))/setfsgid(\(gid))", .EPERM), body)
    }

    /// Sets the process umask; returns the old one.
    @discardableResult
    public static func setUmask(_ mask: mode_t) -> mode_t { umask(mask) }
}
