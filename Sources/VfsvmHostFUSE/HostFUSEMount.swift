import CVfsvmLinux
import Glibc
import VfsvmFUSE
import VfsvmMemory
import VfsvmSys

/// Why a host mount could not be made, in words a user can act on.
public enum HostMountError: Error, Hashable, Sendable, CustomStringConvertible {
    case noFUSEDevice(Errno)
    case notPermitted(String)
    case notADirectory(String)
    case mountPointBusy(String)
    case failed(SystemError)

    public var description: String {
        switch self {
        case let .noFUSEDevice(e):
            "cannot open /dev/fuse (\(e)): load the fuse module (modprobe fuse) or run where /dev/fuse exists"
        case let .notPermitted(p): "not permitted to mount on \(p): vfsvm mount must run as root (CAP_SYS_ADMIN)"
        case let .notADirectory(p): "mount point \(p) is not an existing directory"
        case let .mountPointBusy(p): "mount point \(p) is busy (already mounted or in use)"
        case let .failed(e): "\(e)"
        }
    }
}

/// A FUSE file system mounted on the host through /dev/fuse, served by
/// worker threads until it is unmounted.
public final class HostFUSEMount: Sendable {
    public let mountpoint: String
    private let device: FileDescriptor
    /// Requests are read into buffers this large: the kernel needs room for
    /// the largest WRITE (max_write) plus headers, and at least 8 KiB.
    public let bufferSize: Int

    /// Opens /dev/fuse and mounts it on `mountpoint`.
    ///
    /// `default_permissions` makes the host kernel check mode bits against
    /// the calling host user, as for a local file system: the server runs as
    /// root and must not become a way around them. `allow_other` lets every
    /// host user reach the mount, subject to those checks.
    public init(mountpoint: String, readOnly: Bool, bufferSize: Int = (1 << 20) + (64 << 10)) throws(HostMountError) {
        var st = stat()
        guard stat(mountpoint, &st) == 0, st.st_mode & Glibc.S_IFMT == Glibc.S_IFDIR else {
            throw .notADirectory(mountpoint)
        }
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open("/dev/fuse", O_RDWR) } catch { throw .noFUSEDevice(error.errno) }
        let data = "fd=\(fd.rawValue),rootmode=\(String(Glibc.S_IFDIR, radix: 8)),user_id=\(getuid()),group_id=\(getgid()),allow_other,default_permissions"
        var flags = UInt(MS_NOSUID | MS_NODEV)
        if readOnly { flags |= UInt(MS_RDONLY) }
        do {
            _ = try sysCall("mount(\(mountpoint))") { Glibc.mount("vfsvm", mountpoint, "fuse.vfsvm", flags, data) }
        } catch {
            switch error.errno {
            case .EPERM, .EACCES: throw .notPermitted(mountpoint)
            case .EBUSY: throw .mountPointBusy(mountpoint)
            case .ENOTDIR, .ENOENT: throw .notADirectory(mountpoint)
            default: throw .failed(error)
            }
        }
        self.mountpoint = mountpoint
        self.device = fd
        self.bufferSize = max(bufferSize, 8192 + 4096)
    }

    /// Lazily unmounts (MNT_DETACH): the kernel then ends the connection and
    /// the workers in `serve` return.
    public func unmount() throws(SystemError) {
        _ = try sysCall("umount2(\(mountpoint))") { umount2(mountpoint, Int32(MNT_DETACH)) }
    }

    /// Serves requests on `threads` workers until the file system is
    /// unmounted. Each worker reads from its own clone of the /dev/fuse fd
    /// (FUSE_DEV_IOC_CLONE), so replies go back on the fd their request came
    /// from.
    ///
    /// With `backingFiles` (the registry the handler was given), open
    /// files go to the kernel for FUSE passthrough. With `uring` (whose
    /// rings the handler's INIT offers), requests move to FUSE over
    /// io_uring once INIT is answered; the /dev/fuse workers stay for what
    /// the kernel still sends there (FORGET, INTERRUPT, or everything when
    /// it refuses the rings).
    public func serve(_ handler: some FUSERequestHandler, threads: Int, backingFiles: HostBackingFiles? = nil,
                      uring: HostFUSEURing? = nil) throws(SystemError) {
        backingFiles?.attach(device)
        var workers: [OSThread] = []
        let main = device
        for i in 0..<max(1, threads) {
            let fd = i == 0 ? device : try cloneDevice()
            let size = bufferSize
            workers.append(try OSThread(name: "vfsvm-fuse-\(i)") {
                Self.workerLoop(fd: fd, handler: handler, bufferSize: size) { reply in
                    guard let uring else { return }
                    Self.initAnswered(reply, uring: uring, device: main, handler: handler)
                }
            })
        }
        for w in workers { w.join() }
    }

    /// INIT was answered with `reply`: starts the rings if it agreed on
    /// FUSE over io_uring, or says why the channel stays /dev/fuse reads.
    private static func initAnswered(_ reply: HostBuffer, uring: HostFUSEURing, device: FileDescriptor,
                                     handler: some FUSERequestHandler) {
        // fuse_out_header (16) + fuse_init_out: max_write at 20, max_pages
        // at 28, flags2 at 32.
        let (error, maxWrite, maxPages, flags2) = reply.withUnsafeMutableBytes { raw in
            (raw.load(fromByteOffset: 4, as: Int32.self), Int(raw.load(fromByteOffset: 16 + 20, as: UInt32.self)),
             Int(raw.load(fromByteOffset: 16 + 28, as: UInt16.self)), UInt64(raw.load(fromByteOffset: 16 + 32, as: UInt32.self)))
        }
        guard error == 0 else { return }
        guard (flags2 << 32) & FUSEInitFlag.overIOURing != 0 else {
            logLine("vfsvm mount: request channel: /dev/fuse reads (the kernel did not offer FUSE_OVER_IO_URING in INIT)")
            return
        }
        uring.start(device: device, maxPayload: max(maxWrite, maxPages * 4096))
    }

    private func cloneDevice() throws(SystemError) -> FileDescriptor {
        let clone = try FileDescriptor.open("/dev/fuse", O_RDWR)
        var master = UInt32(device.rawValue)
        try clone.ioctl(VFSVM_FUSE_DEV_IOC_CLONE, "FUSE_DEV_IOC_CLONE", &master)
        return clone
    }

    private static func workerLoop(fd: FileDescriptor, handler: some FUSERequestHandler, bufferSize: Int,
                                   initAnswered: (HostBuffer) -> Void) {
        let request = HostBuffer(count: bufferSize)
        let reply = HostBuffer(count: bufferSize)
        while true {
            let n: Int
            do {
                n = try request.withUnsafeMutableBytes { raw throws(SystemError) in try fd.read(into: raw) }
            } catch {
                switch error.errno {
                case .ENOENT, .EAGAIN: continue  // the request was interrupted before we read it
                // sysCall retries EINTR already; kept here so that a wake-up
                // signal (Interruption) could never end a worker.
                case .EINTR: continue
                case .ENODEV: return  // unmounted
                default:
                    logLine("vfsvm mount: reading /dev/fuse failed: \(error)")
                    return
                }
            }
            // A request that waits for a lock runs on a thread of its own
            // (the server's budget), so the workers keep reading the unlock.
            let handling = handler.handle(request: request.prefix(n), reply: reply) { bytes in
                send(fd: fd, bytes)
            }
            if case let .replied(length) = handling {
                send(fd: fd, reply: reply, length: length)
                // FUSE_INIT (26): the kernel takes ring registrations only
                // once it has the reply.
                if n >= 8, length >= 16 + 36, request.withUnsafeMutableBytes({ $0.load(fromByteOffset: 4, as: UInt32.self) }) == 26 {
                    initAnswered(reply)
                }
            }
        }
    }

    private static func send(fd: FileDescriptor, reply: HostBuffer, length: Int) {
        guard length > 0 else { return }
        do {
            _ = try reply.withUnsafeMutableBytes { raw throws(SystemError) in
                try fd.write(UnsafeRawBufferPointer(rebasing: raw[0..<length]))
            }
        } catch {
            replyFailed(error)
        }
    }

    private static func send(fd: FileDescriptor, _ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        do {
            // /dev/fuse takes a reply in one write or not at all.
            try fd.writeAll(bytes)
        } catch {
            replyFailed(error)
        }
    }

    private static func replyFailed(_ error: SystemError) {
        // ENOENT: the kernel gave up on the request (interrupted).
        guard error.errno != .ENOENT else { return }
        logLine("vfsvm mount: writing a reply to /dev/fuse failed: \(error)")
    }
}
