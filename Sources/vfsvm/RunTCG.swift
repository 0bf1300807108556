import ArgumentParser
import Glibc
import Synchronization
import VfsvmConfig
import VfsvmSys

/// Why the tcg path's VM ended.
enum TCGStop: Sendable {
    case qemuExited(Int32)  // the raw wait status
    case signal(Int32)
    case ctrlAX
    case timeout(Int)
    case panic(String)
    case failure(String)
}

/// What the tcg path starts and must take down on every way out: the
/// private 0700 directory in $TMPDIR or /tmp (sockets, extracted kernel;
/// removed as soon as the guest runs, so that not even a SIGKILL of vfsvm
/// leaves it behind), one sandboxed
/// `vfsvm serve` per share, QEMU in a process group of its own. Each child
/// gets SIGKILL from the kernel should vfsvm itself die (PR_SET_PDEATHSIG,
/// through setpriv(1), since posix_spawn cannot set it).
///
/// The shares are served by `vfsvm serve` children rather than threads of
/// this process: the namespace sandbox (unshare(CLONE_NEWNS) and pivot_root
/// into the share) cannot be entered by one thread of a multi-threaded
/// process, and each share needs its own root.
final class TCGSession {
    let dir: String
    var serves: [ChildProcess] = []
    var qemu: ChildProcess?

    init() throws(PlanError) {
        let parent = getenv("TMPDIR").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array("\(parent)/vfsvm-run.XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            throw PlanError(description: "cannot create a private directory in \(parent): \(Errno.current)", status: 71)
        }
        dir = String(cString: made)
    }

    /// Kills QEMU (its whole group) and the backends that are still
    /// running, reaps them, removes the directory. Harmless twice.
    func cleanup() {
        if let qemu, qemu.isRunning {
            qemu.signalGroup(SIGKILL)
            _ = qemu.wait(timeoutMilliseconds: 5000)
        }
        // A backend ends by itself once QEMU has gone (its frontend hung up).
        for s in serves where s.isRunning { _ = s.wait(timeoutMilliseconds: 1000) }
        for s in serves where s.isRunning {
            s.send(signal: SIGKILL)
            _ = s.wait(timeoutMilliseconds: 5000)
        }
        removeDirectory()
    }

    /// Removes the private directory and what is in it. Once the guest has
    /// printed its first byte QEMU no longer needs it: it read the kernel and
    /// initramfs while building the machine and connected every vhost-user
    /// socket before the first instruction ran (the backends hold their
    /// listening sockets as fds). Harmless twice.
    func removeDirectory() {
        removeTree(dir)
    }

    /// Removes the directory's files and the directory (it holds no
    /// subdirectories).
    private func removeTree(_ path: String) {
        guard let d = opendir(path) else { return }
        while let entry = readdir(d) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { unlink(path + "/" + name) }
        }
        closedir(d)
        rmdir(path)
    }
}

/// Where a program is on $PATH (or the path itself when it has a slash).
func findProgram(_ name: String) -> String? {
    if name.contains("/") { return access(name, X_OK) == 0 ? name : nil }
    let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/local/bin:/usr/bin:/bin"
    for dir in path.split(separator: ":") where access("\(dir)/\(name)", X_OK) == 0 { return "\(dir)/\(name)" }
    return nil
}

extension Run {
    /// The tcg path: QEMU's TCG as the CPU, vfsvm serving the shares.
    func runTCG(_ plan: RunPlan) throws {
        let qemuName = getenv("VFSVM_QEMU").map { String(cString: $0) } ?? QEMUCommandLine.binary
        if printQemuCmdline {
            let paths = QEMUCommandLine.Paths(
                memoryFD: 3, kernel: plan.kernelPath ?? "/tmp/vfsvm-run.XXXXXX/kernel",
                initrd: plan.initrdPath ?? (plan.image.initrd == nil ? nil : "/tmp/vfsvm-run.XXXXXX/initrd"),
                shareSockets: plan.shares.indices.map { "/tmp/vfsvm-run.XXXXXX/fs\($0).sock" })
            print(QEMUCommandLine.shellLine([qemuName] + QEMUCommandLine.arguments(for: plan, paths: paths)))
            return
        }
        guard let qemuPath = findProgram(qemuName) else {
            throw failure("the tcg path needs \(qemuName), which is not on PATH (install qemu-system-x86, or use --accel kvm)", status: 69)
        }
        let setpriv = findProgram("setpriv")
        let selfPath = (try? readLink("/proc/self/exe")) ?? CommandLine.arguments[0]

        // Signals are taken by one thread from here on; children start with
        // an empty mask and default dispositions (ChildProcess). SIGPIPE is
        // ignored: a closed stdout (`| head -c 100`) is EPIPE for the console
        // pump, which stops the guest, and vfsvm cleans up as on any stop.
        blockSignals([SIGINT, SIGTERM, SIGHUP])
        signal(SIGPIPE, SIG_IGN)
        let session: TCGSession
        do { session = try TCGSession() } catch { throw failure(error.description, status: error.status) }
        defer { session.cleanup() }

        let stop = StopRequest()
        let reason: TCGStop
        let console: Console
        do {
            console = try Console()
            reason = try boot(plan, session: session, qemuPath: qemuPath, setpriv: setpriv, selfPath: selfPath,
                              console: console, stop: stop)
        } catch let e as PlanError {
            throw failure(e.description, status: e.status)
        }
        console.restore()
        session.cleanup()
        switch reason {
        case .qemuExited(let status):
            if status & 0x7f == 0 {
                let code = (status >> 8) & 0xff
                if code != 0 { throw ExitCode(code) }
                return
            }
            throw failure("\(qemuName) was killed by signal \(status & 0x7f)", status: 1)
        case .signal(let sig): throw ExitCode(128 + sig)
        case .ctrlAX: return
        case .timeout(let seconds):
            throw failure("the guest was still running after --timeout \(seconds) s; it was stopped", status: 124)
        case .panic(let line): throw failure("the guest kernel panicked: \(line)", status: 1)
        case .failure(let line): throw failure(line, status: 1)
        }
    }

    /// Starts the backends and QEMU, forwards the console, and waits for
    /// the first reason to stop.
    private func boot(_ plan: RunPlan, session: TCGSession, qemuPath: String, setpriv: String?, selfPath: String,
                      console: Console, stop: StopRequest) throws -> TCGStop {
        func spawn(_ program: String, _ args: [String], stdin: FileDescriptor? = nil, stdout: FileDescriptor? = nil,
                   inherit: [FileDescriptor] = [], group: Bool = false) throws(PlanError) -> ChildProcess {
            do {
                if let setpriv {
                    return try ChildProcess(path: setpriv, arguments: ["--pdeathsig", "KILL", "--", program] + args,
                                            stdin: stdin, stdout: stdout, inherit: inherit, ownProcessGroup: group)
                }
                return try ChildProcess(path: program, arguments: args, stdin: stdin, stdout: stdout, inherit: inherit,
                                        ownProcessGroup: group)
            } catch {
                throw PlanError(description: "cannot start \(program): \(error.errno)", status: 71)
            }
        }
        func io<T>(_ what: String, _ body: () throws -> T) throws(PlanError) -> T {
            do { return try body() } catch let e as SystemError {
                throw PlanError(description: "\(what): \(e.errno)", status: 71)
            } catch {
                throw PlanError(description: "\(what): \(error)", status: 71)
            }
        }

        // The kernel and initramfs as files QEMU can read.
        let kernelPath = try plan.kernelPath ?? io("cannot write the kernel to \(session.dir)") {
            try writeFile(session.dir + "/kernel", plan.image.bzImage ?? plan.image.kernel)
        }
        var initrdPath = plan.initrdPath
        if initrdPath == nil, let initrd = plan.image.initrd {
            initrdPath = try io("cannot write the initramfs to \(session.dir)") { try writeFile(session.dir + "/initrd", initrd) }
        }

        // One sandboxed backend per share, on a socket vfsvm listens on.
        var sockets: [String] = []
        for (i, share) in plan.shares.enumerated() {
            let path = session.dir + "/fs\(i).sock"
            let listener = try io("cannot listen on \(path)") { try UnixSocket.listen(path: path) }
            let args = Self.serveArguments(share, listener: listener.rawValue, requestQueues: plan.requestQueues)
            session.serves.append(try spawn(selfPath, args, inherit: [listener]))
            sockets.append(path)
        }

        let memory = try io("cannot create the guest memory") { try MemFD.create(name: "vfsvm-guest-ram", size: Int(plan.memoryBytes)) }
        // Only the optionals hold QEMU's ends, so setting them to nil after
        // the spawn closes ours: the console then sees EOF when QEMU goes.
        var stdinPipe: (read: FileDescriptor, write: FileDescriptor)? = try io("pipe") { try makePipe() }
        var stdoutPipe: (read: FileDescriptor, write: FileDescriptor)? = try io("pipe") { try makePipe() }
        let toGuest = stdinPipe!.write
        let fromGuest = stdoutPipe!.read
        let paths = QEMUCommandLine.Paths(memoryFD: memory.rawValue, kernel: kernelPath, initrd: initrdPath, shareSockets: sockets)
        let qemu = try spawn(qemuPath, QEMUCommandLine.arguments(for: plan, paths: paths), stdin: stdinPipe!.read,
                             stdout: stdoutPipe!.write, inherit: [memory], group: true)
        session.qemu = qemu
        stdinPipe = nil
        stdoutPipe = nil

        var directoryRemoved = false
        try? OSThread(name: "signals") {
            let sig = waitForSignal([SIGINT, SIGTERM, SIGHUP])
            stop.request(.signal(sig))
        }.detach()
        let pump = try io("cannot start the console thread") { try ConsolePump(from: fromGuest, stop: stop) }
        try io("cannot set up the terminal") { try console.enterRawMode() }
        try io("cannot start the console thread") {
            try console.startInput(receive: { bytes in try? toGuest.writeAll(bytes) }, quit: { stop.request(.ctrlAX) })
        }
        defer {
            console.stop()
            console.restore()
        }

        let clock = ContinuousClock()
        let deadline = timeout.map { clock.now + .seconds($0) }
        var result: TCGStop
        while true {
            if !qemu.isRunning {
                // The console's last lines (a panic report) come first, unless
                // stdout does not take them.
                pump.finish(waitingMilliseconds: 2000)
                result = stop.current ?? .qemuExited(qemu.waitStatus ?? 0)
                session.cleanup()
                return result
            }
            if let r = stop.current {
                if case .panic = r {
                    // Let the rest of the panic report reach the console.
                    _ = qemu.wait(timeoutMilliseconds: 500)
                }
                result = r
                break
            }
            if !directoryRemoved && stop.guestStarted {
                session.removeDirectory()
                directoryRemoved = true
            }
            if let deadline, clock.now >= deadline { result = .timeout(timeout ?? 0); break }
            _ = try? pollReadable([stop.wake.fd.rawValue], timeoutMilliseconds: 20)
        }
        session.cleanup()
        // QEMU is gone, so the pump sees EOF once it has written what it
        // read; a stdout nobody drains must not hold vfsvm forever.
        pump.finish(waitingMilliseconds: 1000)
        return result
    }
}

/// The console-out thread: QEMU's COM1 to our stdout (`pumpConsole`), with
/// a bounded wait for its end. It may block in write(1) for as long as
/// stdout is not drained (a pipe nobody reads, a terminal on Ctrl-S): then
/// it is left behind (detached) and ends with the process.
final class ConsolePump {
    private let thread: OSThread
    private let done: EventFD
    private var finished = false

    init(from fd: FileDescriptor, stop: StopRequest) throws {
        let done = try EventFD(nonBlocking: true)
        self.done = done
        thread = try OSThread(name: "console-out") {
            pumpConsole(from: fd, stop: stop)
            try? done.signal()
        }
    }

    /// Waits up to `waitingMilliseconds` for the pump to end; joins it if it
    /// did, else detaches it. Harmless twice.
    func finish(waitingMilliseconds: Int32) {
        guard !finished else { return }
        finished = true
        if (try? pollReadable([done.fd.rawValue], timeoutMilliseconds: waitingMilliseconds)) == [true] {
            thread.join()
        } else {
            thread.detach()
        }
    }
}

extension Run {
    /// `vfsvm serve`'s arguments for one share of the tcg path. The
    /// directory goes in as `--shared-dir=DIR`: a name starting with '-'
    /// is then a value, not another option.
    static func serveArguments(_ share: ShareSpec, listener: Int32, requestQueues: Int) -> [String] {
        var args = ["serve", "--fd", "\(listener)", "--shared-dir=\(share.hostPath)",
                    "--request-queues", "\(requestQueues)", "--log-level", "warn"]
        if let cache = share.cache { args += ["--cache", cache.rawValue] }
        if share.readOnly { args.append("--readonly") }
        return args
    }
}

/// The first reason to stop, set from any thread; `wake` is signalled.
final class StopRequest: Sendable {
    private let reason = Mutex<TCGStop?>(nil)
    private let started = Mutex(false)
    let wake: EventFD

    init() { wake = (try? EventFD(nonBlocking: true)) ?? { fatalError("eventfd") }() }

    func request(_ r: TCGStop) {
        let first = reason.withLock { current in
            if current != nil { return false }
            current = r
            return true
        }
        if first { try? wake.signal() }
    }

    var current: TCGStop? { reason.withLock { $0 } }

    /// The console has seen the guest's first byte (QEMU is past start-up).
    var guestStarted: Bool { started.withLock { $0 } }

    /// Not signalled on `wake` (nothing drains it before a stop): the
    /// main loop looks every 20 ms.
    func noteGuestStarted() {
        started.withLock { $0 = true }
    }
}

/// QEMU's COM1 (its stdout) to our stdout until EOF, watching each line for
/// the kernel's "Kernel panic - not syncing".
private func pumpConsole(from fd: FileDescriptor, stop: StopRequest) {
    let stdout = UnownedDescriptor(1)
    var line: [UInt8] = []
    let marker = Array("Kernel panic - not syncing".utf8)
    while true {
        guard let bytes = try? fd.readSome(limit: 4096), !bytes.isEmpty else { return }
        stop.noteGuestStarted()
        var out = bytes[...]
        while !out.isEmpty {
            let n: Int
            do { n = try sysCall("write(stdout)") { out.withUnsafeBytes { Glibc.write(stdout.rawValue, $0.baseAddress, $0.count) } } } catch {
                // Nobody reads stdout any more: stop as SIGPIPE would have
                // (exit 141), but through the cleanup.
                if error.errno == .EPIPE {
                    stop.request(.signal(SIGPIPE))
                    return
                }
                break
            }
            if n <= 0 { break }
            out = out.dropFirst(n)
        }
        for b in bytes {
            if b == UInt8(ascii: "\n") {
                if let at = line.firstRange(of: marker) {
                    let text = String(decoding: line[at.lowerBound...], as: UTF8.self)
                    stop.request(.panic(text.trimmingTrailingNewlines()))
                }
                line.removeAll(keepingCapacity: true)
            } else if line.count < 1024 {
                line.append(b)
            }
        }
    }
}

/// Creates `path` (0600) with `bytes`; returns the path.
func writeFile(_ path: String, _ bytes: [UInt8]) throws(SystemError) -> String {
    let fd = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode: 0o600)
    try fd.writeAll(bytes)
    return path
}

func readLink(_ path: String) throws(SystemError) -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = try sysCall("readlink(\(path))") { Glibc.readlink(path, &buffer, buffer.count - 1) }
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
