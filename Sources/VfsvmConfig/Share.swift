/// Errors in user-supplied configuration: command line or config file. Each
/// says what was given and what is accepted, in one line.
public enum ConfigError: Error, Hashable, Sendable, CustomStringConvertible {
    case badShare(String, reason: String)
    case badTag(String, reason: String)
    case badOption(String, reason: String)
    case badDisk(String, reason: String)

    public var description: String {
        switch self {
        case let .badShare(s, r): "invalid share '\(s)': \(r)"
        case let .badTag(t, r): "invalid virtio-fs tag '\(t)': \(r)"
        case let .badOption(o, r): "invalid option '\(o)': \(r)"
        case let .badDisk(d, r): "invalid disk '\(d)': \(r)"
        }
    }
}

/// A virtio-fs tag: what the guest names in `mount -t virtiofs TAG /mnt`.
/// The device config space holds it as 36 bytes of UTF-8, NUL padded
/// (virtio 1.2, 5.11.4), so it must be non-empty, at most 36 bytes and
/// contain no NUL.
public struct VirtioFSTag: Hashable, Sendable, CustomStringConvertible {
    public static let maxBytes = 36
    public let value: String

    public init(_ value: String) throws(ConfigError) {
        let bytes = Array(value.utf8)
        guard !bytes.isEmpty else { throw .badTag(value, reason: "a tag must not be empty") }
        guard bytes.count <= Self.maxBytes else {
            throw .badTag(value, reason: "\(bytes.count) bytes of UTF-8; a tag holds at most \(Self.maxBytes)")
        }
        guard !bytes.contains(0) else { throw .badTag(value, reason: "a tag must not contain NUL") }
        self.value = value
    }

    /// The config-space bytes: UTF-8, NUL padded to 36.
    public var configBytes: [UInt8] {
        Array(value.utf8) + [UInt8](repeating: 0, count: Self.maxBytes - value.utf8.count)
    }

    public var description: String { value }
}

/// `HOSTDIR:TAG[:ro][:cache=never|auto|always]` as given to `vfsvm run --share`.
public struct ShareSpec: Hashable, Sendable {
    public let hostPath: String
    public let tag: VirtioFSTag
    public let readOnly: Bool
    /// `cache=`: nil when not given (the server's default applies).
    public let cache: CacheMode?

    public init(hostPath: String, tag: VirtioFSTag, readOnly: Bool = false, cache: CacheMode? = nil) {
        self.hostPath = hostPath
        self.tag = tag
        self.readOnly = readOnly
        self.cache = cache
    }

    /// Parses `HOSTDIR:TAG` followed by any of `:ro` (or `:rw`) and
    /// `:cache=MODE`. The directory may itself contain ':' (the tag and
    /// options are taken from the right); it is not checked for existence
    /// here.
    public init(parsing text: String) throws(ConfigError) {
        var parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        var readOnly = false
        var cache: CacheMode?
        while parts.count >= 3, let last = parts.last {
            if last == "ro" || last == "rw" {
                readOnly = last == "ro"
            } else if last.hasPrefix("cache=") {
                let name = String(last.dropFirst("cache=".count))
                guard let mode = CacheMode(named: name) else {
                    throw .badShare(text, reason: "cache=\(name): expected never, auto or always")
                }
                cache = mode
            } else {
                break
            }
            parts.removeLast()
        }
        guard parts.count >= 2, let tagText = parts.last else {
            throw .badShare(text, reason: "expected HOSTDIR:TAG or HOSTDIR:TAG:ro")
        }
        let path = parts.dropLast().joined(separator: ":")
        guard !path.isEmpty else { throw .badShare(text, reason: "the host directory is empty") }
        self.init(hostPath: path, tag: try VirtioFSTag(tagText), readOnly: readOnly, cache: cache)
    }
}
