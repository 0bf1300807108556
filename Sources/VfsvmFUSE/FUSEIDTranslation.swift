/// Maps uids (or gids) between the guest's numbering and the host's, one
/// table each way. An id no range covers maps to itself. Ranges are
/// checked not to overlap where they are made (the command line).
public struct FUSEIDMap: Sendable, Equatable {
    public enum Target: Sendable, Equatable {
        /// 1:1 onto a range starting here.
        case base(UInt32)
        /// n:1 onto this one id.
        case single(UInt32)
        /// Refused: the request fails with EPERM (guest to host only).
        case forbidden
    }

    public struct Range: Sendable, Equatable {
        public var start: UInt32
        public var count: UInt32
        public var target: Target
        public init(start: UInt32, count: UInt32, target: Target) {
            self.start = start; self.count = count; self.target = target
        }
        func contains(_ id: UInt32) -> Bool { id >= start && UInt64(id) < UInt64(start) + UInt64(count) }
        func map(_ id: UInt32) -> UInt32? {
            switch target {
            case let .base(b): b &+ (id - start)
            case let .single(t): t
            case .forbidden: nil
            }
        }
    }

    public var guestToHost: [Range]
    public var hostToGuest: [Range]

    public init(guestToHost: [Range] = [], hostToGuest: [Range] = []) {
        self.guestToHost = guestToHost; self.hostToGuest = hostToGuest
    }

    public var isIdentity: Bool { guestToHost.isEmpty && hostToGuest.isEmpty }

    /// The host id for guest `id`; nil when it is forbidden.
    public func host(forGuest id: UInt32) -> UInt32? {
        guard let r = guestToHost.first(where: { $0.contains(id) }) else { return id }
        return r.map(id)
    }

    /// The guest id for host `id`.
    public func guest(forHost id: UInt32) -> UInt32 {
        guard let r = hostToGuest.first(where: { $0.contains(id) }) else { return id }
        return r.map(id) ?? id
    }
}

/// The uid and gid maps `FUSEServer` applies (virtiofsd's
/// `--translate-uid` / `--translate-gid`): to the caller's ids and the
/// ids SETATTR sets on the way in, to the owner in every attribute reply
/// (GETATTR, SETATTR, entries, READDIRPLUS) on the way out.
public struct FUSEIDTranslation: Sendable, Equatable {
    public var uids: FUSEIDMap
    public var gids: FUSEIDMap

    public init(uids: FUSEIDMap = FUSEIDMap(), gids: FUSEIDMap = FUSEIDMap()) {
        self.uids = uids; self.gids = gids
    }

    public var isIdentity: Bool { uids.isIdentity && gids.isIdentity }

    /// `attr` with its owner in guest ids.
    public func toGuest(_ attr: FUSEAttributes) -> FUSEAttributes {
        var a = attr
        a.uid = uids.guest(forHost: attr.uid)
        a.gid = gids.guest(forHost: attr.gid)
        return a
    }

    public func toGuest(_ entry: FUSEEntry) -> FUSEEntry {
        var e = entry
        e.attributes = toGuest(entry.attributes)
        return e
    }
}
