/// virtiofsd's `--xattrmap`: rules that rename, hide or refuse extended
/// attribute names between guest and host.
///
/// A rule is `SEP type SEP scope SEP key SEP prepend SEP` (SEP is the
/// rule's first character, e.g. `:prefix:all:trusted.:user.virtiofs.:`),
/// or `SEP map SEP key SEP prepend SEP`, which must come last. Rules are
/// tried in order; the first that matches decides:
///
/// - a guest name (GETXATTR, SETXATTR, REMOVEXATTR) matches a `client`
///   or `all` rule whose `key` is a prefix of it: `prefix` sends
///   `prepend + name` to the host, `ok` the name unchanged, `bad` fails
///   with EPERM, `unsupported` with EOPNOTSUPP;
/// - a host name (LISTXATTR) matches a `server` or `all` rule whose
///   `prepend` is a prefix of it: `prefix` lists it without `prepend`,
///   `ok` unchanged, `bad` and `unsupported` hide it.
///
/// A name no rule matches is refused (EPERM) or hidden: a map should end
/// with a catch-all rule. `map:KEY:PREPEND` stands for `prefix all KEY
/// PREPEND`, then (KEY not empty) `bad all PREPEND KEY` and `ok all "" ""`,
/// or (KEY empty) `bad all "" ""`.
public struct XattrNameMap: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable { case prefix, ok, bad, unsupported }

    public struct Rule: Sendable, Equatable {
        public var kind: Kind
        public var client: Bool
        public var server: Bool
        public var key: [UInt8]
        public var prepend: [UInt8]
        public init(kind: Kind, client: Bool, server: Bool, key: [UInt8], prepend: [UInt8]) {
            self.kind = kind; self.client = client; self.server = server; self.key = key; self.prepend = prepend
        }
    }

    /// A rule that cannot be parsed: which one (1-based) and why.
    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public let rule: Int
        public let reason: String
        public var description: String { "rule \(rule): \(reason)" }
    }

    /// What a guest name becomes.
    public enum ClientName: Equatable {
        case host([UInt8])
        case refused(Errno)
    }

    public let rules: [Rule]

    public init(rules: [Rule]) { self.rules = rules }

    public init(parsing text: String) throws(ParseError) {
        var chars = Array(text.utf8)[...]
        var rules: [Rule] = []
        var number = 0
        while true {
            while let c = chars.first, c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d { chars = chars.dropFirst() }
            guard let sep = chars.first else { break }
            number += 1
            chars = chars.dropFirst()
            func field() throws(ParseError) -> [UInt8] {
                guard let end = chars.firstIndex(of: sep) else {
                    throw ParseError(rule: number, reason: "unterminated: each field ends with the rule's separator '\(Character(Unicode.Scalar(sep)))'")
                }
                let f = Array(chars[..<end])
                chars = chars[(end + 1)...]
                return f
            }
            let typeName = String(decoding: try field(), as: UTF8.self)
            if typeName == "map" {
                let key = try field(), prepend = try field()
                while let c = chars.first, c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d { chars = chars.dropFirst() }
                guard chars.isEmpty else { throw ParseError(rule: number, reason: "a map rule must be the last rule") }
                rules.append(Rule(kind: .prefix, client: true, server: true, key: key, prepend: prepend))
                if key.isEmpty {
                    rules.append(Rule(kind: .bad, client: true, server: true, key: [], prepend: []))
                } else {
                    rules.append(Rule(kind: .bad, client: true, server: true, key: prepend, prepend: key))
                    rules.append(Rule(kind: .ok, client: true, server: true, key: [], prepend: []))
                }
                break
            }
            guard let kind = Kind(rawValue: typeName) else {
                throw ParseError(rule: number, reason: "unknown type '\(typeName)' (prefix, ok, bad, unsupported or map)")
            }
            let scope = String(decoding: try field(), as: UTF8.self)
            let (client, server): (Bool, Bool)
            switch scope {
            case "all": (client, server) = (true, true)
            case "client": (client, server) = (true, false)
            case "server": (client, server) = (false, true)
            default: throw ParseError(rule: number, reason: "unknown scope '\(scope)' (client, server or all)")
            }
            let key = try field(), prepend = try field()
            rules.append(Rule(kind: kind, client: client, server: server, key: key, prepend: prepend))
        }
        guard !rules.isEmpty else { throw ParseError(rule: 0, reason: "no rules") }
        if rules.contains(where: { $0.key.contains(0) || $0.prepend.contains(0) }) {
            throw ParseError(rule: 0, reason: "names cannot hold NUL")
        }
        self.rules = rules
    }

    /// The host name for guest name `name`.
    public func client(_ name: [UInt8]) -> ClientName {
        guard let r = rules.first(where: { $0.client && name.starts(with: $0.key) }) else { return .refused(.EPERM) }
        switch r.kind {
        case .prefix: return .host(r.prepend + name)
        case .ok: return .host(name)
        case .bad: return .refused(.EPERM)
        case .unsupported: return .refused(.EOPNOTSUPP)
        }
    }

    /// The guest name for host name `name`; nil: hidden.
    public func server(_ name: [UInt8]) -> [UInt8]? {
        guard let r = rules.first(where: { $0.server && name.starts(with: $0.prepend) }) else { return nil }
        switch r.kind {
        case .prefix: return Array(name.dropFirst(r.prepend.count))
        case .ok: return name
        case .bad, .unsupported: return nil
        }
    }

    /// A LISTXATTR value (NUL-terminated names) as the guest sees it.
    public func serverList(_ list: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        for name in list.split(separator: 0, omittingEmptySubsequences: true) {
            if let g = server(Array(name)) { out += g; out.append(0) }
        }
        return out
    }

    /// The host name that holds a guest's security.capability, when the
    /// map moves it elsewhere (the host kernel then no longer clears it on
    /// write, truncate and chown, so vfsvm must).
    public var remappedCapability: [UInt8]? {
        let cap = Array("security.capability".utf8)
        guard case let .host(h) = client(cap), h != cap else { return nil }
        return h
    }
}

import VfsvmSys
