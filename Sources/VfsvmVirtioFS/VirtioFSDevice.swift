import VfsvmFUSE
import VfsvmMemory
import VfsvmSys
import VfsvmVirtio

/// Why a virtio-fs device could not be built.
public enum VirtioFSError: Error, Hashable, Sendable, CustomStringConvertible {
    case badTag(String)
    case badQueueCount(Int)
    case badQueueSize(UInt16)

    public var description: String {
        switch self {
        case let .badTag(t): "virtio-fs tag '\(t)' must be 1 to 36 bytes of UTF-8 without NUL"
        case let .badQueueCount(n): "virtio-fs needs 1 to \(VirtioFSDevice.maxRequestQueues) request queues, got \(n)"
        case let .badQueueSize(n): "virtio-fs queue size must be 1 to 32768, got \(n)"
        }
    }
}

/// The virtio-fs device (virtio 1.2, section 5.11): a FUSE server whose
/// requests arrive in virtqueues instead of /dev/fuse.
///
/// Queue 0 is `hiprio` (FORGET, BATCH_FORGET, INTERRUPT: no replies); queues
/// 1...n are request queues. Every chain is one FUSE request: its readable
/// buffers hold `fuse_in_header` + arguments, its writable buffers receive
/// `fuse_out_header` + reply, and the used length is the reply length. A
/// reply that does not fit the writable buffers becomes an error reply from
/// the FUSE core, never an overflow.
///
/// Transport-agnostic: every transport (virtio-mmio, virtio-pci, the
/// vhost-user backend) starts it through the one activation contract of
/// `VirtioDevice`, carried out by `DeviceQueues`.
public final class VirtioFSDevice: QueueRunnerDevice {
    public static let deviceID: UInt32 = 26  // VIRTIO_ID_FS
    public static let maxRequestQueues = 64
    public static let tagLength = 36

    public let tag: String
    public let requestQueues: Int
    public let queueSize: UInt16
    public let server: any FUSERequestHandler
    /// Worker threads per request queue (0: handle requests on the queue's
    /// own thread, which measured fastest with one guest vCPU; requests
    /// that wait for a lock get threads of the FUSE server's either way).
    public let poolThreads: Int
    public let deviceQueues: DeviceQueues
    /// `struct virtio_fs_config { u8 tag[36]; le32 num_request_queues; }`
    /// (linux/virtio_fs.h), built once: configuration reads copy from it.
    public let configBytes: [UInt8]

    public init(tag: String, requestQueues: Int = 1, queueSize: UInt16 = 1024, server: any FUSERequestHandler, poolThreads: Int = 0) throws(VirtioFSError) {
        let bytes = Array(tag.utf8)
        guard !bytes.isEmpty, bytes.count <= Self.tagLength, !bytes.contains(0) else { throw .badTag(tag) }
        guard (1...Self.maxRequestQueues).contains(requestQueues) else { throw .badQueueCount(requestQueues) }
        guard queueSize >= 1, queueSize <= Virtqueue.maximumSize else { throw .badQueueSize(queueSize) }
        self.tag = tag
        self.requestQueues = requestQueues
        self.queueSize = queueSize
        self.server = server
        self.poolThreads = poolThreads
        let n = UInt32(requestQueues)
        configBytes = bytes + [UInt8](repeating: 0, count: Self.tagLength - bytes.count)
            + [UInt8(n & 0xff), UInt8(n >> 8 & 0xff), UInt8(n >> 16 & 0xff), UInt8(n >> 24)]
        deviceQueues = DeviceQueues(queueCount: 1 + requestQueues) { q, memory, interrupt, onFatal throws(SystemError) in
            try QueueRunner(
                index: q.index, queue: q.queue, memory: memory, kick: q.kick, interrupt: interrupt,
                poolThreads: q.index == 0 ? 0 : poolThreads,
                requestHandler: { request in Self.handle(request, server) },
                onFatal: onFatal)
        }
    }

    // MARK: - VirtioDevice

    public var deviceType: UInt32 { Self.deviceID }

    /// VERSION_1, both ring layouts, indirect descriptors and EVENT_IDX.
    /// Not IN_ORDER: requests on one queue complete out of order when a
    /// slow one (a blocking lock) is overtaken.
    public var offeredFeatures: VirtioFeatures { [.version1, .ringPacked, .indirectDescriptors, .eventIndex] }

    public var queueMaxSizes: [UInt16] { Array(repeating: queueSize, count: 1 + requestQueues) }

    public func readConfig(offset: Int, into: UnsafeMutableRawBufferPointer) {
        readConfigBytes(configBytes, offset: offset, into: into)
    }

    /// The configuration is read-only for the driver (5.11.4.1).
    public func writeConfig(offset: Int, bytes: UnsafeRawBufferPointer) {}

    /// The first fatal driver error since the last activation, if any.
    public var fatalError: VirtqueueError? { deviceQueues.firstFailure }

    /// One chain, one FUSE request, through the server's concrete guest-memory
    /// entry point. The FUSE server decodes the request once and decides
    /// from that copy whether it waits for a lock (SETLKW); such a request
    /// runs on a thread of the server's own (one budget per server, shared
    /// with every queue) and its chain is completed from there, so a waiter
    /// never holds the queue.
    public static func handle(_ chain: ChainRequest, _ server: any FUSERequestHandler) -> ChainOutcome {
        do {
            let request = try chain.chain.readableBuffers(chain.memory)
            let reply = try chain.chain.writableBuffers(chain.memory)
            switch server.answer(request: request, reply: reply) {
            case let .replied(length): return .completed(UInt32(length))
            case let .waitsForLock(waiter):
                server.wait(waiter, late: LateChainReply(token: chain.deferCompletion(), reply: reply))
                return .deferred
            }
        } catch {
            // pop() already checked every buffer; a failure here means the
            // memory map changed under us. Complete the chain empty.
            logLine("vfsvm: virtio-fs chain \(chain.chain.id): \(error)")
            return .completed(0)
        }
    }
}

/// A deferred FUSE reply on a virtqueue: the chain is taken over only for
/// a request that waits (nothing is built for requests answered inline),
/// and the late reply is written into the chain's writable buffers and
/// completes it.
struct LateChainReply: FUSELateReply {
    let token: ChainCompletion
    let reply: GuestBufferList

    func send(_ bytes: [UInt8]) {
        token.complete { () -> UInt32 in
            do {
                try reply.write(bytes, at: 0)
                return UInt32(clamping: bytes.count)
            } catch {
                logLine("vfsvm: virtio-fs chain \(token.chainID): the late reply could not be written: \(error)")
                return 0
            }
        }
    }
}
