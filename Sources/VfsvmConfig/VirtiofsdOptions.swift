/// How much the guest may cache (virtiofsd's `--cache` / `-o cache=`).
public enum CacheMode: String, CaseIterable, Sendable {
    /// No caching: every access goes to the host (FOPEN_DIRECT_IO, zero timeouts).
    case never
    /// Short timeouts; the page cache is dropped when a file changes on open.
    case auto
    /// Long timeouts, FOPEN_KEEP_CACHE: for shares nobody changes host-side.
    case always
    /// Entries, attributes and listings cached as `always`, file data not
    /// at all (FOPEN_DIRECT_IO on every file), as virtiofsd's `metadata`.
    case metadata

    /// A mode by name; `none` is virtiofsd's (and libvirt's) name for `never`.
    public init?(named name: String) {
        if name == "none" { self = .never } else if let m = CacheMode(rawValue: name) { self = m } else { return nil }
    }
}

/// How `vfsvm serve` confines itself (virtiofsd's `--sandbox`).
public enum SandboxMode: String, CaseIterable, Sendable {
    /// Own mount namespace with the shared directory as root (the default).
    case namespace
    /// chroot(2) into the shared directory.
    case chroot
    /// No process sandbox: only the FUSE core's own confinement.
    case none
}

/// What the file server does about a system call outside its seccomp
/// allow-list (virtiofsd's `--seccomp`).
public enum SeccompMode: String, CaseIterable, Sendable {
    /// End the process by SIGSYS after one line naming the call (the
    /// default, as virtiofsd's). virtiofsd's `trap` is the same here.
    case kill
    /// Let the call run; the kernel logs it (audit).
    case log
    /// No filter.
    case none

    public init?(named name: String) {
        if name == "trap" { self = .kill } else if let m = SeccompMode(rawValue: name) { self = m } else { return nil }
    }
}

/// How the passthrough file system names inodes (virtiofsd's
/// `--inode-file-handles`).
public enum InodeFileHandles: String, CaseIterable, Sendable {
    /// By (parent, name) and O_PATH fds only: the default, as virtiofsd's.
    case never
    /// By kernel file handles where the host file system has them, else by
    /// (parent, name). Keeps CAP_DAC_READ_SEARCH, with which a compromised
    /// server could open any inode of the share's file system by a forged
    /// handle: use it only on a file system of the share's own.
    case prefer
    /// By file handles only: an inode without one is an error.
    case mandatory

    /// A mode by name; `fallback` is virtiofsd's old name for `prefer`.
    public init?(named name: String) {
        if name == "fallback" { self = .prefer } else if let m = InodeFileHandles(rawValue: name) { self = m } else { return nil }
    }
}

/// How much `vfsvm serve` logs (virtiofsd's `--log-level`).
public enum LogLevel: String, CaseIterable, Sendable, Comparable {
    case off, error, warn, info, debug, trace

    /// A level by name; `err` is the C virtiofsd's name for `error`.
    public init?(named name: String) {
        if name == "err" { self = .error } else if let l = LogLevel(rawValue: name) { self = l } else { return nil }
    }

    private var rank: Int { Self.allCases.firstIndex(of: self) ?? 0 }
    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rank < b.rank }
}

/// The `-o a,b=c` option list virtiofsd and libvirt use. Values may contain
/// commas written as ",," (libvirt doubles commas in paths).
public struct OptionList: Equatable, Sendable {
    public private(set) var entries: [(key: String, value: String?)] = []

    public init(parsing text: String) throws(ConfigError) {
        var current = ""
        var items: [String] = []
        var chars = Array(text)
        var i = 0
        while i < chars.count {
            if chars[i] == "," {
                if i + 1 < chars.count, chars[i + 1] == "," {
                    current.append(",")
                    i += 2
                    continue
                }
                items.append(current)
                current = ""
            } else {
                current.append(chars[i])
            }
            i += 1
        }
        items.append(current)
        chars.removeAll()
        for item in items {
            guard !item.isEmpty else { throw .badOption(text, reason: "empty entry in option list") }
            if let eq = item.firstIndex(of: "=") {
                let key = String(item[..<eq])
                guard !key.isEmpty else { throw .badOption(item, reason: "missing name before '='") }
                entries.append((key, String(item[item.index(after: eq)...])))
            } else {
                entries.append((item, nil))
            }
        }
    }

    /// Takes out every entry named `key` (one command's own options, such
    /// as `vfsvm mount`'s `uring`/`no_uring`); the entries taken, in order.
    public mutating func remove(_ key: String) -> [(key: String, value: String?)] {
        let taken = entries.filter { $0.key == key }
        entries.removeAll { $0.key == key }
        return taken
    }

    public static func == (a: OptionList, b: OptionList) -> Bool {
        a.entries.elementsEqual(b.entries) { $0.key == $1.key && $0.value == $1.value }
    }
}

/// The share settings `vfsvm serve` takes, from virtiofsd-style arguments:
/// `--shared-dir DIR` or `-o source=DIR`, `--cache`/`-o cache=`, `--xattr`/
/// `-o xattr`/`-o no_xattr`, `--readonly`, `--sandbox`/`-o sandbox=`, and the
/// lock options libvirt passes (`flock`, `posix_lock`, `no_flock`,
/// `no_posix_lock`), `writeback`/`no_writeback`, `modcaps=+cap:-cap`.
public struct ServeSettings: Equatable, Sendable {
    public var sharedDir: String?
    public var cache: CacheMode = .auto
    public var xattr = false
    public var readOnly = false
    public var sandbox: SandboxMode = .namespace
    public var posixLocks = true
    public var flockLocks = true
    /// Guest writeback caching (FUSE_WRITEBACK_CACHE): writes are gathered
    /// in the guest page cache; off by default, as in virtiofsd.
    public var writeback = false
    /// `-o modcaps=` / `--modcaps`: capabilities kept beyond or dropped from
    /// what the share needs (see `capabilities`).
    public var modcaps = CapabilityChanges()
    /// READDIRPLUS offered (virtiofsd's default; `--no-readdirplus` and
    /// `cache=never` turn it off).
    public var readdirplus = true
    /// FUSE_HANDLE_KILLPRIV_V2 offered: on by default (the C virtiofsd's
    /// default; the Rust virtiofsd needs `--killpriv-v2`).
    public var killprivV2 = true
    /// O_DIRECT of guest opens honoured (`--allow-direct-io`).
    public var allowDirectIO = false
    /// FUSE_DIRECT_IO_ALLOW_MMAP offered (`--allow-mmap`).
    public var allowMmap = false
    /// Mount points inside the share marked FUSE_ATTR_SUBMOUNT
    /// (`--announce-submounts`; off by default, as in virtiofsd).
    public var announceSubmounts = false
    /// O_NOATIME of guest opens kept even without CAP_FOWNER
    /// (`--preserve-noatime`).
    public var preserveNoatime = false
    /// `--inode-file-handles`. never by default, as in virtiofsd: the
    /// others keep CAP_DAC_READ_SEARCH (see `capabilities`).
    public var inodeFileHandles: InodeFileHandles = .never
    /// `-o log_level=` / `-o loglevel=` / `-o debug`; nil: not given.
    public var logLevel: LogLevel?
    /// `--translate-uid` / `--translate-gid` rules, in the order given.
    public var uidTranslation: [IDTranslationRule] = []
    public var gidTranslation: [IDTranslationRule] = []
    /// `--xattrmap` / `-o xattrmap=` rules, as given (the file server
    /// parses them); they turn xattrs on.
    /// `--posix-acl` / `-o posix_acl`: POSIX ACLs offered; turns xattrs on.
    public var posixACL = false {
        didSet { if posixACL { xattr = true } }
    }
    /// `--security-label` / `-o security_label`: FUSE_SECURITY_CTX offered,
    /// the context a guest create carries set as an xattr of the new node
    /// (through `xattrmap`); turns xattrs on.
    public var securityLabel = false {
        didSet { if securityLabel { xattr = true } }
    }
    public var xattrmap: String? {
        didSet { if xattrmap != nil { xattr = true } }
    }

    /// `-o timeout=SECONDS` (the C virtiofsd's): the entry and attribute
    /// timeout of every reply instead of the cache mode's; nil: the mode's.
    public var timeout: ReplyTimeout?

    public init() {}

    /// Whether guest O_NOATIME reaches host opens: asked for, or the
    /// server keeps CAP_FOWNER (which such opens need on files it does
    /// not own), as virtiofsd decides.
    public var keepsNoatime: Bool { preserveNoatime || capabilities.contains(Capability.fowner) }

    /// READDIRPLUS as offered to the guest: never with `cache=never`
    /// (attributes that must not be cached are not worth sending ahead).
    public var offersReaddirplus: Bool { readdirplus && cache != .never }

    /// Applies one `-o` list on top of the current settings. Unknown options
    /// are errors: silently ignoring one would serve a share differently
    /// from what the user asked.
    public mutating func apply(_ list: OptionList) throws(ConfigError) {
        for (key, value) in list.entries {
            func need() throws(ConfigError) -> String {
                guard let value, !value.isEmpty else { throw .badOption(key, reason: "needs a value: \(key)=...") }
                return value
            }
            func none() throws(ConfigError) {
                if value != nil { throw .badOption("\(key)=\(value ?? "")", reason: "takes no value") }
            }
            switch key {
            case "source": sharedDir = try need()
            case "cache":
                let v = try need()
                guard let mode = CacheMode(named: v) else {
                    throw .badOption("cache=\(v)", reason: "expected never (or none), auto, always or metadata")
                }
                cache = mode
            case "sandbox":
                let v = try need()
                guard let mode = SandboxMode(rawValue: v) else {
                    throw .badOption("sandbox=\(v)", reason: "expected namespace, chroot or none")
                }
                sandbox = mode
            case "xattr": try none(); xattr = true
            case "no_xattr": try none(); xattr = false
            case "readonly", "ro": try none(); readOnly = true
            case "flock": try none(); flockLocks = true
            case "no_flock": try none(); flockLocks = false
            case "posix_lock": try none(); posixLocks = true
            case "no_posix_lock": try none(); posixLocks = false
            case "modcaps": try modcaps.apply(parsing: need())
            case "writeback": try none(); writeback = true
            case "no_writeback": try none(); writeback = false
            case "readdirplus": try none(); readdirplus = true
            case "no_readdirplus": try none(); readdirplus = false
            case "killpriv_v2": try none(); killprivV2 = true
            case "no_killpriv_v2": try none(); killprivV2 = false
            case "allow_direct_io": try none(); allowDirectIO = true
            case "no_allow_direct_io": try none(); allowDirectIO = false
            case "announce_submounts": try none(); announceSubmounts = true
            case "xattrmap": xattrmap = try need()
            case "timeout":
                let v = try need()
                timeout = try ReplyTimeout(parsing: v) { why in .badOption("timeout=\(v)", reason: why) }
            case "posix_acl": try none(); posixACL = true
            case "no_posix_acl": try none(); posixACL = false
            case "security_label": try none(); securityLabel = true
            case "no_security_label": try none(); securityLabel = false
            case "debug": try none(); logLevel = .debug
            case "log_level", "loglevel":
                let v = try need()
                guard let level = LogLevel(named: v) else {
                    throw .badOption("\(key)=\(v)", reason: "expected off, error (or err), warn, info, debug or trace")
                }
                logLevel = level
            default:
                if let row = VirtiofsdCompat.unimplemented(compat: key) { throw .unimplemented("-o \(key)", meaning: row.meaning) }
                throw .badOption(key, reason: "unknown option (known: source, cache, sandbox, xattr, no_xattr, readonly, flock, no_flock, posix_lock, no_posix_lock, writeback, no_writeback, readdirplus, no_readdirplus, killpriv_v2, no_killpriv_v2, allow_direct_io, no_allow_direct_io, announce_submounts, posix_acl, no_posix_acl, security_label, no_security_label, xattrmap, modcaps, timeout, debug, log_level)")
            }
        }
    }
}
