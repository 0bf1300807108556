import CVfsvmLinux
import Glibc
import Synchronization
import VfsvmSys

/// A virtual CPU: its fd and the `kvm_run` structure KVM shares with
/// userspace through an mmap of that fd. Only this type reads or writes
/// `kvm_run`.
///
/// One thread runs it (`run()` in a loop); `kick()` may be called from any
/// thread to make that loop's KVM_RUN return `.interrupted` for good
/// (shutdown).
public final class VCPU: @unchecked Sendable {
    // @unchecked: `runMapping` is written by KVM and by the one thread that
    // calls `run()`, except `immediate_exit`, which `kick()` sets from any
    // thread before signalling (a single byte KVM reads on entry).
    public let id: Int
    let fd: FileDescriptor
    private let runMapping: MemoryMapping
    private let mapSize: Int
    /// The thread inside `run()`, for `kick()` to signal; set and cleared
    /// by that thread under the lock, so a kick never signals a thread
    /// that has gone.
    private let runner = Mutex<pthread_t?>(nil)

    init(vm: VirtualMachine, id: Int, fd: FileDescriptor) throws(KVMError) {
        self.id = id
        self.fd = fd
        mapSize = vm.kvm.vcpuMapSize
        do {
            runMapping = try MemoryMapping(fd: fd, count: mapSize)
        } catch {
            throw .ioctl(SystemError("mmap(kvm_run of vCPU \(id))", error.errno))
        }
        VCPU.installKickHandler()
    }

    private var kvmRun: UnsafeMutablePointer<kvm_run> {
        // Safe: the mapping is at least sizeof(kvm_run) (checked in KVM.init),
        // page aligned, and lives as long as self.
        runMapping.base.assumingMemoryBound(to: kvm_run.self)
    }

    // MARK: - Running

    /// KVM_RUN until the next exit, decoded. Call from one thread only.
    /// After an `.io` exit with direction `.in` or an `.mmio` read, store
    /// the result (`setIOValue`, `setMMIOValue`, `withIOData`,
    /// `withMMIOData`) before the next `run()`: KVM completes the guest's
    /// instruction with it on re-entry.
    public func run() throws(KVMError) -> VCPUExit {
        var interrupted = false
        try sysCallOrError("ioctl(KVM_RUN)") { () -> Int32 in
            let r = vfsvm_ioctl_val(fd.rawValue, VFSVM_KVM_RUN, 0)
            // EINTR is the kick (a signal or immediate_exit), not a failure,
            // and must not be retried: report it as an exit.
            if r == -1 && Glibc.errno == EINTR {
                interrupted = true
                return 0
            }
            return r
        }
        if interrupted { return .interrupted }
        // Safe: `run` points at the live kvm_run; the union member read is
        // the one `exit_reason` says KVM filled.
        let r = kvmRun
        switch Int32(r.pointee.exit_reason) {
        case KVM_EXIT_IO:
            let io = r.pointee.io
            return .io(IOExit(direction: io.direction == KVM_EXIT_IO_OUT ? .out : .in, port: io.port,
                              size: Int(io.size), count: Int(io.count)))
        case KVM_EXIT_MMIO:
            let m = r.pointee.mmio
            return .mmio(MMIOExit(address: m.phys_addr, length: Int(m.len), isWrite: m.is_write != 0))
        case KVM_EXIT_HLT: return .hlt
        case KVM_EXIT_SHUTDOWN: return .shutdown
        case KVM_EXIT_SYSTEM_EVENT: return .systemEvent(SystemEvent(r.pointee.system_event.type))
        case KVM_EXIT_INTERNAL_ERROR:
            let e = r.pointee.internal
            let words = withUnsafeBytes(of: e.data) { Array($0.bindMemory(to: UInt64.self)) }
            return .internalError(suberror: e.suberror, data: Array(words.prefix(Int(min(e.ndata, 16)))))
        case KVM_EXIT_FAIL_ENTRY:
            let f = r.pointee.fail_entry
            return .failEntry(hardwareReason: f.hardware_entry_failure_reason, cpu: f.cpu)
        case KVM_EXIT_INTR: return .interrupted
        case KVM_EXIT_EXCEPTION: return .exception(vector: r.pointee.ex.exception, errorCode: r.pointee.ex.error_code)
        case KVM_EXIT_UNKNOWN: return .unknown(reason: 0, hardwareReason: r.pointee.hw.hardware_exit_reason)
        default: return .unknown(reason: r.pointee.exit_reason, hardwareReason: 0)
        }
    }

    // MARK: - Exit data

    /// The bytes of the current I/O exit (`size * count` of them, at
    /// `kvm_run.io.data_offset`), lent to `body`: read them for `out`, fill
    /// them for `in`.
    public func withIOData<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        let io = kvmRun.pointee.io
        let offset = Int(io.data_offset)
        let length = Int(io.size) * Int(io.count)
        // KVM places the data inside the vCPU mapping; a value outside it
        // would be a kernel bug, lend nothing rather than overrun.
        guard offset >= MemoryLayout<kvm_run>.size, length >= 0, offset <= mapSize, length <= mapSize - offset else {
            return try body(UnsafeMutableRawBufferPointer(start: nil, count: 0))
        }
        // Safe: [offset, offset + length) lies inside the live mapping (checked above).
        return try body(UnsafeMutableRawBufferPointer(start: runMapping.base + offset, count: length))
    }

    /// Access `index` (0 for a plain `in`/`out`) of the current I/O exit,
    /// zero-extended.
    public func ioValue(_ index: Int = 0) -> UInt32 {
        withIOData { buffer in
            let size = Int(kvmRun.pointee.io.size)
            var value: UInt32 = 0
            for i in 0..<size where index * size + i < buffer.count {
                value |= UInt32(buffer[index * size + i]) << (8 * i)
            }
            return value
        }
    }

    /// Stores the result of access `index` of the current `in` exit (its
    /// low `size` bytes).
    public func setIOValue(_ value: UInt32, _ index: Int = 0) {
        withIOData { buffer in
            let size = Int(kvmRun.pointee.io.size)
            for i in 0..<size where index * size + i < buffer.count {
                buffer[index * size + i] = UInt8(truncatingIfNeeded: value >> (8 * i))
            }
        }
    }

    /// The data bytes of the current MMIO exit (`kvm_run.mmio.data`, `len`
    /// of them), lent to `body`: read them for a write, fill them for a read.
    public func withMMIOData<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        let length = min(Int(kvmRun.pointee.mmio.len), 8)
        // Safe: `mmio.data` is an 8-byte array inside the live kvm_run;
        // the pointer is used only within this call.
        return try withUnsafeMutablePointer(to: &kvmRun.pointee.mmio.data) { p in
            try body(UnsafeMutableRawBufferPointer(start: UnsafeMutableRawPointer(p), count: length))
        }
    }

    /// The value the guest stored in the current MMIO write, zero-extended.
    public func mmioValue() -> UInt64 {
        withMMIOData { buffer in buffer.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * $1.offset) } }
    }

    /// The value the guest's current MMIO read receives (its low `len` bytes).
    public func setMMIOValue(_ value: UInt64) {
        withMMIOData { buffer in
            for i in buffer.indices { buffer[i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
        }
    }

    // MARK: - Kicking the vCPU out of KVM_RUN

    /// The signal `kick()` sends. Its handler does nothing: the point is
    /// that KVM_RUN returns EINTR.
    public static let kickSignal = SIGUSR2

    private static let handlerInstalled: Bool = {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0  // no SA_RESTART: KVM_RUN must return EINTR
        return sigaction(kickSignal, &action, nil) == 0
    }()

    static func installKickHandler() { _ = handlerInstalled }

    /// Marks the calling thread as the one running this vCPU, so `kick()`
    /// can reach it. Call before the run loop; `leaveThread()` after it.
    public func enterThread() {
        let me = pthread_self()
        runner.withLock { $0 = me }
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, Self.kickSignal)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    public func leaveThread() { runner.withLock { $0 = nil } }

    /// Stops the vCPU: sets `kvm_run.immediate_exit` (so a KVM_RUN about to
    /// start returns at once) and signals the thread inside `run()` (so one
    /// already running returns). Every later `run()` returns
    /// `.interrupted` too.
    public func kick() {
        kvmRun.pointee.immediate_exit = 1
        runner.withLock { thread in
            if let thread { _ = pthread_kill(thread, Self.kickSignal) }
        }
    }

    /// Whether `kick()` has been called.
    public var isKicked: Bool { kvmRun.pointee.immediate_exit != 0 }
}

/// `sysCall` with the failure as a `KVMError`.
@discardableResult
func sysCallOrError<R: FixedWidthInteger>(_ call: String, _ body: () -> R) throws(KVMError) -> R {
    do { return try sysCall(call, body) } catch { throw .ioctl(error) }
}
