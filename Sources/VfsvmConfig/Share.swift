/// Errors in user-supplied configuration: command line or config file. Each
/// says what was given and what is accepted, in one line.
public enum ConfigError: Error, Hashable, Sendable, CustomStringConvertible {
    case badShare(String, reason: String)
    case badTag(String, reason: String)
    case badOption(String, reason: String)
    case badDisk(String, reason: String)
    /// A virtiofsd option `vfsvm serve` does not implement (see
    /// `VirtiofsdCompat.unimplemented`): its spelling and what it does.
    case unimplemented(String, meaning: String)

    public var description: String {
        switch self {
        case let .badShare(s, r): "invalid share '\(s)': \(r)"
        case let .badTag(t, r): "invalid virtio-fs tag '\(t)': \(r)"
        case let .badOption(o, r): "invalid option '\(o)': \(r)"
        case let .badDisk(d, r): "invalid disk '\(d)': \(r)"
        case let .unimplemented(o, m): "vfsvm serve does not implement \(o) (virtiofsd: \(m))"
        }
    }
}

/// A virtio-fs tag: what the guest names in `mount -t virtiofs TAG /mnt`.
/// The device config space holds it as 36 bytes of UTF-8, NUL padded
/// (virtio 1.2, 5.11.4), so it must be non-empty, at most 36 bytes and
/// contain no NUL.
///
/// The kernel's virtiofs takes any bytes, but vfsvm puts the tag into
/// other people's syntax: QEMU's `-device ...,tag=TAG,...` (a ',' starts
/// another option, e.g. `romfile=/etc/shadow`), the guest's kernel command
/// line (`vfsvm.mount=TAG:/mnt/TAG`: a space starts another parameter,
/// e.g. `init=/bin/sh`), the mount point /mnt/TAG and the libvirt hook's
/// log file name. So a tag is held to what none of them treats specially:
/// ASCII letters, digits and `- _ . + @`, not starting with '-' or '.'
/// (no "..", no option-looking tag).
public struct VirtioFSTag: Hashable, Sendable, CustomStringConvertible {
    public static let maxBytes = 36
    public let value: String

    /// The accepted characters, as the sentence a refusal gives.
    public static let allowed = "ASCII letters, digits and - _ . + @, not starting with - or ."

    public init(_ value: String) throws(ConfigError) {
        let bytes = Array(value.utf8)
        guard !bytes.isEmpty else { throw .badTag(value, reason: "a tag must not be empty") }
        guard bytes.count <= Self.maxBytes else {
            throw .badTag(value, reason: "\(bytes.count) bytes of UTF-8; a tag holds at most \(Self.maxBytes)")
        }
        guard !bytes.contains(0) else { throw .badTag(value, reason: "a tag must not contain NUL") }
        if let bad = bytes.first(where: { !Self.isAllowed($0) }) {
            let shown = bad >= 0x21 && bad < 0x7f ? "'\(Character(Unicode.Scalar(bad)))'"
                : bad == 0x20 ? "a space" : "byte 0x" + (bad < 0x10 ? "0" : "") + String(bad, radix: 16)
            throw .badTag(value, reason: "it contains \(shown); a tag holds \(Self.allowed)")
        }
        guard bytes[0] != UInt8(ascii: "-"), bytes[0] != UInt8(ascii: ".") else {
            throw .badTag(value, reason: "a tag holds \(Self.allowed)")
        }
        self.value = value
    }

    private static func isAllowed(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "+"), UInt8(ascii: "@"):
            return true
        default:
            return false
        }
    }

    /// The config-space bytes: UTF-8, NUL padded to 36.
    public var configBytes: [UInt8] {
        Array(value.utf8) + [UInt8](repeating: 0, count: Self.maxBytes - value.utf8.count)
    }

    public var description: String { value }
}

/// The size of a virtio-fs DAX window (`dax=SIZE`): the device's shared
/// memory region 0 (virtio 1.2, 5.11.6.4), exposed as a 64-bit BAR. A BAR's
/// size is a power of two; the guest maps file ranges into it in 2 MiB
/// units (Linux's FUSE_DAX_SZ), so the window holds at least one.
public struct DAXWindowSize: Hashable, Sendable, CustomStringConvertible {
    public static let minimum: UInt64 = 2 << 20
    public static let maximum: UInt64 = 16 << 30
    public let bytes: UInt64

    /// Parses a whole number with an optional K, M or G suffix (bytes
    /// when none), then checks the power of two and the bounds.
    public init(parsing text: String) throws(ConfigError) {
        var digits = Substring(text)
        var unit: UInt64 = 1
        if let last = digits.last, !last.isNumber {
            switch last.lowercased() {
            case "k": unit = 1 << 10
            case "m": unit = 1 << 20
            case "g": unit = 1 << 30
            default: throw .badOption("dax=\(text)", reason: "unknown unit '\(last)': give a size with a K, M or G suffix, e.g. dax=1G")
            }
            digits = digits.dropLast()
        }
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let value = UInt64(digits) else {
            throw .badOption("dax=\(text)", reason: "expected a whole number with a K, M or G suffix, e.g. dax=1G")
        }
        let (bytes, overflow) = value.multipliedReportingOverflow(by: unit)
        guard !overflow, bytes <= Self.maximum else {
            throw .badOption("dax=\(text)", reason: "a DAX window holds at most 16G (the board's 64-bit PCI window is 64G and the BAR is aligned to its size)")
        }
        guard bytes >= Self.minimum else {
            throw .badOption("dax=\(text)", reason: "a DAX window holds at least 2M (one mapping unit)")
        }
        guard bytes & (bytes - 1) == 0 else {
            throw .badOption("dax=\(text)", reason: "a DAX window is a PCI BAR, so its size must be a power of two (e.g. 256M, 1G)")
        }
        self.bytes = bytes
    }

    public init(bytes: UInt64) { self.bytes = bytes }

    public var description: String {
        bytes % (1 << 30) == 0 ? "\(bytes >> 30)G" : "\(bytes >> 20)M"
    }
}

/// `HOSTDIR:TAG[:ro][:cache=never|auto|always][:dax=SIZE]` as given to
/// `vfsvm run --share`.
public struct ShareSpec: Hashable, Sendable {
    public let hostPath: String
    public let tag: VirtioFSTag
    public let readOnly: Bool
    /// `cache=`: nil when not given (the server's default applies).
    public let cache: CacheMode?
    /// `dax=`: the DAX window's size, nil when the share has none.
    public let dax: DAXWindowSize?

    public init(hostPath: String, tag: VirtioFSTag, readOnly: Bool = false, cache: CacheMode? = nil, dax: DAXWindowSize? = nil) {
        self.hostPath = hostPath
        self.tag = tag
        self.readOnly = readOnly
        self.cache = cache
        self.dax = dax
    }

    /// Parses `HOSTDIR:TAG` followed by any of `:ro` (or `:rw`),
    /// `:cache=MODE` and `:dax=SIZE`. The directory may itself contain ':'
    /// (the tag and options are taken from the right); it is not checked
    /// for existence here.
    public init(parsing text: String) throws(ConfigError) {
        var parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        var readOnly = false
        var cache: CacheMode?
        var dax: DAXWindowSize?
        while parts.count >= 3, let last = parts.last {
            if last == "ro" || last == "rw" {
                readOnly = last == "ro"
            } else if last.hasPrefix("cache=") {
                let name = String(last.dropFirst("cache=".count))
                guard let mode = CacheMode(named: name) else {
                    throw .badShare(text, reason: "cache=\(name): expected never, auto, always or metadata")
                }
                cache = mode
            } else if last.hasPrefix("dax=") {
                do { dax = try DAXWindowSize(parsing: String(last.dropFirst("dax=".count))) } catch {
                    guard case let .badOption(_, reason) = error else { throw error }
                    throw .badShare(text, reason: "\(last): \(reason)")
                }
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
        self.init(hostPath: path, tag: try VirtioFSTag(tagText), readOnly: readOnly, cache: cache, dax: dax)
    }
}
