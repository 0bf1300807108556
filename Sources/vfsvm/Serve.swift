import ArgumentParser
import Glibc
import VfsvmConfig
import VfsvmFileServer
import VfsvmPassthroughFS
import VfsvmSys
import VfsvmVhostUser
import VfsvmVirtioFS

/// `vfsvm serve`: a vhost-user-fs backend, command-line compatible with
/// virtiofsd where QEMU users and libvirt rely on it.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve a host directory as a vhost-user-fs backend for QEMU, cloud-hypervisor or libvirt (a virtiofsd replacement).",
        discussion: "Example: vfsvm serve --socket-path /run/vfsvm.sock --shared-dir /srv/data"
    )

    @Option(name: .long, help: "Listen on this unix socket path.")
    var socketPath: String?

    @Option(name: .long, help: "The old name of --socket-path (virtiofsd's --socket).")
    var socket: String?

    @Option(name: .long, help: ArgumentHelp("Give the socket this group and let the group connect (mode 0660; without it 0600).", valueName: "GROUP"))
    var socketGroup: String?

    @Flag(help: "Log to syslog (/dev/log, facility user) instead of stderr; stderr when no logger listens there.")
    var syslog = false

    @Option(name: .long, help: "Use this inherited, already listening socket fd (libvirt).")
    var fd: Int32?

    @Option(name: .long, help: "The directory to share.")
    var sharedDir: String?

    @Option(name: .customShort("o"), help: ArgumentHelp("virtiofsd-style options: source=DIR, cache=, sandbox=, xattr, no_xattr, readonly, flock, posix_lock, ...", valueName: "OPTIONS"))
    var options: [String] = []

    @Option(help: "Cache mode: never, auto, always or metadata (entries and attributes cached a day, file data not at all).")
    var cache: CacheMode?

    @Flag(help: "Do not offer READDIRPLUS (directory listings carry no attributes). cache=never implies it.")
    var noReaddirplus = false

    @Flag(inversion: .prefixedNo, help: "Offer FUSE_HANDLE_KILLPRIV_V2: vfsvm clears setuid/setgid bits on write, truncate and chown as the guest asks (default on).")
    var killprivV2: Bool?

    @Flag(inversion: .prefixedNo, help: "Mark directories that are mount points (FUSE_ATTR_SUBMOUNT) so the guest gives each its own st_dev (default off, as in virtiofsd: without it files on different host file systems may show one st_dev and equal inode numbers).")
    var announceSubmounts: Bool?

    @Flag(help: "Honour O_DIRECT of guest opens: the host file is opened O_DIRECT and the guest page cache is bypassed (FOPEN_DIRECT_IO).")
    var allowDirectIO = false

    @Flag(help: "Let the guest mmap files opened for direct I/O (FUSE_DIRECT_IO_ALLOW_MMAP; with --cache never or metadata). Only for shares nothing else changes.")
    var allowMmap = false

    @Flag(help: "Keep O_NOATIME of guest opens even when CAP_FOWNER was dropped (--modcaps=-fowner); with it, it is always kept.")
    var preserveNoatime = false

    @Option(help: ArgumentHelp("How inodes are named: never (O_PATH fds only; default), prefer (file handles where the host has them) or mandatory (file handles only; fallback is an old name of prefer). prefer and mandatory keep CAP_DAC_READ_SEARCH, which lets a compromised server open any inode of the share's file system by a forged handle.", valueName: "MODE"))
    var inodeFileHandles: InodeFileHandles?

    @Option(help: "Worker threads per request queue (default 0: requests are handled on the queue's own thread; requests waiting for a lock always get a thread of their own).")
    var threadPoolSize: Int?

    @Option(help: "Offer the device configuration (tag, queue count) to frontends that read it with GET_CONFIG. QEMU's vhost-user-fs-pci takes the tag from its own command line and warns when the backend offers a configuration, so without --tag none is offered.")
    var tag: String?

    @Option(help: "Request queues offered (the frontend chooses how many it uses).")
    var requestQueues: Int = 8

    @Option(help: "Largest virtqueue size accepted.")
    var queueSize: UInt16 = 1024

    @Option(help: "How file data moves: sync (preadv/pwritev; default) or uring (io_uring).")
    var ioEngine: IOEngineChoice = .sync

    @Flag(help: "Enable extended attributes.")
    var xattr = false

    @Flag(help: "Serve POSIX ACLs (FUSE_POSIX_ACL; implies --xattr): the guest enforces them, new files inherit default ACLs. Not with --translate-uid/--translate-gid.")
    var posixAcl = false

    @Flag(help: "Set the security label the guest's LSM gives a new file (FUSE_SECURITY_CTX, e.g. security.selinux) on the host file, through --xattrmap, before the guest sees it; a label that cannot be set fails the create (implies --xattr).")
    var securityLabel = false

    @Option(help: ArgumentHelp("Rename, hide or refuse xattr names between guest and host, with virtiofsd's rules, e.g. ':map::user.virtiofs.:' (implies --xattr).", valueName: "RULES"))
    var xattrmap: String?

    @Flag(help: "Refuse every write with EROFS.")
    var readonly = false

    @Option(help: "Process sandbox: namespace, chroot or none.")
    var sandbox: SandboxMode?

    @Option(help: "System calls outside the allow-list: kill (the process, after one line naming the call; virtiofsd's trap is the same), log (run them, the kernel logs them) or none (no filter).")
    var seccomp: SeccompMode = .kill

    @Option(help: ArgumentHelp("Keep capabilities beyond, or drop from, what the share needs, as virtiofsd's --modcaps: --modcaps=+sys_admin:-mknod (also -o modcaps=...).", valueName: "+CAP:-CAP"))
    var modcaps: String?

    @Option(help: "Set RLIMIT_NOFILE (soft and hard) to N at start; 0 leaves it unchanged (default: min(1000000, fs.nr_open)).")
    var rlimitNofile: UInt64?

    @Flag(help: "Let the guest gather writes in its page cache (FUSE writeback cache).")
    var writeback = false

    @Flag(help: "Print the vhost-user backend capabilities as JSON and exit.")
    var printCapabilities = false

    @Option(help: ArgumentHelp("Translate UIDs between guest and host, as virtiofsd: map:GUEST:HOST:COUNT (both ways), guest:GUEST:HOST:COUNT, host:HOST:GUEST:COUNT, squash-guest:GUEST:HOST:COUNT, squash-host:HOST:GUEST:COUNT, forbid-guest:GUEST:COUNT. Repeatable; ids no rule covers pass unchanged.", valueName: "RULE"))
    var translateUid: [String] = []

    @Option(help: ArgumentHelp("Translate GIDs between guest and host; rules as --translate-uid.", valueName: "RULE"))
    var translateGid: [String] = []

    @Option(help: "Log level: off, error, warn, info (default), debug or trace (debug and trace log every FUSE request).")
    var logLevel: LogLevel?

    @Flag(name: .customShort("d"), help: "Log every FUSE request (virtiofsd's -d; same as --log-level debug).")
    var debug = false

    @Flag(name: .customShort("f"), help: "Stay in the foreground (always true; accepted for compatibility).")
    var foreground = false

    /// What the parser did not recognise: virtiofsd options vfsvm does not
    /// implement are refused by name in `validate()`, anything else as unknown.
    @Argument(parsing: .allUnrecognized, help: .hidden)
    var unrecognized: [String] = []

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
        if let xattrmap { s.xattrmap = xattrmap }
        if posixAcl { s.posixACL = true }
        if securityLabel { s.securityLabel = true }
        if readonly { s.readOnly = true }
        if let sandbox { s.sandbox = sandbox }
        if writeback { s.writeback = true }
        if noReaddirplus { s.readdirplus = false }
        if let killprivV2 { s.killprivV2 = killprivV2 }
        if let announceSubmounts { s.announceSubmounts = announceSubmounts }
        if allowDirectIO { s.allowDirectIO = true }
        if allowMmap { s.allowMmap = true }
        if preserveNoatime { s.preserveNoatime = true }
        if let inodeFileHandles { s.inodeFileHandles = inodeFileHandles }
        do throws(ConfigError) {
            for t in translateUid { s.uidTranslation.append(try IDTranslationRule(parsing: t, option: "--translate-uid")) }
            for t in translateGid { s.gidTranslation.append(try IDTranslationRule(parsing: t, option: "--translate-gid")) }
            try IDTranslationRule.checkOverlaps(s.uidTranslation, option: "--translate-uid")
            try IDTranslationRule.checkOverlaps(s.gidTranslation, option: "--translate-gid")
        } catch { throw ValidationError(error.description) }
        if debug { s.logLevel = .debug }
        if let logLevel { s.logLevel = logLevel }
        if let modcaps {
            do { try s.modcaps.apply(parsing: modcaps) } catch { throw ValidationError(error.description) }
        }
        return s
    }

    func validate() throws {
        do { try VirtiofsdCompat.check(unrecognized: unrecognized) } catch { throw ValidationError(error.description) }
        if printCapabilities { return }
        let s = try settings()
        if s.posixACL, !s.uidTranslation.isEmpty || !s.gidTranslation.isEmpty {
            throw ValidationError("--posix-acl cannot be used with --translate-uid/--translate-gid: ACL entries name host ids, which would reach the guest untranslated (virtiofsd refuses the pair too)")
        }
        if let rules = s.xattrmap {
            do { _ = try XattrNameMap(parsing: rules) } catch { throw ValidationError("invalid --xattrmap '\(rules)': \(error)") }
        }
        guard s.sharedDir != nil else { throw ValidationError("no shared directory: give --shared-dir DIR or -o source=DIR") }
        guard [socketPath, socket].compactMap({ $0 }).count + (fd == nil ? 0 : 1) == 1 else {
            throw ValidationError("give exactly one of --socket-path PATH (or --socket PATH) or --fd N")
        }
        if socketGroup != nil, fd != nil {
            throw ValidationError("--socket-group needs a socket vfsvm creates (--socket-path), not an inherited --fd")
        }
        if let fd, fd < 0 { throw ValidationError("--fd must be an open file descriptor number (0 or more), got \(fd)") }
        guard (1...VirtioFSDevice.maxRequestQueues).contains(requestQueues) else {
            throw ValidationError("--request-queues must be between 1 and \(VirtioFSDevice.maxRequestQueues), got \(requestQueues)")
        }
        guard (1...32768).contains(queueSize) else { throw ValidationError("--queue-size must be between 1 and 32768") }
        if let tag, tag.isEmpty || tag.utf8.count > 36 { throw ValidationError("--tag must be 1 to 36 bytes") }
        if let threadPoolSize, !(0...1024).contains(threadPoolSize) {
            throw ValidationError("--thread-pool-size must be between 0 and 1024, got \(threadPoolSize)")
        }
    }

    /// The vhost-user backend descriptor's capabilities (QEMU's
    /// docs/interop/vhost-user.json): a file system backend that takes
    /// `--shared-dir`-style options. No migration support is claimed.
    static let capabilities = #"{"type": "fs", "features": ["separate-options"]}"#

    /// The listening socket at `path`: mode 0600 (UnixSocket.listen), or
    /// 0660 and the group `--socket-group` names (connecting needs write
    /// permission only).
    func listen(path: String) throws -> FileDescriptor {
        var gid: gid_t?
        if let socketGroup {
            guard let g = getgrnam(socketGroup) else { throw CommandFailure("--socket-group \(socketGroup): no such group") }
            gid = g.pointee.gr_gid
        }
        let fd = try UnixSocket.listen(path: path)
        if let gid, chown(path, uid_t.max, gid) != 0 || chmod(path, 0o660) != 0 {
            throw CommandFailure("--socket-group \(socketGroup ?? ""): giving \(path) to the group: \(Errno.current)")
        }
        return fd
    }

    func run() throws {
        if printCapabilities {
            print(Self.capabilities)
            return
        }
        // Only the frontend's socket (--fd) is kept of what was inherited.
        FileDescriptor.closeInherited(keeping: fd.map { [$0] } ?? [])
        let s = try settings()
        guard let dir = s.sharedDir else { throw ValidationError("no shared directory") }
        // Opened once, here: the sandbox and the file server work from this
        // fd, never from the path again (a symlink swapped in later is not
        // followed), and a path through a symlink is refused.
        var shareFD: FileDescriptor?
        do { shareFD = try ShareDirectory.open(dir) } catch { throw CommandFailure(error.description) }
        if syslog {
            // Connected now: behind the sandbox /dev/log is out of sight.
            do { logToSyslog(try SyslogSink()) } catch {
                logLine("vfsvm serve: cannot log to syslog (\(error)); logging to stderr")
            }
        }
        do { try OpenFileLimit.raise(to: rlimitNofile) } catch { throw CommandFailure(error.description) }
        // The socket's path lies outside the share: listen before the
        // sandbox hides the host.
        let listener: FileDescriptor
        do {
            listener = try (socketPath ?? socket).map { try listen(path: $0) } ?? FileDescriptor(owning: fd ?? -1)
        } catch let e as CommandFailure { throw e } catch { throw CommandFailure("cannot listen for the vhost-user frontend: \(error)") }
        // The share is opened only once the sandbox is in place, through its
        // new root (see Sandbox.Share).
        let confined: Sandbox.Share?
        do {
            switch s.sandbox {
            case .namespace: confined = try Sandbox.enterNamespace(root: dir, rootFD: shareFD!, readOnly: s.readOnly)
            case .chroot: confined = try Sandbox.chroot(root: dir, rootFD: shareFD!)
            case .none: confined = nil
            }
        } catch {
            throw CommandFailure("\(error); pass --sandbox none to run without a process sandbox")
        }
        // Inside a sandbox the host-side fd is not kept: ".." from it would
        // climb into the host's tree (the share is reopened through the new root).
        let unconfinedRoot = confined == nil ? shareFD : nil
        shareFD = nil
        let level = s.logLevel ?? .info
        let server = try makeFileServer(settings: s, engine: ioEngine, trace: level >= .debug, confined: confined,
                                        rootFD: unconfinedRoot)
        // Before anything guest-facing exists (and before any thread starts):
        // keep only the capabilities this share needs.
        do { try Sandbox.dropCapabilities(keeping: s.capabilities, procSelfFD: confined?.procSelfFD) } catch {
            throw CommandFailure("\(error)")
        }
        do { try applySeccomp(seccomp, ioURing: ioEngine == .uring) } catch {
            throw CommandFailure("\(error); pass --seccomp none to run without a system call filter")
        }
        let fs: VirtioFSDevice
        do {
            fs = try VirtioFSDevice(tag: tag ?? "vfsvm", requestQueues: requestQueues, queueSize: queueSize, server: server,
                                    poolThreads: threadPoolSize ?? 0)
        } catch { throw ValidationError("\(error)") }
        let device = VhostUserVirtioBackend(device: fs)
        let offer = tag == nil
            ? VhostUserProtocolFeature.supported & ~VhostUserProtocolFeature.config
            : VhostUserProtocolFeature.supported
        let backend: VhostUserBackendServer
        do {
            // Below info, the routine ends of a connection are not logged.
            let quiet = level < .info
            backend = try VhostUserBackendServer(device: device, listener: listener, protocolFeatures: offer, log: { line in
                if quiet && (line.hasSuffix("front-end disconnected") || line.hasSuffix("stopped")) { return }
                VhostUserBackendServer.logToStandardError(line)
            })
        } catch { throw CommandFailure("\(error)") }
        if level >= .info {
            logLine("vfsvm serve: sharing \(dir) (\(s.sandbox.rawValue) sandbox), waiting for the frontend")
        }
        let end: VhostUserBackendServer.Disconnect?
        do { end = try backend.run(.oneConnection) } catch { throw CommandFailure("\(error)") }
        if case .protocolError(let e) = end { throw CommandFailure("vhost-user frontend sent something refused: \(e)") }
    }
}

extension SeccompMode: ExpressibleByArgument {
    public init?(argument: String) { self.init(named: argument) }
    public static var allValueStrings: [String] { ["kill", "trap", "log", "none"] }
}

extension InodeFileHandles: ExpressibleByArgument {
    public init?(argument: String) { self.init(named: argument) }
    public static var allValueStrings: [String] { ["never", "prefer", "mandatory"] }
}

extension LogLevel: ExpressibleByArgument {
    public init?(argument: String) { self.init(named: argument) }
    public static var allValueStrings: [String] { LogLevel.allCases.map(\.rawValue) }
}
