/// One rule of `--translate-uid` / `--translate-gid` (virtiofsd's grammar):
/// `TYPE:A:B:COUNT` (`forbid-guest:A:COUNT`), where any non-alphanumeric
/// character after TYPE may stand for ':' as long as it is used throughout.
///
/// | TYPE | direction | effect |
/// |---|---|---|
/// | `map` | both | guest [A, A+COUNT) <-> host [B, B+COUNT) |
/// | `guest` | guest to host | guest [A, A+COUNT) -> host [B, B+COUNT) |
/// | `host` | host to guest | host [A, A+COUNT) -> guest [B, B+COUNT) |
/// | `squash-guest` | guest to host | guest [A, A+COUNT) -> host B |
/// | `squash-host` | host to guest | host [A, A+COUNT) -> guest B |
/// | `forbid-guest` | guest to host | guest [A, A+COUNT): EPERM |
///
/// Ids no rule covers pass unchanged, in either direction.
public struct IDTranslationRule: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: String, CaseIterable, Sendable {
        case map, guest, host
        case squashGuest = "squash-guest"
        case squashHost = "squash-host"
        case forbidGuest = "forbid-guest"
    }

    public let kind: Kind
    /// The first id of the source range.
    public let from: UInt32
    /// The first id of the target range, or the one target of a squash
    /// (0 for forbid-guest).
    public let to: UInt32
    public let count: UInt32

    public init(kind: Kind, from: UInt32, to: UInt32, count: UInt32) {
        self.kind = kind; self.from = from; self.to = to; self.count = count
    }

    /// Parses one rule; `option` names the option in errors.
    public init(parsing text: String, option: String = "--translate-uid") throws(ConfigError) {
        let bad = { (reason: String) in ConfigError.badOption("\(option) \(text)", reason: reason) }
        let typeText = String(text.prefix { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" })
        let rest = text.dropFirst(typeText.count)
        guard let kind = Kind(rawValue: typeText.lowercased()) else {
            throw bad("unknown rule type '\(typeText)' (map, guest, host, squash-guest, squash-host or forbid-guest), e.g. map:0:1000:1")
        }
        guard let separator = rest.first else { throw bad("expected \(kind.rawValue):A:B:COUNT, e.g. map:0:1000:1") }
        let fields = rest.dropFirst().split(separator: separator, omittingEmptySubsequences: false)
        let want = kind == .forbidGuest ? 2 : 3
        guard fields.count == want else {
            throw bad(kind == .forbidGuest ? "expected forbid-guest:A:COUNT" : "expected \(kind.rawValue):A:B:COUNT (\(want) numbers after the type, got \(fields.count))")
        }
        var numbers: [UInt32] = []
        for f in fields {
            guard !f.isEmpty, f.allSatisfy({ $0.isASCII && $0.isNumber }), let n = UInt32(f) else {
                throw bad("'\(f)' is not an id (a whole number from 0 to 4294967295)")
            }
            numbers.append(n)
        }
        let count = numbers[want - 1]
        let from = numbers[0], to = kind == .forbidGuest ? 0 : numbers[1]
        guard count > 0 else { throw bad("COUNT must be at least 1") }
        guard UInt64(from) + UInt64(count) <= 1 << 32 else { throw bad("the range \(from)+\(count) passes 4294967295") }
        if kind == .map || kind == .guest || kind == .host {
            guard UInt64(to) + UInt64(count) <= 1 << 32 else { throw bad("the range \(to)+\(count) passes 4294967295") }
        }
        self.init(kind: kind, from: from, to: to, count: count)
    }

    /// Guest ids this rule maps toward the host, if any.
    public var guestRange: Range<UInt64>? {
        switch kind {
        case .map, .guest, .squashGuest, .forbidGuest: UInt64(from)..<UInt64(from) + UInt64(count)
        case .host, .squashHost: nil
        }
    }

    /// Host ids this rule maps toward the guest, if any.
    public var hostRange: Range<UInt64>? {
        switch kind {
        case .map: UInt64(to)..<UInt64(to) + UInt64(count)
        case .host, .squashHost: UInt64(from)..<UInt64(from) + UInt64(count)
        case .guest, .squashGuest, .forbidGuest: nil
        }
    }

    public var description: String {
        kind == .forbidGuest ? "forbid-guest:\(from):\(count)" : "\(kind.rawValue):\(from):\(to):\(count)"
    }

    /// Checks that no two rules map the same guest id toward the host or
    /// the same host id toward the guest (virtiofsd refuses that too).
    public static func checkOverlaps(_ rules: [IDTranslationRule], option: String) throws(ConfigError) {
        for (i, a) in rules.enumerated() {
            for b in rules[..<i] {
                if let x = a.guestRange, let y = b.guestRange, x.overlaps(y) {
                    throw .badOption("\(option) \(a)", reason: "maps guest ids that \(b) maps already")
                }
                if let x = a.hostRange, let y = b.hostRange, x.overlaps(y) {
                    throw .badOption("\(option) \(a)", reason: "maps host ids that \(b) maps already")
                }
            }
        }
    }
}
