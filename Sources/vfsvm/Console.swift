import Glibc
import Synchronization
import VfsvmMachine
import VfsvmSys

/// The guest console on vfsvm's own terminal: COM1's output to stdout,
/// stdin to COM1's receiver.
///
/// When stdin is a terminal it is put in raw mode (every key goes to the
/// guest, Ctrl-C included) and restored by `restore()`, which `vfsvm run`
/// calls on every way out; Ctrl-A starts a command as in QEMU: Ctrl-A x
/// quits, Ctrl-A h lists the keys, Ctrl-A Ctrl-A sends a Ctrl-A. When
/// stdin is not a terminal its bytes are forwarded as they are.
final class Console: @unchecked Sendable {
    // @unchecked: `saved` is written before the input thread starts and
    // read after it ends; the thread touches only `stopFD` and the machine.
    static let escape: UInt8 = 0x01  // Ctrl-A

    let isTerminal: Bool
    private var saved: termios?
    private let stopFD: EventFD
    private var thread: OSThread?

    init() throws(SystemError) {
        isTerminal = isatty(0) == 1
        stopFD = try EventFD()
    }

    /// Raw mode on a terminal stdin (no echo, no line editing, no signals
    /// from keys); the previous settings are kept for `restore`.
    func enterRawMode() throws(SystemError) {
        guard isTerminal else { return }
        var t = termios()
        _ = try sysCall("tcgetattr(stdin)") { tcgetattr(0, &t) }
        saved = t
        // A seccomp kill (RunSandbox.swift) must not leave the terminal raw.
        Seccomp.restoreTerminalWhenKilled(fd: 0, t)
        cfmakeraw(&t)
        t.c_oflag |= tcflag_t(OPOST | ONLCR)  // vfsvm's own messages keep their line breaks
        _ = try sysCall("tcsetattr(stdin)") { tcsetattr(0, TCSANOW, &t) }
    }

    /// Puts the terminal back as it was; harmless to call twice.
    func restore() {
        guard var t = saved else { return }
        _ = try? sysCall("tcsetattr(stdin)") { tcsetattr(0, TCSANOW, &t) }
        saved = nil
        Seccomp.restoreTerminalWhenKilled(fd: 0, nil)
    }

    /// Forwards stdin to the guest's UART on a thread of its own until
    /// `stop()` (or EOF on stdin).
    func startInput(to machine: Machine) throws(SystemError) {
        try startInput(receive: { machine.serial.receive($0) },
                       quit: { machine.stop(.quit("terminated by Ctrl-A x", status: 0)) })
    }

    /// Forwards stdin to `receive` (the guest's COM1: the in-process UART,
    /// or QEMU's stdin on the tcg path) on a thread of its own until
    /// `stop()` (or EOF on stdin); on a terminal Ctrl-A x calls `quit`.
    func startInput(receive: @escaping @Sendable ([UInt8]) -> Void, quit: @escaping @Sendable () -> Void) throws(SystemError) {
        let stopFD = self.stopFD
        let terminal = isTerminal
        thread = try OSThread(name: "console") {
            var buffer = [UInt8](repeating: 0, count: 4096)
            var afterEscape = false
            while true {
                guard let ready = try? pollReadable([0, stopFD.fd.rawValue]), !ready[1] else { return }
                guard ready[0] else { continue }
                let n = (try? buffer.withUnsafeMutableBytes { raw in Result { () throws(SystemError) in try FileDescriptor.standardInput.read(into: raw) } }.get()) ?? 0
                if n <= 0 { return }  // EOF or error: the guest just gets no more input
                guard terminal else {
                    receive(Array(buffer[0..<n]))
                    continue
                }
                var forward: [UInt8] = []
                for byte in buffer[0..<n] {
                    if afterEscape {
                        afterEscape = false
                        switch byte {
                        case UInt8(ascii: "x"):
                            writeStandardError("\r\nvfsvm: terminated by Ctrl-A x\r\n")
                            quit()
                            return
                        case UInt8(ascii: "h"), UInt8(ascii: "?"):
                            writeStandardError("\r\nC-a h    print this help\r\nC-a x    exit vfsvm (the guest is stopped)\r\nC-a C-a  send C-a to the guest\r\n")
                        case Console.escape: forward.append(Console.escape)
                        default: break
                        }
                    } else if byte == Console.escape {
                        afterEscape = true
                    } else {
                        forward.append(byte)
                    }
                }
                if !forward.isEmpty { receive(forward) }
            }
        }
    }

    func stop() {
        try? stopFD.signal()
        thread?.join()
        thread = nil
    }
}

extension FileDescriptor {
    /// fd 0, not owned (never closed by vfsvm).
    static let standardInput = UnownedDescriptor(0)
}

/// An fd vfsvm did not open and must not close (stdin, stdout).
struct UnownedDescriptor: Sendable {
    let rawValue: Int32
    init(_ rawValue: Int32) { self.rawValue = rawValue }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int {
        try sysCall("read(fd \(rawValue))") { Glibc.read(rawValue, buffer.baseAddress, buffer.count) }
    }

    /// Writes one byte, retrying EINTR and EAGAIN; false when the reader
    /// has gone (EPIPE, with SIGPIPE ignored). Other errors drop the byte
    /// (the console is best effort).
    func write(byte: UInt8) -> Bool {
        var b = byte
        while true {
            let n = (try? sysCall("write(fd \(rawValue))") { Glibc.write(rawValue, &b, 1) }) ?? -1
            if n == 1 { return true }
            switch Errno.current {
            case .EAGAIN, .EINTR: continue
            case .EPIPE: return false
            default: return true
            }
        }
    }
}

/// COM1's output on the KVM path: each byte to stdout. When stdout's
/// reader goes away (`vfsvm run ... | head`) the write fails with EPIPE
/// (runKVM ignores SIGPIPE, which would otherwise end vfsvm on the spot
/// with the terminal left raw); `closed` is then called once, and later
/// bytes are dropped.
final class ConsoleOutput: Sendable {
    private let fd: UnownedDescriptor
    private let gone = Atomic<Bool>(false)
    private let onClosed = Mutex<(@Sendable () -> Void)?>(nil)

    init(fd: UnownedDescriptor = UnownedDescriptor(1)) { self.fd = fd }

    /// What to do when the reader has gone (set before the guest runs).
    func whenClosed(_ body: @escaping @Sendable () -> Void) { onClosed.withLock { $0 = body } }

    func write(byte: UInt8) {
        guard !gone.load(ordering: .relaxed) else { return }
        if fd.write(byte: byte) { return }
        if gone.exchange(true, ordering: .relaxed) { return }
        onClosed.withLock { $0 }?()
    }
}
