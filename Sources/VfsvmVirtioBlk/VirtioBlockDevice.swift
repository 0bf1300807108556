import CVfsvmLinux
import VfsvmMemory
import VfsvmSys
import VfsvmVirtio

/// Why a virtio-blk device could not be built.
public enum VirtioBlockError: Error, Hashable, Sendable, CustomStringConvertible {
    case badQueueCount(Int)
    case badQueueSize(UInt16)
    case badSerial(String)

    public var description: String {
        switch self {
        case let .badQueueCount(n): "virtio-blk needs 1 to \(VirtioBlockDevice.maxRequestQueues) request queues, got \(n)"
        case let .badQueueSize(n): "virtio-blk queue size must be 4 to 32768, got \(n)"
        case let .badSerial(s): "virtio-blk serial '\(s)' must be at most \(VirtioBlockDevice.serialLength) bytes of UTF-8 without NUL"
        }
    }
}

/// virtio-blk feature bits (linux/virtio_blk.h).
extension VirtioFeatures {
    public static let blkSegMax = bit(Int(VIRTIO_BLK_F_SEG_MAX))
    public static let blkReadOnly = bit(Int(VIRTIO_BLK_F_RO))
    public static let blkBlockSize = bit(Int(VIRTIO_BLK_F_BLK_SIZE))
    public static let blkFlush = bit(Int(VIRTIO_BLK_F_FLUSH))
    public static let blkMultiQueue = bit(Int(VIRTIO_BLK_F_MQ))
    public static let blkDiscard = bit(Int(VIRTIO_BLK_F_DISCARD))
    public static let blkWriteZeroes = bit(Int(VIRTIO_BLK_F_WRITE_ZEROES))
}

/// The virtio block device (virtio 1.2, section 5.2) over a raw image file.
///
/// Every queue is a request queue (several with VIRTIO_BLK_F_MQ). A request
/// is one chain: a device-readable `virtio_blk_outhdr` (type, ioprio,
/// sector), data (device-readable for OUT, DISCARD and WRITE_ZEROES,
/// device-writable for IN and GET_ID), and a device-writable status byte,
/// the chain's last byte. See `BlockRequest` for what is checked.
///
/// Transport-agnostic, like `VirtioFSDevice`: virtio-mmio, virtio-pci and
/// the vhost-user backend start it through `DeviceQueues`.
public final class VirtioBlockDevice: QueueRunnerDevice {
    public static let deviceID = UInt32(VIRTIO_ID_BLOCK)
    public static let maxRequestQueues = 64
    public static let serialLength = Int(VIRTIO_BLK_ID_BYTES)
    /// The most sectors one DISCARD or WRITE_ZEROES segment may name, and
    /// the most segments per request.
    public static let maxDiscardSectors: UInt32 = 1 << 22  // 2 GiB
    public static let maxDiscardSegments: UInt32 = 32

    public let image: BlockImage
    public let requestQueues: Int
    public let queueSize: UInt16
    /// GET_ID's answer: at most 20 bytes, NUL padded.
    public let serial: [UInt8]
    public let deviceQueues: DeviceQueues
    /// `struct virtio_blk_config`, built once.
    public let configBytes: [UInt8]

    /// - Parameters:
    ///   - serial: the GET_ID string (default: "vfsvm" and the image's
    ///     inode number, stable across runs for one file).
    ///   - poolThreads: worker threads per queue (0: requests run on the
    ///     queue's own thread).
    public init(image: BlockImage, requestQueues: Int = 1, queueSize: UInt16 = 256, serial: String? = nil,
                poolThreads: Int = 0) throws(VirtioBlockError) {
        guard (1...Self.maxRequestQueues).contains(requestQueues) else { throw .badQueueCount(requestQueues) }
        guard queueSize >= 4, queueSize <= Virtqueue.maximumSize else { throw .badQueueSize(queueSize) }
        let id = Array((serial ?? Self.defaultSerial(image.path)).utf8)
        guard id.count <= Self.serialLength, !id.contains(0) else { throw .badSerial(serial ?? "") }
        self.image = image
        self.requestQueues = requestQueues
        self.queueSize = queueSize
        self.serial = id + [UInt8](repeating: 0, count: Self.serialLength - id.count)
        configBytes = Self.config(image: image, queues: requestQueues, queueSize: queueSize)
        let context = BlockRequestContext(image: image, serial: self.serial)
        deviceQueues = DeviceQueues(queueCount: requestQueues) { q, memory, interrupt, onFatal throws(SystemError) in
            try QueueRunner(
                index: q.index, queue: q.queue, memory: memory, kick: q.kick, interrupt: interrupt,
                poolThreads: poolThreads,
                requestHandler: { r in .completed(BlockRequest.handle(r.chain, r.memory, context, stop: { r.stopRequested })) },
                onFatal: onFatal)
        }
    }

    static func defaultSerial(_ path: String) -> String {
        var st = stat()
        return stat(path, &st) == 0 ? "vfsvm-\(st.st_ino)" : "vfsvm"
    }

    static func config(image: BlockImage, queues: Int, queueSize: UInt16) -> [UInt8] {
        var c = virtio_blk_config()
        c.capacity = image.capacitySectors
        c.seg_max = UInt32(queueSize) - 2
        c.blk_size = UInt32(BlockImage.sectorSize)
        c.num_queues = UInt16(queues)
        c.max_discard_sectors = Self.maxDiscardSectors
        c.max_discard_seg = Self.maxDiscardSegments
        c.discard_sector_alignment = 1
        c.max_write_zeroes_sectors = Self.maxDiscardSectors
        c.max_write_zeroes_seg = Self.maxDiscardSegments
        c.write_zeroes_may_unmap = 1
        // Safe: a plain C struct of integers, copied out byte for byte
        // (little-endian host, and the config is little-endian, 5.2.4).
        return withUnsafeBytes(of: &c) { Array($0) }
    }

    // MARK: - VirtioDevice

    public var deviceType: UInt32 { Self.deviceID }

    /// The blk features (RO for a read-only image, MQ for several queues),
    /// VERSION_1, both ring layouts, indirect descriptors and EVENT_IDX.
    public var offeredFeatures: VirtioFeatures {
        var f: VirtioFeatures = [.version1, .ringPacked, .indirectDescriptors, .eventIndex,
                                 .blkSegMax, .blkBlockSize, .blkFlush, .blkDiscard, .blkWriteZeroes]
        if image.readOnly { f.insert(.blkReadOnly) }
        if requestQueues > 1 { f.insert(.blkMultiQueue) }
        return f
    }

    public var queueMaxSizes: [UInt16] { Array(repeating: queueSize, count: requestQueues) }

    public func readConfig(offset: Int, into: UnsafeMutableRawBufferPointer) {
        readConfigBytes(configBytes, offset: offset, into: into)
    }

    /// Only `wce` is writable (with CONFIG_WCE), which is not offered: the
    /// device is always write-back with FLUSH, so writes are ignored.
    public func writeConfig(offset: Int, bytes: UnsafeRawBufferPointer) {}

    /// The first fatal driver error since the last activation, if any.
    public var fatalError: VirtqueueError? { deviceQueues.firstFailure }
}
