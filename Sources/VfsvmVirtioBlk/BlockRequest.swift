import CVfsvmLinux
import Glibc
import Synchronization
import VfsvmMemory
import VfsvmSys
import VfsvmVirtio

/// What every request handler of one device shares.
final class BlockRequestContext: Sendable {
    let image: BlockImage
    let serial: [UInt8]
    /// Chains without a status byte seen so far (the first is logged).
    let chainsWithoutStatus = Atomic(0)
    /// Host I/O failures so far (the first few are logged).
    let hostFailures = Atomic(0)

    init(image: BlockImage, serial: [UInt8]) {
        self.image = image
        self.serial = serial
    }
}

/// The status byte (linux/virtio_blk.h).
struct BlockStatus: Hashable, Sendable {
    let rawValue: UInt8
    static let ok = BlockStatus(rawValue: UInt8(VIRTIO_BLK_S_OK))
    static let ioError = BlockStatus(rawValue: UInt8(VIRTIO_BLK_S_IOERR))
    static let unsupported = BlockStatus(rawValue: UInt8(VIRTIO_BLK_S_UNSUPP))
}

/// One virtio-blk request (virtio 1.2, 5.2.6): parsed, checked and carried
/// out against the image.
///
/// Checked, each failure answered with IOERR (or UNSUPP where the spec
/// says so) and nothing done to the file:
/// - a header shorter than 16 bytes;
/// - data in the wrong direction (device-readable data for IN or GET_ID,
///   device-writable bytes besides the status for OUT, FLUSH, DISCARD,
///   WRITE_ZEROES);
/// - IN/OUT data that is not a whole number of 512-byte sectors, or a
///   sector range that does not end inside the capacity (checked without
///   overflow);
/// - OUT, DISCARD and WRITE_ZEROES on a read-only image;
/// - DISCARD / WRITE_ZEROES segment lists that are empty, not whole
///   16-byte segments, longer than `max_*_seg`, with a segment over
///   `max_*_sectors` or outside the capacity; flags other than UNMAP
///   (UNSUPP), UNMAP on DISCARD (UNSUPP, 5.2.6.2).
/// A chain without a writable byte has nowhere for the status: it is
/// completed with length 0 and logged (once).
enum BlockRequest {
    static let headerLength = 16
    static let segmentLength = 16

    /// `stop` says the queue is stopping: long work gives up (IOERR).
    static func handle(_ chain: DescriptorChain, _ memory: GuestMemory, _ ctx: BlockRequestContext,
                       stop: () -> Bool = { false }) -> UInt32 {
        guard chain.writableLength >= 1 else {
            if ctx.chainsWithoutStatus.add(1, ordering: .relaxed).oldValue == 0 {
                logLine("vfsvm: virtio-blk chain \(chain.id) has no device-writable status byte; completed empty (further ones are not logged)")
            }
            return 0
        }
        let readable: GuestBufferList
        let writable: GuestBufferList
        do {
            readable = try chain.readableBuffers(memory)
            writable = try chain.writableBuffers(memory)
        } catch {
            // pop() checked every buffer: the memory map changed under us.
            logLine("vfsvm: virtio-blk chain \(chain.id): \(error)")
            return 0
        }
        let statusOffset = writable.byteCount - 1
        let status = perform(readable: readable, writable: writable, dataIn: statusOffset, ctx, stop: stop)
        _ = [status.rawValue].withUnsafeBytes { writable.copy($0, to: statusOffset) }
        // The status is the chain's last writable byte: the device has
        // written up to the end of the writable part.
        return UInt32(clamping: writable.byteCount)
    }

    /// The request's outcome. `dataIn` is how many writable bytes precede
    /// the status byte.
    static func perform(readable: GuestBufferList, writable: GuestBufferList, dataIn: Int, _ ctx: BlockRequestContext,
                        stop: () -> Bool) -> BlockStatus {
        var header = [UInt8](repeating: 0, count: headerLength)
        guard readable.byteCount >= headerLength else { return .ioError }
        _ = header.withUnsafeMutableBytes { readable.copy(from: 0, into: $0) }
        let type = le32(header, 0)
        let sector = le64(header, 8)
        let dataOut = readable.byteCount - headerLength
        let image = ctx.image

        switch type {
        case UInt32(VIRTIO_BLK_T_IN):
            guard dataOut == 0, let offset = range(sector, bytes: dataIn, image) else { return .ioError }
            return io(ctx, "read") { () throws(SystemError) in try image.read(into: writable, 0, at: offset, count: dataIn) }

        case UInt32(VIRTIO_BLK_T_OUT):
            guard !image.readOnly, dataIn == 0, let offset = range(sector, bytes: dataOut, image) else { return .ioError }
            return io(ctx, "write") { () throws(SystemError) in try image.write(from: readable, headerLength, at: offset, count: dataOut) }

        case UInt32(VIRTIO_BLK_T_FLUSH):
            guard dataOut == 0, dataIn == 0 else { return .ioError }
            return io(ctx, "flush") { () throws(SystemError) in try image.flush() }

        case UInt32(VIRTIO_BLK_T_GET_ID):
            guard dataOut == 0, dataIn > 0 else { return .ioError }
            let n = min(dataIn, ctx.serial.count)
            _ = ctx.serial.withUnsafeBytes { writable.copy(UnsafeRawBufferPointer(rebasing: $0[0..<n]), to: 0) }
            return .ok

        case UInt32(VIRTIO_BLK_T_DISCARD), UInt32(VIRTIO_BLK_T_WRITE_ZEROES):
            let discard = type == UInt32(VIRTIO_BLK_T_DISCARD)
            guard !image.readOnly, dataIn == 0 else { return .ioError }
            let segments: [Segment]
            switch parseSegments(readable, count: dataOut, discard: discard, image) {
            case let .success(s): segments = coalesce(s)
            case let .failure(status): return status.status
            }
            return io(ctx, discard ? "discard" : "write-zeroes") { () throws(SystemError) in
                for s in segments { try apply(s, discard: discard, image, stop: stop) }
            }

        default:
            return .unsupported
        }
    }

    // MARK: - Checks

    /// The byte offset of `sector` when `bytes` is whole sectors and
    /// `[sector, sector + bytes / 512)` lies inside the capacity.
    static func range(_ sector: UInt64, bytes: Int, _ image: BlockImage) -> Int64? {
        guard bytes >= 0, bytes % BlockImage.sectorSize == 0 else { return nil }
        return range(sector, sectors: UInt64(bytes / BlockImage.sectorSize), image)
    }

    static func range(_ sector: UInt64, sectors: UInt64, _ image: BlockImage) -> Int64? {
        let capacity = image.capacitySectors
        guard sector <= capacity, sectors <= capacity - sector else { return nil }
        return Int64(sector) * Int64(BlockImage.sectorSize)
    }

    struct Segment {
        let offset: Int64
        let length: Int64
        let unmap: Bool
    }

    struct Refusal: Error { let status: BlockStatus }

    /// The segments sorted and with overlapping or touching ranges merged,
    /// so one request costs at most the image's size however its segments
    /// repeat (32 copies of one 2 GiB range would otherwise be zeroed 32
    /// times). A merged range keeps its allocation unless every part asked
    /// for UNMAP; it reads as zeros either way.
    static func coalesce(_ segments: [Segment]) -> [Segment] {
        var out: [Segment] = []
        for s in segments.sorted(by: { $0.offset < $1.offset }) {
            if let last = out.last, s.offset <= last.offset + last.length {
                let end = max(last.offset + last.length, s.offset + s.length)
                out[out.count - 1] = Segment(offset: last.offset, length: end - last.offset, unmap: last.unmap && s.unmap)
            } else {
                out.append(s)
            }
        }
        return out
    }

    /// `struct virtio_blk_discard_write_zeroes` entries after the header.
    static func parseSegments(_ readable: GuestBufferList, count bytes: Int, discard: Bool, _ image: BlockImage) -> Result<[Segment], Refusal> {
        guard bytes > 0, bytes % segmentLength == 0 else { return .failure(Refusal(status: .ioError)) }
        let n = bytes / segmentLength
        guard n <= Int(VirtioBlockDevice.maxDiscardSegments) else { return .failure(Refusal(status: .ioError)) }
        var raw = [UInt8](repeating: 0, count: bytes)
        _ = raw.withUnsafeMutableBytes { readable.copy(from: headerLength, into: $0) }
        var out: [Segment] = []
        for i in 0..<n {
            let sector = le64(raw, i * segmentLength)
            let sectors = le32(raw, i * segmentLength + 8)
            let flags = le32(raw, i * segmentLength + 12)
            let unmap = flags & UInt32(VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) != 0
            // Reserved bits, and UNMAP on a discard (5.2.6.2), are unsupported.
            if flags & ~UInt32(VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) != 0 || (discard && unmap) {
                return .failure(Refusal(status: .unsupported))
            }
            guard sectors <= VirtioBlockDevice.maxDiscardSectors,
                  let offset = range(sector, sectors: UInt64(sectors), image) else { return .failure(Refusal(status: .ioError)) }
            out.append(Segment(offset: offset, length: Int64(sectors) * Int64(BlockImage.sectorSize), unmap: unmap))
        }
        return .success(out)
    }

    // MARK: - Effects

    /// Discard punches a hole (the range then reads as zeros); a file
    /// system that cannot punch holes ignores it, which a discard allows.
    /// Write-zeroes: a hole with UNMAP, else a zeroed range that stays
    /// allocated (see `BlockImage.zeroRange`). Either is done in steps that
    /// stop when the queue does: one request may name 32 overlapping
    /// segments of 2 GiB, which takes seconds where zeros must be written.
    static func apply(_ s: Segment, discard: Bool, _ image: BlockImage, stop: () -> Bool) throws(SystemError) {
        guard s.length > 0 else { return }
        if discard || s.unmap {
            try image.punchHole(offset: s.offset, length: s.length, mustZero: !discard, stop: stop)
        } else {
            try image.zeroRange(offset: s.offset, length: s.length, stop: stop)
        }
    }

    /// Runs a host I/O operation: OK, or IOERR with the failure logged
    /// (the first ten per device).
    static func io(_ ctx: BlockRequestContext, _ what: String, _ body: () throws(SystemError) -> Void) -> BlockStatus {
        do {
            try body()
            return .ok
        } catch {
            if ctx.hostFailures.add(1, ordering: .relaxed).oldValue < 10 {
                logLine("vfsvm: virtio-blk \(what) on \(ctx.image.path) failed: \(error)")
            }
            return .ioError
        }
    }

    static func le32(_ b: [UInt8], _ at: Int) -> UInt32 {
        (0..<4).reduce(0) { $0 | UInt32(b[at + $1]) << (8 * UInt32($1)) }
    }

    static func le64(_ b: [UInt8], _ at: Int) -> UInt64 {
        (0..<8).reduce(0) { $0 | UInt64(b[at + $1]) << (8 * UInt64($1)) }
    }
}
