import CVfsvmLinux
import Glibc
import Synchronization
import VfsvmFUSE
import VfsvmSys

/// FUSE passthrough on a host mount: open files registered with the
/// kernel connection as backing files (FUSE_DEV_IOC_BACKING_OPEN), so the
/// kernel reads and writes them itself and those requests never reach the
/// server.
///
/// One id per node while it has open handles (what the kernel requires:
/// an inode has one backing file at a time), closed with the node's last
/// RELEASE: the kernel looks the id up after our OPEN reply, on the
/// opener's side, so it must outlive the reply; once the file is open the
/// kernel holds the backing file itself.
///
/// The kernel may refuse a file (EPERM without CAP_SYS_ADMIN, ELOOP on a
/// stacked file system such as overlayfs, EOPNOTSUPP): that file is then
/// served through requests, and the first refusal is reported once.
public final class HostBackingFiles: FUSEBackingFiles {
    /// Backing files on plain file systems only (overlayfs has depth 1):
    /// the mount itself can then still be stacked on.
    public let maxStackDepth: UInt32 = 1

    private struct Backing { var id: Int32; var handles: Int }
    private struct State {
        var device: FileDescriptor?
        var nodes: [UInt64: Backing] = [:]
        var handles: [UInt64: UInt64] = [:]  // handle → node
    }
    private let state = Mutex(State())
    private let reported = Atomic(false)
    private let opened = Atomic(0)
    private let log: @Sendable (String) -> Void

    public init(log: @escaping @Sendable (String) -> Void = { logLine($0) }) { self.log = log }

    /// The /dev/fuse fd of the connection, once mounted. Before it, no
    /// file is registered.
    public func attach(_ fd: FileDescriptor) { state.withLock { $0.device = fd } }

    /// Opens served through passthrough so far.
    public var passthroughOpens: Int { opened.load(ordering: .relaxed) }

    /// Nodes holding a backing id now.
    public var registeredNodes: Int { state.withLock { $0.nodes.count } }

    public func open(node: UInt64, fd: FileDescriptor, handle: UInt64) -> Int32? {
        let result = state.withLock { s -> Result<Int32, SystemError>? in
            guard let dev = s.device else { return nil }
            if var b = s.nodes[node] {
                b.handles += 1
                s.nodes[node] = b
                s.handles[handle] = node
                return .success(b.id)
            }
            var map = vfsvm_fuse_backing_map(fd: fd.rawValue, flags: 0, padding: 0)
            do throws(SystemError) {
                let id = try dev.ioctl(VFSVM_FUSE_DEV_IOC_BACKING_OPEN, "FUSE_DEV_IOC_BACKING_OPEN", &map)
                s.nodes[node] = Backing(id: id, handles: 1)
                s.handles[handle] = node
                return .success(id)
            } catch {
                return .failure(error)
            }
        }
        switch result {
        case nil: return nil
        case let .failure(error):
            if !reported.exchange(true, ordering: .relaxed) {
                log("vfsvm mount: FUSE passthrough refused for a file (\(error.errno)); such files are served through requests")
            }
            return nil
        case let .success(id):
            if opened.add(1, ordering: .relaxed).newValue == 1 {
                log("vfsvm mount: FUSE passthrough on: the kernel reads and writes open files directly")
            }
            return id
        }
    }

    public func release(handle: UInt64) {
        state.withLock { s in
            guard let node = s.handles.removeValue(forKey: handle), var b = s.nodes[node] else { return }
            b.handles -= 1
            if b.handles > 0 { s.nodes[node] = b; return }
            s.nodes[node] = nil
            Self.close(b.id, device: s.device, log: log)
        }
    }

    public func reset() {
        state.withLock { s in
            for b in s.nodes.values { Self.close(b.id, device: s.device, log: log) }
            s.nodes = [:]
            s.handles = [:]
        }
    }

    private static func close(_ id: Int32, device: FileDescriptor?, log: (String) -> Void) {
        guard let device else { return }
        var value = UInt32(bitPattern: id)
        do { _ = try device.ioctl(VFSVM_FUSE_DEV_IOC_BACKING_CLOSE, "FUSE_DEV_IOC_BACKING_CLOSE", &value) } catch {
            log("vfsvm mount: releasing backing file \(id): \(error)")
        }
    }
}
