import VfsvmMemory
import VfsvmSys
import VfsvmVirtio

/// Everything a device needs to run one queue, as the front-end set it up.
public struct VhostUserVring: Sendable, Equatable {
    public var index: Int
    public var size: UInt16
    /// Split ring: descriptor table, available ring, used ring.
    /// Packed ring: descriptor ring, driver event suppression, device event
    /// suppression. Already translated from front-end virtual addresses to
    /// guest-physical addresses; only the start address is known to be
    /// backed (the virtio core checks the whole layout).
    public var descriptorTable: GuestAddress
    public var driverArea: GuestAddress
    public var deviceArea: GuestAddress
    /// The SET_VRING_BASE value. Split ring: the next available index (bits
    /// 0-15; bits 16-31 are zero). Packed ring, as QEMU and the Linux vhost
    /// driver encode it: bits 0-14 next available index, bit 15 available
    /// wrap counter, bits 16-30 next used index, bit 31 used wrap counter.
    public var base: UInt32

    public init(index: Int, size: UInt16, descriptorTable: GuestAddress, driverArea: GuestAddress,
                deviceArea: GuestAddress, base: UInt32) {
        self.index = index
        self.size = size
        self.descriptorTable = descriptorTable
        self.driverArea = driverArea
        self.deviceArea = deviceArea
        self.base = base
    }
}

/// The device side of a vhost-user back-end: what `VhostUserBackendServer`
/// drives. All calls come from the server's connection thread, one at a time.
public protocol VhostUserDevice: AnyObject, Sendable {
    /// Virtio feature bits offered. The server adds
    /// VHOST_USER_F_PROTOCOL_FEATURES (bit 30) itself.
    var deviceFeatures: VirtioFeatures { get }
    /// Number of virtqueues (virtio-fs: 1 hiprio + request queues).
    var queueCount: Int { get }
    /// Largest queue size SET_VRING_NUM may set.
    var maxQueueSize: UInt16 { get }
    /// `count` bytes of device configuration space from `offset`; bytes past
    /// the end of the config read as zero (the server pads or cuts the
    /// result to `count`).
    func readConfig(offset: Int, count: Int) -> [UInt8]
    /// The front-end set size, addresses and base, sent a kick fd and (with
    /// protocol features) enabled the ring: start serving it. `features` are
    /// the negotiated virtio features (without bit 30); `error` is the
    /// SET_VRING_ERR eventfd, if the front-end gave one. Throwing refuses
    /// the ring; the server then drops the connection.
    func startQueue(_ vring: VhostUserVring, features: VirtioFeatures, memory: GuestMemory,
                    kick: EventFD, call: EventFD?, error: EventFD?) throws
    /// GET_VRING_BASE or SET_VRING_ENABLE(0) on a started queue: stop its
    /// worker and return its state in the `VhostUserVring.base` encoding.
    func stopQueue(_ index: Int) -> UInt32
    /// SET_VRING_CALL on a started queue: signal `call` from now on (nil:
    /// signal nothing). QEMU swaps call fds while the guest masks vectors.
    func callChanged(_ index: Int, call: EventFD?)
    /// SET_MEM_TABLE while queues run: use `memory` from now on. The ring
    /// addresses are guest-physical and do not change.
    func memoryChanged(_ memory: GuestMemory)
    /// RESET_OWNER, RESET_DEVICE or disconnect: stop every started queue (no
    /// `stopQueue` calls follow) and forget the guest memory.
    func reset()
}

/// Why the server refused a message or dropped a connection. Every case
/// says what the front-end sent.
public enum VhostUserError: Error, Equatable, Sendable, CustomStringConvertible {
    case badVersion(flags: UInt32)
    case badFlags(request: UInt32, flags: UInt32)
    case unknownRequest(UInt32)
    case unsupportedRequest(VhostUserRequest)
    case payloadTooLarge(request: UInt32, size: UInt32)
    case wrongPayloadSize(VhostUserRequest, expected: Int, got: Int)
    case wrongFDCount(VhostUserRequest, expected: Int, got: Int)
    case tooManyFDs(VhostUserRequest)
    case truncatedMessage(String)
    case badQueueIndex(VhostUserRequest, index: UInt64)
    case badQueueSize(index: Int, size: UInt32, max: UInt16)
    case badVringBase(index: Int, base: UInt32)
    case badVringFlags(index: Int, flags: UInt32)
    case badVringFDFlags(VhostUserRequest, value: UInt64)
    case notAnEventFD(VhostUserRequest, index: Int, passed: String)
    case queueRunning(VhostUserRequest, index: Int)
    case noMemoryTable(VhostUserRequest)
    case untranslatable(index: Int, what: String, userAddress: UInt64)
    case unsupportedFeatures(offered: VirtioFeatures, requested: VirtioFeatures)
    case unsupportedProtocolFeatures(offered: UInt64, requested: UInt64)
    case badMemoryTable(String)
    case badConfigAccess(offset: UInt32, size: UInt32)
    case badEnable(index: Int, value: UInt32)
    case deviceRefusedQueue(index: Int, reason: String)
    case system(SystemError)

    public var description: String {
        switch self {
        case let .badVersion(f): "header flags 0x\(String(f, radix: 16)) do not carry protocol version 1"
        case let .badFlags(r, f): "request \(r) has unexpected header flags 0x\(String(f, radix: 16))"
        case let .unknownRequest(r): "unknown request \(r)"
        case let .unsupportedRequest(r): "\(r) is not supported (its protocol feature was not offered or negotiated)"
        case let .payloadTooLarge(r, s): "request \(r) announces a \(s)-byte payload (limit \(VhostUserConstants.maxPayloadSize))"
        case let .wrongPayloadSize(r, e, g): "\(r) payload is \(g) bytes, expected \(e)"
        case let .wrongFDCount(r, e, g): "\(r) came with \(g) fds, expected \(e)"
        case let .tooManyFDs(r): "\(r) came with more fds than any request carries"
        case let .truncatedMessage(why): "truncated message: \(why)"
        case let .badQueueIndex(r, i): "\(r) names queue \(i), which does not exist"
        case let .badQueueSize(i, s, m): "queue \(i): size \(s) is not a valid queue size (1...\(m), power of two for split rings)"
        case let .badVringBase(i, b): "queue \(i): base 0x\(String(b, radix: 16)) is out of range for the ring format"
        case let .badVringFlags(i, f): "queue \(i): SET_VRING_ADDR flags 0x\(String(f, radix: 16)) (dirty logging is not supported)"
        case let .notAnEventFD(r, i, what): "\(r) for queue \(i) passed \(what), not an eventfd"
        case let .badVringFDFlags(r, v): "\(r) payload 0x\(String(v, radix: 16)) has reserved bits set or asks for polling mode"
        case let .queueRunning(r, i): "\(r) on queue \(i) while it runs"
        case let .noMemoryTable(r): "\(r) before SET_MEM_TABLE"
        case let .untranslatable(i, w, a): "queue \(i): \(w) address 0x\(String(a, radix: 16)) is in no memory region"
        case let .unsupportedFeatures(o, r): "SET_FEATURES \(r) asks for features not offered (\(o))"
        case let .unsupportedProtocolFeatures(o, r): "SET_PROTOCOL_FEATURES 0x\(String(r, radix: 16)) asks for features not offered (0x\(String(o, radix: 16)))"
        case let .badMemoryTable(why): "SET_MEM_TABLE refused: \(why)"
        case let .badConfigAccess(o, s): "config access of \(s) bytes at offset \(o) is out of range"
        case let .badEnable(i, v): "queue \(i): SET_VRING_ENABLE value \(v) is neither 0 nor 1"
        case let .deviceRefusedQueue(i, why): "queue \(i): device refused to start it: \(why)"
        case let .system(e): e.description
        }
    }
}
