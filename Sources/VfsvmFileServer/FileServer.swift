import Glibc
import VfsvmConfig
import VfsvmFUSE
import VfsvmHostFUSE
import VfsvmPassthroughFS
import VfsvmSys

/// `--io-engine`: how READ and WRITE reach host files. Only READ differs:
/// the io_uring engine writes, syncs and allocates with the plain calls
/// too. `vfsvm serve` and `vfsvm run` default to sync: each READ is one
/// io_uring submission waited for on its own, and that costs more than the
/// preadv it replaces (0.4-0.5 µs more CPU per page-cache read here, 4 KiB
/// or 128 KiB; Benchmarks/bench-backend-results.md, 2026-12-04), with no
/// second request to overlap. `vfsvm mount` keeps io_uring (its own
/// measurements, bench-mount.sh). uring falls back to sync where the
/// kernel refuses it.
public enum IOEngineChoice: String, CaseIterable, Sendable {
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
/// Shared by `serve`, `mount`, `run` and vfsvm-fuse-sweep (which drives
/// this very server under the seccomp filter, Tests/FUSESweepProbe).
public func makeFileServer(settings: ServeSettings, engine: IOEngineChoice, trace: Bool = false,
                           confined: Sandbox.Share? = nil, rootFD: FileDescriptor? = nil, dax: DAXMappings? = nil,
                           backingFiles: HostBackingFiles? = nil, overIOURing: Bool = false) throws -> FUSEServer {
    guard let dir = settings.sharedDir else { throw FileServerFailure("no shared directory given") }
    let cache: PassthroughOptions.Cache = switch settings.cache {
    case .never: .never
    case .auto: .auto
    case .always: .always
    case .metadata: .metadata
    }
    let tuning = try benchmarkInitTuning()
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
        var options = PassthroughOptions(cache: cache, xattr: settings.xattr, fileHandles: settings.inodeFileHandles != .never)
        if let t = tuning.timeout ?? settings.timeout { options.timeout = FUSETimeout(t) }
        options.requireFileHandles = settings.inodeFileHandles == .mandatory
        options.allowDirectIO = settings.allowDirectIO
        options.keepNoatime = settings.keepsNoatime
        options.posixACL = settings.posixACL
        if let rules = settings.xattrmap {
            do { options.xattrMap = try XattrNameMap(parsing: rules) } catch { throw FileServerFailure("invalid --xattrmap '\(rules)': \(error)") }
        }
        if let confined {
            fs = try PassthroughFileSystem(rootDirectory: confined.root, procSelfFD: confined.procSelfFD, path: dir,
                                           options: options, engine: io)
        } else if let rootFD {
            let procSelfFD: FileDescriptor
            do { procSelfFD = try FileDescriptor.open("/proc/self/fd", HostFSFlag.path | O_DIRECTORY) } catch {
                throw FileServerFailure("cannot share \(dir): cannot open /proc/self/fd: \(error.errno)")
            }
            fs = try PassthroughFileSystem(rootDirectory: rootFD, procSelfFD: procSelfFD, path: dir, options: options, engine: io)
        } else {
            fs = try PassthroughFileSystem(root: dir, options: options, engine: io)
        }
    } catch {
        throw FileServerFailure("cannot share \(dir): \(error)")
    }
    var serverOptions = FUSEServerOptions(writeback: settings.writeback, readOnly: settings.readOnly,
                                          posixLocks: settings.posixLocks, flockLocks: settings.flockLocks)
    serverOptions.readdirplus = settings.offersReaddirplus
    serverOptions.killprivV2 = settings.killprivV2
    serverOptions.directIOAllowMmap = settings.allowMmap
    serverOptions.announceSubmounts = settings.announceSubmounts
    serverOptions.posixACL = settings.posixACL
    serverOptions.securityLabel = settings.securityLabel
    serverOptions.overIOURing = overIOURing
    if let v = tuning.asyncRead { serverOptions.asyncRead = v }
    if let v = tuning.parallelDirops { serverOptions.parallelDirops = v }
    switch tuning.readdirplus {
    case .auto?: serverOptions.readdirplusAuto = true
    case .always?: serverOptions.readdirplusAuto = false
    case .off?: serverOptions.readdirplus = false
    case nil: break
    }
    if let n = tuning.maxPages { serverOptions.maxWrite = n * 4096 }
    if let n = tuning.maxBackground { serverOptions.maxBackground = n }
    if let t = tuning.negativeTimeout { serverOptions.negativeEntryTimeout = FUSETimeout(t) }
    if !settings.uidTranslation.isEmpty || !settings.gidTranslation.isEmpty {
        serverOptions.idTranslation = FUSEIDTranslation(uids: idMap(settings.uidTranslation), gids: idMap(settings.gidTranslation))
    }
    return FUSEServer(
        fileSystem: fs,
        options: serverOptions,
        tracer: trace ? FUSETracer(log: { logLine("vfsvm: " + $0) }) : nil, dax: dax,
        backingFiles: backingFiles)
}

/// The benchmark knob `VFSVM_BENCH_INIT` (see InitTuning), announced on
/// stderr when set so that no measurement is mistaken for the defaults.
func benchmarkInitTuning() throws -> InitTuning {
    guard let raw = getenv(InitTuning.variable) else { return InitTuning() }
    let text = String(cString: raw)
    do {
        let t = try InitTuning(parsing: text)
        if t != InitTuning() { logLine("vfsvm: benchmark knob \(InitTuning.variable)=\(text) in effect") }
        return t
    } catch {
        throw FileServerFailure("\(error)")
    }
}

/// Why the file server could not be built, as one sentence (the command
/// line prints "Error: " + description and exits 1).
public struct FileServerFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The FUSE server's table for `--translate-uid`/`--translate-gid` rules.
public func idMap(_ rules: [IDTranslationRule]) -> FUSEIDMap {
    var m = FUSEIDMap()
    for r in rules {
        switch r.kind {
        case .map:
            m.guestToHost.append(.init(start: r.from, count: r.count, target: .base(r.to)))
            m.hostToGuest.append(.init(start: r.to, count: r.count, target: .base(r.from)))
        case .guest: m.guestToHost.append(.init(start: r.from, count: r.count, target: .base(r.to)))
        case .host: m.hostToGuest.append(.init(start: r.from, count: r.count, target: .base(r.to)))
        case .squashGuest: m.guestToHost.append(.init(start: r.from, count: r.count, target: .single(r.to)))
        case .squashHost: m.hostToGuest.append(.init(start: r.from, count: r.count, target: .single(r.to)))
        case .forbidGuest: m.guestToHost.append(.init(start: r.from, count: r.count, target: .forbidden))
        }
    }
    return m
}

/// no_new_privs always (it costs nothing), then the file server's seccomp
/// filter per `mode` (with the io_uring calls where that is the engine).
/// Shared by `serve`, `mount` and vfsvm-fuse-sweep.
public func applySeccomp(_ mode: SeccompMode, ioURing: Bool) throws(SandboxError) {
    let calls = SeccompAllowList.fileServer(ioURing: ioURing)
    switch mode {
    case .kill: try Seccomp.install(allowing: calls, onViolation: .kill)
    case .log: try Seccomp.install(allowing: calls, onViolation: .log)
    case .none: try Seccomp.setNoNewPrivileges()
    }
}

extension FUSETimeout {
    init(_ t: ReplyTimeout) { self.init(seconds: t.seconds, nanoseconds: t.nanoseconds) }
}
