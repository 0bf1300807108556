import ArgumentParser
import Glibc
import VfsvmConfig
import VfsvmFileServer
import VfsvmHostFUSE
import VfsvmSys

struct Mount: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve a host directory through /dev/fuse at a mount point on the host (foreground).",
        discussion: """
            Runs in the foreground until SIGINT or SIGTERM, then unmounts and exits 0.
            Example: vfsvm mount --share /srv/data /mnt/data -o ro,cache=never
            """
    )

    @Option(name: .long, help: ArgumentHelp("The host directory to serve.", valueName: "HOSTDIR"))
    var share: String

    @Argument(help: "Where to mount it.")
    var mountpoint: String

    @Option(name: .customShort("o"), help: ArgumentHelp("Options: ro, cache=never|auto|always, uring (default: FUSE over io_uring where the kernel enables it), no_uring (/dev/fuse reads), xattr, no_xattr, posix_acl (default), no_posix_acl, posix_lock, no_posix_lock, flock, no_flock.", valueName: "OPTIONS"))
    var options: [String] = []

    @Option(help: "Worker threads serving requests.")
    var threads: Int = 4

    @Option(help: "How file data moves: uring (io_uring) or sync (preadv/pwritev).")
    var ioEngine: IOEngineChoice = .uring

    @Flag(name: [.customShort("d"), .long], help: "Log every FUSE request.")
    var debug = false

    @Flag(inversion: .prefixedNo, help: "FUSE passthrough: the kernel reads and writes open files directly (Linux 6.9+, as root; off with -o writeback, whose cache the kernel does not combine with it). Files the kernel refuses are served through requests.")
    var passthrough = true

    @Option(help: "System calls outside the file server's allow-list once mounted: kill, log or none (as serve's --seccomp).")
    var seccomp: SeccompMode = .kill

    /// The settings, and whether FUSE over io_uring is wanted (`-o uring`,
    /// the default, or `-o no_uring`; the last one given wins).
    func settings() throws -> (ServeSettings, uring: Bool) {
        var s = ServeSettings()
        var uring = true
        // Host users reach this mount, and the server opens files as root:
        // the kernel must see the files' POSIX ACLs (FUSE_POSIX_ACL, which
        // needs xattrs) or an ACL entry that denies a user is not enforced
        // (default_permissions then checks mode bits only). `-o
        // no_posix_acl` or `-o no_xattr` turn it off, knowingly.
        s.posixACL = true
        do {
            for o in options {
                var list = try OptionList(parsing: o)
                for key in ["uring", "no_uring"] {
                    for e in list.remove(key) {
                        guard e.value == nil else { throw ValidationError("-o \(key) takes no value, got \(key)=\(e.value ?? "")") }
                    }
                }
                // The last of the two in the original order.
                let flags = try OptionList(parsing: o).entries.filter { $0.key == "uring" || $0.key == "no_uring" }
                if let last = flags.last { uring = last.key == "uring" }
                try s.apply(list)
            }
        } catch let error as ConfigError { throw ValidationError(error.description) }
        s.sharedDir = share
        if !s.xattr { s.posixACL = false }
        return (s, uring)
    }

    func validate() throws {
        _ = try settings()
        guard (1...64).contains(threads) else { throw ValidationError("--threads must be between 1 and 64, got \(threads)") }
    }

    func run() throws {
        let (settings, wantsURing) = try settings()
        if !settings.posixACL {
            logLine("vfsvm mount: the host files' POSIX ACLs are not enforced on this mount (no_posix_acl or no_xattr): only mode bits are checked")
        }
        // As serve: the fd budget (every host user's open files and lock
        // owners on this mount) is derived from the soft limit in force at
        // INIT, which a shell leaves at 1024.
        do { try OpenFileLimit.raise(to: nil) } catch { throw CommandFailure(error.description) }
        let backingFiles = passthrough ? HostBackingFiles() : nil
        // The rings exist before INIT offers FUSE over io_uring: once it is
        // agreed, the kernel holds requests until they are registered.
        var uring: HostFUSEURing?
        if wantsURing {
            switch HostFUSEURing.make(ringsPerQueue: max(1, threads / HostFUSEURing.possibleCPUs())) {
            case let .success(u): uring = u
            case let .failure(why): logLine("vfsvm mount: request channel: /dev/fuse reads (\(why))")
            }
        } else {
            logLine("vfsvm mount: request channel: /dev/fuse reads (-o no_uring)")
        }
        let server = try makeFileServer(settings: settings, engine: ioEngine, trace: debug, backingFiles: backingFiles,
                                        overIOURing: uring != nil)
        // Signals are taken synchronously by one thread; every thread
        // created after this inherits the mask.
        blockSignals([SIGINT, SIGTERM, SIGHUP])
        let mount: HostFUSEMount
        do {
            mount = try HostFUSEMount(mountpoint: mountpoint, readOnly: settings.readOnly)
        } catch {
            throw CommandFailure("\(error)")
        }
        // The ring threads take their CPUs while the filter still allows it.
        if let u = uring {
            do { try u.spawn(handler: server) } catch {
                try? mount.unmount()
                throw CommandFailure("cannot start the io_uring threads: \(error); -o no_uring serves through /dev/fuse reads")
            }
        }
        // Mounted: from here on only the file server's system calls.
        do { try applySeccomp(seccomp, ioURing: ioEngine == .uring || uring != nil) } catch {
            try? mount.unmount()
            throw CommandFailure("\(error); pass --seccomp none to run without a system call filter")
        }
        try OSThread(name: "vfsvm-signals") {
            let sig = waitForSignal([SIGINT, SIGTERM, SIGHUP])
            logLine("vfsvm mount: signal \(sig), unmounting \(mount.mountpoint)")
            do { try mount.unmount() } catch { logLine("vfsvm mount: \(error)") }
        }.detach()
        do { try mount.serve(server, threads: threads, backingFiles: backingFiles, uring: uring) } catch { throw CommandFailure("\(error)") }
    }
}
