/// Linux capabilities by name, numbered as in linux/capability.h; names as
/// in capabilities(7) without the CAP_ prefix, lower case, which is how
/// virtiofsd's `--modcaps` spells them.
public enum Capability {
    public static let names = [
        "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid",
        "setpcap", "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw",
        "ipc_lock", "ipc_owner", "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct",
        "sys_admin", "sys_boot", "sys_nice", "sys_resource", "sys_time", "sys_tty_config", "mknod",
        "lease", "audit_write", "audit_control", "setfcap", "mac_override", "mac_admin", "syslog",
        "wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore",
    ]

    public static let chown: Int32 = 0
    public static let dacOverride: Int32 = 1
    public static let dacReadSearch: Int32 = 2
    public static let fowner: Int32 = 3
    public static let fsetid: Int32 = 4
    public static let setgid: Int32 = 6
    public static let setuid: Int32 = 7
    public static let sysAdmin: Int32 = 21
    public static let mknod: Int32 = 27
    public static let setfcap: Int32 = 31

    /// The number of `name` ("sys_admin", "CAP_SYS_ADMIN", "cap_sys_admin").
    public static func number(named name: String) -> Int32? {
        var n = name.lowercased()
        if n.hasPrefix("cap_") { n.removeFirst(4) }
        return names.firstIndex(of: n).map(Int32.init)
    }
}

/// `--modcaps` / `-o modcaps=`: capabilities to keep beyond, or drop from,
/// what the share's options need, as "+sys_admin:-mknod".
public struct CapabilityChanges: Equatable, Sendable {
    public private(set) var added: Set<Int32> = []
    public private(set) var removed: Set<Int32> = []

    public init() {}

    /// Applies a list on top of earlier ones: the last word on a capability wins.
    public mutating func apply(parsing text: String) throws(ConfigError) {
        let option = "modcaps=\(text)"
        for entry in text.split(separator: ":", omittingEmptySubsequences: false) {
            guard let sign = entry.first, sign == "+" || sign == "-" else {
                throw .badOption(option, reason: "each entry starts with + or -, e.g. +sys_admin:-mknod")
            }
            let name = String(entry.dropFirst())
            guard let cap = Capability.number(named: name) else {
                throw .badOption(option, reason: "unknown capability '\(name)' (names as in capabilities(7), e.g. chown, sys_admin, mknod)")
            }
            if sign == "+" {
                added.insert(cap)
                removed.remove(cap)
            } else {
                removed.insert(cap)
                added.remove(cap)
            }
        }
    }
}

extension ServeSettings {
    /// The capabilities `vfsvm serve` keeps for this share (all others are
    /// dropped from the effective, permitted, bounding and inheritable sets).
    ///
    /// A writable share keeps what virtiofsd keeps: CHOWN (SETATTR of
    /// uid/gid), DAC_OVERRIDE (open, read and write every file), FOWNER
    /// (chmod, times and O_NOATIME on files the server does not own),
    /// FSETID (keep set-id bits as the guest set them), SETGID and SETUID
    /// (per-request fsuid/fsgid and supplementary groups), MKNOD (device
    /// nodes), SETFCAP (security.capability). A read-only share only reads:
    /// DAC_OVERRIDE (on a read-only mount it cannot write), and FOWNER for
    /// O_NOATIME opens.
    ///
    /// DAC_READ_SEARCH only with `--inode-file-handles` prefer or
    /// mandatory, for open_by_handle_at: that call opens any inode of the
    /// share's file system from a handle, which a compromised server can
    /// forge (ext4's root directory is inode 2, generation 0), wherever the
    /// sandbox's mount namespace puts its root. LINK does without it
    /// (linkat through /proc/self/fd). `modcaps` changes the result.
    public var capabilities: Set<Int32> {
        var needed: Set<Int32> = readOnly
            ? [Capability.dacOverride, Capability.fowner]
            : [Capability.chown, Capability.dacOverride, Capability.fowner, Capability.fsetid,
               Capability.setgid, Capability.setuid, Capability.mknod, Capability.setfcap]
        if inodeFileHandles != .never { needed.insert(Capability.dacReadSearch) }
        return needed.union(modcaps.added).subtracting(modcaps.removed)
    }
}
