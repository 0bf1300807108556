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
    /// that wait for a lock get threads of their own either way).
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
                handler: { chain, memory in Self.handle(chain, memory, server) },
                mayBlock: { chain, memory in Self.waitsForALock(chain, memory) },
                blockingLimit: Int(max(q.queue.size, 256)),
                refuseBlocking: { chain, memory in
                    // More waiting lock requests than the ring holds: "too
                    // many locks" (ENOLCK) instead of a stalled queue.
                    guard let request = try? chain.readableBuffers(memory), let reply = try? chain.writableBuffers(memory)
                    else { return 0 }
                    return UInt32(FUSEServer.refuse(request, with: .ENOLCK, reply: reply))
                },
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

    /// FUSE_SETLKW (opcode 33): waits until another request, perhaps
    /// queued behind it, releases a lock. Read from fuse_in_header.opcode.
    static func waitsForALock(_ chain: DescriptorChain, _ memory: GuestMemory) -> Bool {
        guard let request = try? chain.readableBuffers(memory), let opcode = try? request.bytes(at: 4, count: 4) else {
            return false
        }
        return opcode == [33, 0, 0, 0]
    }

    /// One chain, one FUSE request.
    static func handle(_ chain: DescriptorChain, _ memory: GuestMemory, _ server: any FUSERequestHandler) -> UInt32 {
        do {
            let request = try chain.readableBuffers(memory)
            let reply = try chain.writableBuffers(memory)
            return UInt32(server.handle(request: request, reply: reply))
        } catch {
            // pop() already checked every buffer; a failure here means the
            // memory map changed under us. Complete the chain empty.
            logLine("vfsvm: virtio-fs chain \(chain.id): \(error)")
            return 0
        }
    }
}
