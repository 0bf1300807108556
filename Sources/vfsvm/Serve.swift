import ArgumentParser
import VfsvmConfig

/// `vfsvm serve`: a vhost-user-fs backend, command-line compatible with
/// virtiofsd where QEMU users and libvirt rely on it.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve a host directory as a vhost-user-fs backend for QEMU, cloud-hypervisor or libvirt (a virtiofsd replacement).",
        discussion: "Example: vfsvm serve --socket-path /run/vfsvm.sock --shared-dir /srv/data"
    )

    @Option(name: .long, help: "Listen on this unix socket path.")
    var socketPath: String?

    @Option(name: .long, help: "Use this inherited, already listening socket fd (libvirt).")
    var fd: Int32?

    @Option(name: .long, help: "The directory to share.")
    var sharedDir: String?

    @Option(name: .customShort("o"), help: ArgumentHelp("virtiofsd-style options: source=DIR, cache=, sandbox=, xattr, no_xattr, readonly, flock, posix_lock, ...", valueName: "OPTIONS"))
    var options: [String] = []

    @Option(help: "Cache mode: never, auto or always.")
    var cache: CacheMode?

    @Option(help: "Worker threads for request queues.")
    var threadPoolSize: Int?

    @Flag(help: "Enable extended attributes.")
    var xattr = false

    @Flag(help: "Refuse every write with EROFS.")
    var readonly = false

    @Option(help: "Process sandbox: namespace, chroot or none.")
    var sandbox: SandboxMode?

    @Flag(help: "Tell the guest about submounts.")
    var announceSubmounts = false

    @Flag(help: "Print the vhost-user backend capabilities as JSON and exit.")
    var printCapabilities = false

    @Option(help: "Log level: error, warn, info or debug.")
    var logLevel: String = "info"

    @Flag(name: .customShort("d"), help: "Debug logging (virtiofsd's -d).")
    var debug = false

    @Flag(name: .customShort("f"), help: "Stay in the foreground (always true; accepted for compatibility).")
    var foreground = false

    /// The settings after `-o` lists and the long options are combined
    /// (long options win, as they come from the same command line).
    func settings() throws -> ServeSettings {
        var s = ServeSettings()
        do {
            for o in options { try s.apply(OptionList(parsing: o)) }
        } catch { throw ValidationError(error.description) }
        if let sharedDir { s.sharedDir = sharedDir }
        if let cache { s.cache = cache }
        if xattr { s.xattr = true }
        if readonly { s.readOnly = true }
        if let sandbox { s.sandbox = sandbox }
        if announceSubmounts { s.announceSubmounts = true }
        return s
    }

    func validate() throws {
        if printCapabilities { return }
        let s = try settings()
        guard s.sharedDir != nil else { throw ValidationError("no shared directory: give --shared-dir DIR or -o source=DIR") }
        guard (socketPath == nil) != (fd == nil) else {
            throw ValidationError("give exactly one of --socket-path PATH or --fd N")
        }
        if let threadPoolSize, !(0...1024).contains(threadPoolSize) {
            throw ValidationError("--thread-pool-size must be between 0 and 1024, got \(threadPoolSize)")
        }
        guard ["error", "warn", "info", "debug"].contains(logLevel) else {
            throw ValidationError("--log-level must be error, warn, info or debug, got '\(logLevel)'")
        }
    }

    func run() throws {
        throw notImplemented("vfsvm serve", "the vhost-user-fs backend has not landed yet; use /usr/lib/qemu/virtiofsd meanwhile.")
    }
}
