import Glibc
import CVfsvmLinux

// Per-thread file-system credentials.

public enum FSCredentials {
    /// Runs `body` with this thread's credentials reduced to the caller's:
    /// fsuid/fsgid set to `uid`/`gid`, so what it creates is owned by them
    /// and permission checks are theirs, and no supplementary groups, which
    /// would otherwise count for the caller in every permission check and
    /// in whether a file created in a setgid directory keeps S_ISGID (the
    /// bug of virtiofsd's CVE-2022-0358). Restores everything afterwards.
    ///
    /// All of it is per thread: setfsuid/setfsgid are, and the groups are
    /// set with the raw setgroups system call (glibc's setgroups() would
    /// change every thread of the process). A thread without supplementary
    /// groups, the usual case for a server, saves and restores nothing.
    /// EPERM if the kernel did not take the ids (setfsuid reports failure
    /// only by not changing anything, so the result is read back).
    public static func with<R>(uid: UInt32, gid: UInt32, _ body: () throws(SystemError) -> R) throws(SystemError) -> R {
        let groupCount = try sysCall("getgroups") { vfsvm_get_thread_groups(0, nil) }
        var saved: [UInt32] = []
        if groupCount > 0 {
            saved = [UInt32](repeating: 0, count: Int(groupCount))
            // Safe: the kernel writes at most `groupCount` ids, the array's size.
            let got = try sysCall("getgroups") { saved.withUnsafeMutableBufferPointer { vfsvm_get_thread_groups(groupCount, $0.baseAddress) } }
            guard got == groupCount else { throw SystemError("getgroups (the groups changed meanwhile)", .EAGAIN) }
            _ = try sysCall("setgroups(0) for this thread") { vfsvm_set_thread_groups(0, nil) }
        }
        defer {
            // Should this fail the thread keeps fewer groups than before,
            // the safe direction.
            if groupCount > 0 { _ = vfsvm_set_thread_groups(saved.count, saved) }
        }
        let oldGid = vfsvm_setfsgid(gid)
        let oldUid = vfsvm_setfsuid(uid)
        defer {
            _ = vfsvm_setfsuid(UInt32(bitPattern: oldUid))
            _ = vfsvm_setfsgid(UInt32(bitPattern: oldGid))
        }
        // setfsuid(-1) changes nothing and returns the current id.
        guard UInt32(bitPattern: vfsvm_setfsuid(UInt32.max)) == uid,
              UInt32(bitPattern: vfsvm_setfsgid(UInt32.max)) == gid else {
            throw SystemError("setfsuid(\(uid))/setfsgid(\(gid))", .EPERM)
        }
        return try body()
    }

    /// Sets the process umask; returns the old one.
    @discardableResult
    public static func setUmask(_ mask: mode_t) -> mode_t { umask(mask) }
}
