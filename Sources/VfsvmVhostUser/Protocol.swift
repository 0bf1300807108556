// The vhost-user wire protocol (QEMU docs/interop/vhost-user.rst): a 12-byte
// header (u32 request, u32 flags, u32 payload size, all little-endian), the
// payload, and file descriptors as SCM_RIGHTS on the header's first byte.

import VfsvmSys
import VfsvmVirtio

/// Front-end → back-end request codes ("Front-end message types").
public enum VhostUserRequest: UInt32, Sendable, CustomStringConvertible {
    case getFeatures = 1
    case setFeatures = 2
    case setOwner = 3
    case resetOwner = 4
    case setMemTable = 5
    case setLogBase = 6
    case setLogFD = 7
    case setVringNum = 8
    case setVringAddr = 9
    case setVringBase = 10
    case getVringBase = 11
    case setVringKick = 12
    case setVringCall = 13
    case setVringErr = 14
    case getProtocolFeatures = 15
    case setProtocolFeatures = 16
    case getQueueNum = 17
    case setVringEnable = 18
    case sendRARP = 19
    case netSetMTU = 20
    case setBackendReqFD = 21
    case iotlbMsg = 22
    case setVringEndian = 23
    case getConfig = 24
    case setConfig = 25
    case createCryptoSession = 26
    case closeCryptoSession = 27
    case postcopyAdvise = 28
    case postcopyListen = 29
    case postcopyEnd = 30
    case getInflightFD = 31
    case setInflightFD = 32
    case gpuSetSocket = 33
    case resetDevice = 34
    case vringKick = 35
    case getMaxMemSlots = 36
    case addMemReg = 37
    case remMemReg = 38
    case setStatus = 39
    case getStatus = 40

    public var description: String {
        switch self {
        case .getFeatures: "GET_FEATURES"
        case .setFeatures: "SET_FEATURES"
        case .setOwner: "SET_OWNER"
        case .resetOwner: "RESET_OWNER"
        case .setMemTable: "SET_MEM_TABLE"
        case .setLogBase: "SET_LOG_BASE"
        case .setLogFD: "SET_LOG_FD"
        case .setVringNum: "SET_VRING_NUM"
        case .setVringAddr: "SET_VRING_ADDR"
        case .setVringBase: "SET_VRING_BASE"
        case .getVringBase: "GET_VRING_BASE"
        case .setVringKick: "SET_VRING_KICK"
        case .setVringCall: "SET_VRING_CALL"
        case .setVringErr: "SET_VRING_ERR"
        case .getProtocolFeatures: "GET_PROTOCOL_FEATURES"
        case .setProtocolFeatures: "SET_PROTOCOL_FEATURES"
        case .getQueueNum: "GET_QUEUE_NUM"
        case .setVringEnable: "SET_VRING_ENABLE"
        case .sendRARP: "SEND_RARP"
        case .netSetMTU: "NET_SET_MTU"
        case .setBackendReqFD: "SET_BACKEND_REQ_FD"
        case .iotlbMsg: "IOTLB_MSG"
        case .setVringEndian: "SET_VRING_ENDIAN"
        case .getConfig: "GET_CONFIG"
        case .setConfig: "SET_CONFIG"
        case .createCryptoSession: "CREATE_CRYPTO_SESSION"
        case .closeCryptoSession: "CLOSE_CRYPTO_SESSION"
        case .postcopyAdvise: "POSTCOPY_ADVISE"
        case .postcopyListen: "POSTCOPY_LISTEN"
        case .postcopyEnd: "POSTCOPY_END"
        case .getInflightFD: "GET_INFLIGHT_FD"
        case .setInflightFD: "SET_INFLIGHT_FD"
        case .gpuSetSocket: "GPU_SET_SOCKET"
        case .resetDevice: "RESET_DEVICE"
        case .vringKick: "VRING_KICK"
        case .getMaxMemSlots: "GET_MAX_MEM_SLOTS"
        case .addMemReg: "ADD_MEM_REG"
        case .remMemReg: "REM_MEM_REG"
        case .setStatus: "SET_STATUS"
        case .getStatus: "GET_STATUS"
        }
    }
}

/// Header flag bits.
public enum VhostUserFlags {
    /// Bits 0-1: protocol version, always 1.
    public static let versionMask: UInt32 = 0x3
    public static let version: UInt32 = 0x1
    /// Bit 2: this message is a reply.
    public static let reply: UInt32 = 1 << 2
    /// Bit 3: the front-end wants a REPLY_ACK (when negotiated).
    public static let needReply: UInt32 = 1 << 3
}

/// Protocol feature bits (GET/SET_PROTOCOL_FEATURES).
public enum VhostUserProtocolFeature {
    public static let mq: UInt64 = 1 << 0
    public static let logSHMFD: UInt64 = 1 << 1
    public static let replyAck: UInt64 = 1 << 3
    public static let backendReq: UInt64 = 1 << 5
    public static let config: UInt64 = 1 << 9
    public static let inflightSHMFD: UInt64 = 1 << 12
    public static let resetDevice: UInt64 = 1 << 13
    public static let inbandNotifications: UInt64 = 1 << 14
    public static let configureMemSlots: UInt64 = 1 << 15
    public static let status: UInt64 = 1 << 16

    /// What this back-end implements: MQ (GET_QUEUE_NUM), REPLY_ACK,
    /// CONFIG (GET_CONFIG; SET_CONFIG is refused), RESET_DEVICE and
    /// CONFIGURE_MEM_SLOTS (GET_MAX_MEM_SLOTS, ADD_MEM_REG, REM_MEM_REG). The
    /// default offer. QEMU's vhost-user-fs-pci does not use CONFIG and warns
    /// when it is offered; leave it out of the offer for that front-end.
    public static let supported: UInt64 = mq | replyAck | config | resetDevice | configureMemSlots
}

public enum VhostUserConstants {
    /// The header: request, flags, size.
    public static let headerSize = 12
    /// VHOST_MEMORY_BASELINE_NREGIONS: regions (and fds) in one SET_MEM_TABLE.
    public static let maxMemoryRegions = 8
    /// GET_MAX_MEM_SLOTS's answer: regions ADD_MEM_REG may build up.
    public static let maxMemorySlots = 32
    /// VHOST_USER_MAX_CONFIG_SIZE.
    public static let maxConfigSize = 256
    /// The largest payload any request we accept carries (GET_CONFIG with a
    /// full 256-byte config: 12 + 256). Anything bigger is refused before
    /// it is read.
    public static let maxPayloadSize = 12 + maxConfigSize
    /// The u64 payload of SET_VRING_KICK/CALL/ERR: bits 0-7 queue index,
    /// bit 8 "no fd".
    public static let vringIndexMask: UInt64 = 0xff
    public static let vringNoFDFlag: UInt64 = 1 << 8
}

extension VirtioFeatures {
    /// VHOST_USER_F_PROTOCOL_FEATURES: a virtio-feature bit (30) the
    /// back-end sets in GET_FEATURES to say it speaks GET/SET_PROTOCOL_FEATURES.
    /// Never passed on to a device.
    public static let vhostUserProtocolFeatures = VirtioFeatures.bit(30)
}

/// One message as read off the socket, header already checked.
public struct VhostUserMessage {
    public var request: VhostUserRequest
    public var flags: UInt32
    public var payload: [UInt8]
    /// Received fds, owned: closed when the message is dropped unless a
    /// handler keeps them.
    public var fds: [FileDescriptor]

    public var needsReply: Bool { flags & VhostUserFlags.needReply != 0 }
}

// MARK: - Little-endian payload codec

/// Reads little-endian fields out of a payload whose size the caller has
/// already checked; a read past the end is a programming error of ours.
struct PayloadReader {
    let bytes: [UInt8]
    var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func u32() -> UInt32 {
        precondition(offset + 4 <= bytes.count, "payload size was validated before decoding")
        var v: UInt32 = 0
        for i in 0..<4 { v |= UInt32(bytes[offset + i]) << (8 * UInt32(i)) }
        offset += 4
        return v
    }

    mutating func u64() -> UInt64 {
        let lo = UInt64(u32())
        let hi = UInt64(u32())
        return lo | hi << 32
    }

    mutating func rest() -> [UInt8] {
        defer { offset = bytes.count }
        return Array(bytes[offset...])
    }
}

/// Appends little-endian fields.
struct PayloadWriter {
    var bytes: [UInt8] = []

    mutating func u32(_ v: UInt32) {
        for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) }
    }

    mutating func u64(_ v: UInt64) {
        u32(UInt32(truncatingIfNeeded: v))
        u32(UInt32(truncatingIfNeeded: v >> 32))
    }

    mutating func append(_ b: [UInt8]) { bytes.append(contentsOf: b) }
}

/// The 12-byte header for `request` with `flags` and `payload` after it.
func encodeMessage(request: UInt32, flags: UInt32, payload: [UInt8]) -> [UInt8] {
    var w = PayloadWriter()
    w.u32(request)
    w.u32(flags)
    w.u32(UInt32(payload.count))
    w.append(payload)
    return w.bytes
}
