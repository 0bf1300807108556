import ArgumentParser
import VfsvmConfig
import VfsvmFUSE
import VfsvmHostFUSE
import VfsvmPassthroughFS
import VfsvmSys

extension FUSEServer: FUSERequestHandler {}

/// `--io-engine`: how READ and WRITE reach host files.
enum IOEngineChoice: String, ExpressibleByArgument, CaseIterable {
    /// io_uring through liburing, falling back to sync where the kernel refuses it.
    case uring
    /// preadv/pwritev on the worker thread.
    case sync
}

/// The FUSE server for one share: the passthrough file system over
/// `settings.sharedDir` with the user's cache, xattr, lock and read-only
/// choices. Shared by `serve` and `mount`.
func makeFileServer(settings: ServeSettings, engine: IOEngineChoice) throws -> FUSEServer {
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
        fs = try PassthroughFileSystem(root: dir, options: PassthroughOptions(cache: cache, xattr: settings.xattr), engine: io)
    } catch {
        throw CommandFailure("cannot share \(dir): \(error)")
    }
    return FUSEServer(
        fileSystem: fs,
        options: FUSEServerOptions(readOnly: settings.readOnly, locks: settings.posixLocks || settings.flockLocks))
}

/// A failure to report as one line and exit 1 (ArgumentParser prints
/// "Error: " + description).
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
