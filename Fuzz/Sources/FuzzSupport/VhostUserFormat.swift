/// The vhost-user target's input: a sequence of front-end messages, each
/// with the fds that travel with it (SCM_RIGHTS on its first byte).
///
///     u8   request (VHOST_USER_* number, raw)
///     u8   flags: 0 version 1, 1 version 1 | NEED_REPLY, 2 raw (u32 follows),
///          3 version 1 | REPLY (a reply from the front-end: refused)
///     u16  payload length; bit 15 set: the header's size field is a raw
///          u32 that follows, not the true length
///     payload bytes
///     u8   fd count (0...3), then per fd: u8 kind (0 eventfd, 1 memfd,
///          2 pipe read end, 3 pipe write end, 4 /dev/null, 5 socket);
///          a memfd is followed by u8 size in 4 KiB pages (1...16) and
///          u8 n + n bytes written at its start
public struct VhostUserFuzzMessage {
    public enum FD: Equatable {
        case eventfd, memfd(pages: UInt8, content: [UInt8]), pipeRead, pipeWrite, devNull, socket
    }
    public var request: UInt32
    public var flagsMode: UInt8 = 0
    public var rawFlags: UInt32 = 0
    public var payload: [UInt8] = []
    public var rawSize: UInt32?
    public var fds: [FD] = []

    public init(request: UInt32, needReply: Bool = false, payload: [UInt8] = [], fds: [FD] = []) {
        self.request = request
        self.flagsMode = needReply ? 1 : 0
        self.payload = payload
        self.fds = fds
    }

    /// The header's flags word.
    public var flags: UInt32 {
        switch flagsMode & 3 {
        case 0: 1
        case 1: 1 | 1 << 3
        case 2: rawFlags
        default: 1 | 1 << 2
        }
    }

    public static func decode(_ input: inout FuzzInput) -> [VhostUserFuzzMessage] {
        var out: [VhostUserFuzzMessage] = []
        while !input.isAtEnd && out.count < 64 {
            var m = VhostUserFuzzMessage(request: UInt32(input.u8()))
            m.flagsMode = input.u8()
            if m.flagsMode & 3 == 2 { m.rawFlags = input.u32() }
            let length = input.u16()
            if length & 0x8000 != 0 { m.rawSize = input.u32() }
            m.payload = input.take(Int(length & 0x7fff))
            let count = Int(input.u8() % 4)
            for _ in 0..<count {
                switch input.u8() % 6 {
                case 0: m.fds.append(.eventfd)
                case 1:
                    let pages = input.u8() % 16 + 1
                    let n = Int(input.u8())
                    m.fds.append(.memfd(pages: pages, content: input.take(n)))
                case 2: m.fds.append(.pipeRead)
                case 3: m.fds.append(.pipeWrite)
                case 4: m.fds.append(.devNull)
                default: m.fds.append(.socket)
                }
            }
            out.append(m)
        }
        return out
    }

    public static func encode(_ messages: [VhostUserFuzzMessage]) -> [UInt8] {
        var w = FuzzInputWriter()
        for m in messages {
            w.u8(UInt8(truncatingIfNeeded: m.request))
            w.u8(m.flagsMode)
            if m.flagsMode & 3 == 2 { w.u32(m.rawFlags) }
            w.u16(UInt16(m.payload.count) | (m.rawSize != nil ? 0x8000 : 0))
            if let raw = m.rawSize { w.u32(raw) }
            w.append(m.payload)
            w.u8(UInt8(m.fds.count))
            for fd in m.fds {
                switch fd {
                case .eventfd: w.u8(0)
                case let .memfd(pages, content):
                    w.u8(1)
                    w.u8(pages &- 1)
                    w.u8(UInt8(content.count))
                    w.append(content)
                case .pipeRead: w.u8(2)
                case .pipeWrite: w.u8(3)
                case .devNull: w.u8(4)
                case .socket: w.u8(5)
                }
            }
        }
        return w.bytes
    }
}
