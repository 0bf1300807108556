import VfsvmConfig

/// What `vfsvm libvirt-hook` does for one call of libvirt's QEMU-driver
/// hook (`/etc/libvirt/hooks/qemu DOMAIN OPERATION SUB-OPERATION EXTRA`,
/// the domain XML on stdin): start a `vfsvm serve` for each of the
/// domain's vfsvm shares at `prepare begin`, stop them at `release end`,
/// nothing otherwise.
///
/// A share is vfsvm's when a `<filesystem>` with `<driver type='virtiofs'/>`
/// and `<source socket='PATH'/>` (a daemon libvirt does not start) has an
/// entry for that PATH in the domain's metadata:
///
///     <metadata>
///       <vfsvm:shares xmlns:vfsvm='urn:x-vfsvm:libvirt-hook:1'>
///         <vfsvm:share socket='/run/vfsvm/data.sock' dir='/srv/data'
///                      cache='auto' readonly='no' xattr='off'/>
///       </vfsvm:shares>
///     </metadata>
///
/// `cache` (never/none, auto, always), `readonly` and `xattr` (yes/no,
/// on/off) and `user` (the account QEMU runs as, which gets the socket;
/// default qemu.conf's `user =`, else the socket stays root's 0600) are
/// optional.
public enum HookPlan: Equatable, Sendable {
    case start(domain: String, [HookShare])
    case stop(domain: String, [HookShare])
    /// Another operation or a domain without vfsvm shares.
    case nothing

    public static let namespace = "urn:x-vfsvm:libvirt-hook:1"

    /// Whether this call needs the domain XML at all (the others pass
    /// through without parsing it).
    public static func needsDomain(_ arguments: [String]) -> Bool {
        kind(arguments) != nil
    }

    private static func kind(_ a: [String]) -> Bool? {
        guard a.count >= 3 else { return nil }
        switch (a[1], a[2]) {
        case ("prepare", "begin"): return true
        case ("release", "end"): return false
        default: return nil
        }
    }

    /// The plan for `arguments` (as libvirt passes them, without the
    /// program name) and the domain XML from stdin.
    public static func make(arguments: [String], domainXML: [UInt8]) throws(DomainError) -> HookPlan {
        guard let starting = kind(arguments) else { return .nothing }
        let name = arguments[0]
        let what = "domain \(name)"
        let root = try XMLReader.element(from: domainXML, fileName: what)
        guard root.name == "domain" else { throw .badValue(what, ["the hook's standard input is a <\(root.name)>, not a <domain>"]) }

        var described: [String: XMLElement] = [:]
        var problems: [String] = []
        for group in root.child("metadata")?.children ?? [] where group.namespace == namespace && group.name == "shares" {
            for entry in group.children where entry.namespace == namespace && entry.name == "share" {
                guard let socket = entry["socket"], socket.hasPrefix("/") else {
                    problems.append("a <vfsvm:share> needs an absolute socket='PATH'")
                    continue
                }
                if described.updateValue(entry, forKey: socket) != nil { problems.append("two <vfsvm:share> name the socket \(socket)") }
            }
        }
        var shares: [HookShare] = []
        var used: Set<String> = []
        for fs in root.child("devices")?.children("filesystem") ?? [] {
            guard fs.child("driver")?["type"] == "virtiofs", let socket = fs.child("source")?["socket"], let entry = described[socket] else {
                continue
            }
            used.insert(socket)
            let tag = fs.child("target")?["dir"] ?? ""
            do {
                shares.append(try HookShare(entry, socket: socket, tag: tag))
            } catch {
                problems.append(error.message)
            }
        }
        for socket in described.keys.sorted() where !used.contains(socket) {
            problems.append("<vfsvm:share socket='\(socket)'> matches no <filesystem> with <source socket='\(socket)'/>")
        }
        guard problems.isEmpty else { throw .badValue(what, problems) }
        if shares.isEmpty { return .nothing }
        return starting ? .start(domain: name, shares) : .stop(domain: name, shares)
    }
}

/// One share the hook serves.
public struct HookShare: Equatable, Sendable {
    public var socket: String
    public var dir: String
    public var tag: String
    public var cache: CacheMode?
    public var readOnly = false
    public var xattr = false
    /// `user=`: who QEMU runs as, to give the socket to (else qemu.conf's
    /// `user =`; see LibvirtHook).
    public var user: String?

    public struct Problem: Error { public let message: String }

    init(_ e: XMLElement, socket: String, tag: String) throws(Problem) {
        self.socket = socket
        // The tag names the daemon's log file (and QEMU's -device option):
        // held to VirtioFSTag's characters, so no '/' or ".." in it.
        do { self.tag = try VirtioFSTag(tag).value } catch {
            throw Problem(message: "<filesystem> for socket \(socket): \(error)")
        }
        guard let dir = e["dir"], dir.hasPrefix("/") else { throw Problem(message: "<vfsvm:share socket='\(socket)'> needs an absolute dir='PATH'") }
        self.dir = dir
        if let c = e["cache"] {
            guard let mode = CacheMode(named: c) else { throw Problem(message: "<vfsvm:share socket='\(socket)'> cache='\(c)': expected never, auto or always") }
            cache = mode
        }
        user = e["user"]
        readOnly = try Self.flag(e, "readonly", socket)
        xattr = try Self.flag(e, "xattr", socket)
    }

    public init(socket: String, dir: String, tag: String, cache: CacheMode? = nil, readOnly: Bool = false, xattr: Bool = false) {
        self.socket = socket
        self.dir = dir
        self.tag = tag
        self.cache = cache
        self.readOnly = readOnly
        self.xattr = xattr
    }

    private static func flag(_ e: XMLElement, _ name: String, _ socket: String) throws(Problem) -> Bool {
        switch e[name] {
        case nil, "no", "off": return false
        case "yes", "on": return true
        case let v?: throw Problem(message: "<vfsvm:share socket='\(socket)'> \(name)='\(v)': expected yes or no")
        }
    }

    /// `vfsvm serve`'s arguments for this share.
    public var serveArguments: [String] {
        var a = ["serve", "--socket-path", socket, "--shared-dir", dir]
        if let cache { a += ["--cache", cache.rawValue] }
        if readOnly { a.append("--readonly") }
        if xattr { a.append("--xattr") }
        return a
    }

    /// Where the daemon's pid is kept: next to its socket.
    public var pidFile: String { socket + ".vfsvm.pid" }
}
