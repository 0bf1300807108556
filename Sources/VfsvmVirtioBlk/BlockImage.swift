import CVfsvmLinux
import CVfsvmURing
import Glibc
import Synchronization
import VfsvmMemory
import VfsvmSys

/// Why a disk image could not be opened.
public enum BlockImageError: Error, Hashable, Sendable, CustomStringConvertible {
    case open(path: String, SystemError)
    case notRegular(path: String)
    case tooSmall(path: String, bytes: Int64)

    public var description: String {
        switch self {
        case let .open(path, e): "cannot open disk image \(path): \(e.errno)"
        case let .notRegular(path): "disk image \(path) is not a regular file"
        case let .tooSmall(path, bytes): "disk image \(path) holds \(bytes) bytes, less than one 512-byte sector"
        }
    }
}

/// Which engine moves the bytes.
public enum BlockEngineKind: String, Hashable, Sendable {
    /// io_uring (liburing), one ring per thread.
    case ioURing = "io_uring"
    /// preadv/pwritev/fdatasync on the calling thread.
    case sync
}

/// A raw disk image: the host file behind a virtio-blk device, its size in
/// 512-byte sectors, and the I/O engine that reads and writes it.
///
/// The file is opened twice when the host file system does direct I/O: an
/// O_DIRECT fd for requests whose guest buffers and offsets meet the file
/// system's direct-I/O alignment (statx STATX_DIOALIGN), and a buffered fd
/// for the rest (and for every request where O_DIRECT cannot be had, tmpfs
/// for one). Linux keeps the two coherent: a direct transfer first writes
/// back and then invalidates the page cache over its range.
///
/// Every transfer is bounded by the caller to `[0, capacityBytes)`.
public final class BlockImage: Sendable {
    public static let sectorSize = 512

    public let path: String
    public let readOnly: Bool
    /// Whole sectors in the file when it was opened (a partial last sector
    /// is never read or written).
    public let capacitySectors: UInt64
    public let engine: BlockEngineKind
    /// The alignment (bytes) direct I/O needs for memory and file offsets,
    /// nil when the image has no O_DIRECT fd.
    public let directAlignment: (memory: Int, offset: Int)?
    private let buffered: FileDescriptor
    private let direct: FileDescriptor?
    private let transfers = Atomic(0), directTransfers = Atomic(0), zeroed = Atomic(0)

    public var capacityBytes: Int64 { Int64(capacitySectors) * Int64(Self.sectorSize) }
    public var usesDirectIO: Bool { direct != nil }
    /// Reads and writes so far, and how many of them went through O_DIRECT.
    public var transferCounts: (all: Int, direct: Int) { (transfers.load(ordering: .relaxed), directTransfers.load(ordering: .relaxed)) }
    /// Bytes zeroed or punched so far by write-zeroes and discard.
    public var zeroedBytes: Int { zeroed.load(ordering: .relaxed) }

    /// Opens `path` read-write (or read-only), with O_DIRECT unless
    /// `direct` is false or the file system refuses it, through io_uring
    /// unless `engine` says `.sync` or the kernel refuses io_uring.
    public init(path: String, readOnly: Bool, direct wantDirect: Bool = true, engine wanted: BlockEngineKind = .ioURing) throws(BlockImageError) {
        let mode = readOnly ? O_RDONLY : O_RDWR
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(path, mode) } catch { throw .open(path: path, error) }
        var st = stat()
        guard fstat(fd.rawValue, &st) == 0 else { throw .open(path: path, SystemError("fstat", Errno.current)) }
        guard st.st_mode & S_IFMT == S_IFREG else { throw .notRegular(path: path) }
        guard st.st_size >= Int64(Self.sectorSize) else { throw .tooSmall(path: path, bytes: Int64(st.st_size)) }
        self.path = path
        self.readOnly = readOnly
        capacitySectors = UInt64(st.st_size) / UInt64(Self.sectorSize)
        buffered = fd

        var directFD: FileDescriptor?
        var alignment: (memory: Int, offset: Int)?
        if wantDirect, let d = Self.reopenDirect(fd, path: path, mode: mode, st) {
            var mem: UInt32 = 0, off: UInt32 = 0
            if vfsvm_dio_alignment(d.rawValue, &mem, &off) == 0, mem > 0, off > 0, off <= UInt32(Self.sectorSize) {
                directFD = d
                alignment = (Int(mem), Int(off))
            }
        }
        direct = directFD
        directAlignment = alignment
        engine = wanted == .ioURing && vfsvm_uring_available() == 1 ? .ioURing : .sync
    }

    /// The image opened a second time with O_DIRECT, and certainly the same
    /// inode: through /proc/self/fd (even if the path was renamed or
    /// replaced since the first open), or by path where /proc is missing,
    /// kept only if it is the file `st` describes.
    static func reopenDirect(_ fd: FileDescriptor, path: String, mode: Int32, _ st: stat) -> FileDescriptor? {
        if let d = try? FileDescriptor.open("/proc/self/fd/\(fd.rawValue)", mode | vfsvm_o_direct()) { return d }
        guard let d = try? FileDescriptor.open(path, mode | vfsvm_o_direct()) else { return nil }
        var again = stat()
        guard fstat(d.rawValue, &again) == 0, again.st_dev == st.st_dev, again.st_ino == st.st_ino else { return nil }
        return d
    }

    /// Reads `count` bytes at `offset` of the image into
    /// `buffer[bufferOffset..<bufferOffset + count]`. Short only at end of
    /// file (the file shrank under us): the rest is then zeroed, as a
    /// sparse tail reads.
    func read(into buffer: some ScatterGatherList, _ bufferOffset: Int, at offset: Int64, count: Int) throws(SystemError) {
        var done = try transfer(write: false, buffer, bufferOffset, offset, count)
        while done < count {
            let n = Self.zeros.withUnsafeBytes { z in
                buffer.copy(UnsafeRawBufferPointer(rebasing: z[0..<min(z.count, count - done)]), to: bufferOffset + done)
            }
            if n == 0 { break }
            done += n
        }
    }

    /// Writes `buffer[bufferOffset..<bufferOffset + count]` at `offset`; a
    /// short write is an error.
    func write(from buffer: some ScatterGatherList, _ bufferOffset: Int, at offset: Int64, count: Int) throws(SystemError) {
        let done = try transfer(write: true, buffer, bufferOffset, offset, count)
        if done < count { throw SystemError("pwritev", .ENOSPC) }
    }

    private static let zeros = [UInt8](repeating: 0, count: 4096)

    /// fdatasync: what the guest wrote reaches stable storage.
    func flush() throws(SystemError) {
        switch engine {
        case .ioURing:
            let r = vfsvm_uring_fsync(buffered.rawValue, 1)
            if r < 0 { throw SystemError("io_uring fdatasync", Errno(rawValue: Int32(clamping: -r))) }
        case .sync:
            try buffered.sync(dataOnly: true)
        }
    }

    /// fallocate(2) on the image.
    func allocate(mode: Int32, offset: Int64, length: Int64) throws(SystemError) {
        switch engine {
        case .ioURing:
            let r = vfsvm_uring_fallocate(buffered.rawValue, mode, offset, length)
            if r < 0 { throw SystemError("io_uring fallocate", Errno(rawValue: Int32(clamping: -r))) }
        case .sync:
            try buffered.allocate(mode: mode, offset: offset, length: length)
        }
    }

    /// How much of a zeroing or hole-punching request is done per step;
    /// the caller's stop check runs between steps, so a reset never waits
    /// for more than one step, whatever range the guest named.
    static let zeroingStep: Int64 = 64 << 20

    /// Makes `[offset, offset + length)` read as zeros and stay allocated
    /// (write-zeroes without UNMAP): FALLOC_FL_ZERO_RANGE where the file
    /// system has it; else a hole punched and allocated again (tmpfs has
    /// no ZERO_RANGE but punches holes); else zeros written. Done in
    /// `zeroingStep` pieces, giving up with ECANCELED once `stop()` says so.
    func zeroRange(offset: Int64, length: Int64, stop: () -> Bool) throws(SystemError) {
        try inSteps(offset: offset, length: length, stop: stop) { (at, n) throws(SystemError) in
            do throws(SystemError) {
                try allocate(mode: FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, offset: at, length: n)
                return
            } catch where error.errno == Errno(rawValue: EOPNOTSUPP) {}
            do throws(SystemError) {
                try allocate(mode: FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset: at, length: n)
                try allocate(mode: FALLOC_FL_KEEP_SIZE, offset: at, length: n)
                return
            } catch where error.errno == Errno(rawValue: EOPNOTSUPP) {}
            try writeZeros(offset: at, length: n)
        }
    }

    /// Punches a hole over the range (discard, write-zeroes with UNMAP), in
    /// steps as `zeroRange` does. Where the file system cannot punch
    /// holes: zeros written if `mustZero`, else nothing (a discard may do
    /// nothing).
    func punchHole(offset: Int64, length: Int64, mustZero: Bool, stop: () -> Bool) throws(SystemError) {
        try inSteps(offset: offset, length: length, stop: stop) { (at, n) throws(SystemError) in
            do throws(SystemError) {
                try allocate(mode: FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset: at, length: n)
            } catch where error.errno == Errno(rawValue: EOPNOTSUPP) {
                if mustZero { try writeZeros(offset: at, length: n) }
            }
        }
    }

    private func inSteps(offset: Int64, length: Int64, stop: () -> Bool,
                         _ body: (Int64, Int64) throws(SystemError) -> Void) throws(SystemError) {
        var done: Int64 = 0
        while done < length {
            if stop() { throw SystemError("zeroing (the queue is stopping)", Errno(rawValue: ECANCELED)) }
            let n = min(Self.zeroingStep, length - done)
            try body(offset + done, n)
            zeroed.add(Int(n), ordering: .relaxed)
            done += n
        }
    }

    /// Writes `length` zero bytes at `offset` (where fallocate cannot).
    private func writeZeros(offset: Int64, length: Int64) throws(SystemError) {
        let chunk = HostBuffer(count: 1 << 20)
        var done: Int64 = 0
        while done < length {
            let n = Int(min(Int64(chunk.byteCount), length - done))
            try write(from: chunk, 0, at: offset + done, count: n)
            done += Int64(n)
        }
    }

    // MARK: - The data path

    private func transfer(write: Bool, _ buffer: some ScatterGatherList, _ bufferOffset: Int, _ offset: Int64, _ count: Int) throws(SystemError) -> Int {
        transfers.add(1, ordering: .relaxed)
        if let direct, let a = directAlignment, Self.aligned(buffer, bufferOffset, offset, count, a) {
            do {
                let n = try move(write: write, buffer, bufferOffset, fd: direct, offset, count)
                directTransfers.add(1, ordering: .relaxed)
                return n
            } catch where error.errno == .EINVAL {
                // The file system refused this transfer after all: buffered.
            }
        }
        return try move(write: write, buffer, bufferOffset, fd: buffered, offset, count)
    }

    private func move(write: Bool, _ buffer: some ScatterGatherList, _ at: Int, fd: FileDescriptor, _ offset: Int64, _ count: Int) throws(SystemError) -> Int {
        switch (engine, write) {
        case (.ioURing, false): try buffer.transfer(vfsvm_uring_readv, "io_uring readv", fd: fd, fileOffset: offset, offset: at, count: count)
        case (.ioURing, true): try buffer.transfer(vfsvm_uring_writev, "io_uring writev", fd: fd, fileOffset: offset, offset: at, count: count)
        case (.sync, false): try buffer.read(from: fd, fileOffset: offset, into: at, count: count)
        case (.sync, true): try buffer.write(to: fd, fileOffset: offset, from: at, count: count)
        }
    }

    /// Whether every piece of `buffer[bufferOffset..<bufferOffset + count]`
    /// starts on the memory alignment and is a whole number of offset
    /// alignments long, and the file range is offset-aligned.
    static func aligned(_ buffer: some ScatterGatherList, _ bufferOffset: Int, _ offset: Int64, _ count: Int,
                        _ a: (memory: Int, offset: Int)) -> Bool {
        guard offset % Int64(a.offset) == 0, count % a.offset == 0 else { return false }
        return buffer.withIOVecs(offset: bufferOffset, length: count) { iov in
            iov.allSatisfy { v in Int(bitPattern: v.iov_base) % a.memory == 0 && v.iov_len % a.offset == 0 && v.iov_len % a.memory == 0 }
        }
    }
}
