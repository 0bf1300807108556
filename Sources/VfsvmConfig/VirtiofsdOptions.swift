/// How much the guest may cache (virtiofsd's `--cache` / `-o cache=`).
public enum CacheMode: String, CaseIterable, Sendable {
    /// No caching: every access goes to the host (FOPEN_DIRECT_IO, zero timeouts).
    case never
    /// Short timeouts; the page cache is dropped when a file changes on open.
    case auto
    /// Long timeouts, FOPEN_KEEP_CACHE: for shares nobody changes host-side.
    case always

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

    public init() {}

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
                    throw .badOption("cache=\(v)", reason: "expected never (or none), auto or always")
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
            default:
                if let row = VirtiofsdCompat.unimplemented(compat: key) { throw .unimplemented("-o \(key)", meaning: row.meaning) }
                throw .badOption(key, reason: "unknown option (known: source, cache, sandbox, xattr, no_xattr, readonly, flock, no_flock, posix_lock, no_posix_lock, writeback, no_writeback, modcaps)")
            }
        }
    }
}
