import ArgumentParser
import Glibc
import VfsvmConfig
import VfsvmFUSE
import VfsvmHostFUSE
import VfsvmPassthroughFS
import VfsvmSys

/// `--io-engine`: how READ and WRITE reach host files. The default is
/// io_uring: `make bench` (Benchmarks/bench-mount.sh) measured it level
/// with or slightly ahead of preadv/pwritev on this machine (README,
/// "Benchmarks"), and it falls back to sync where the kernel refuses it.
enum IOEngineChoice: String, ExpressibleByArgument, CaseIterable {
    /// io_uring through liburing, falling back to sync where the kernel refuses it.
    case uring
    /// preadv/pwritev on the worker thread.
    case sync
}

/// The FUSE server for one share: the passthrough file system over
/// `settings.sharedDir` (or, inside a sandbox, over the `confined` share it
/// opened) with the user's cache, xattr, lock and read-only choices,
/// logging every request when `trace`. Unconfined, `rootFD` (the share as
/// `ShareDirectory.open` opened it) is served when given, else the path.
/// Shared by `serve` and `mount`.
func makeFileServer(settings: ServeSettings, engine: IOEngineChoice, trace: Bool = false,
                    confined: Sandbox.Share? = nil, rootFD: FileDescriptor? = nil) throws -> FUSEServer {
    guard let dir = settings.sharedDir else { throw ValidationError("no shared directory given") }
    let cache: PassthroughOptions.Cache = switch settings.cache {
    case .never: .never
    case .auto: .auto
    case .always: .always
    }
    let io: any IOEngine
    switch engine {
    case .sync: io = SyncIOEngine()
    case .uring:
        if let uring = IOURingEngine.make() {
            io = uring
        } else {
            logLine("vfsvm: io_uring is not available here; using the synchronous I/O engine")
            io = SyncIOEngine()
        }
    }
    let fs: PassthroughFileSystem
    do {
        let options = PassthroughOptions(cache: cache, xattr: settings.xattr)
        if let confined {
            fs = try PassthroughFileSystem(rootDirectory: confined.root, procSelfFD: confined.procSelfFD, path: dir,
                                           options: options, engine: io)
        } else if let rootFD {
            let procSelfFD: FileDescriptor
            do { procSelfFD = try FileDescriptor.open("/proc/self/fd", HostFSFlag.path | O_DIRECTORY) } catch {
                throw CommandFailure("cannot share \(dir): cannot open /proc/self/fd: \(error.errno)")
            }
            fs = try PassthroughFileSystem(rootDirectory: rootFD, procSelfFD: procSelfFD, path: dir, options: options, engine: io)
        } else {
            fs = try PassthroughFileSystem(root: dir, options: options, engine: io)
        }
    } catch {
        throw CommandFailure("cannot share \(dir): \(error)")
    }
    return FUSEServer(
        fileSystem: fs,
        options: FUSEServerOptions(writeback: settings.writeback, readOnly: settings.readOnly,
                                   posixLocks: settings.posixLocks, flockLocks: settings.flockLocks),
        tracer: trace ? FUSETracer(log: { logLine("vfsvm: " + $0) }) : nil)
}

/// A failure to report as one line and exit 1 (ArgumentParser prints
/// "Error: " + description).
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
