import CVfsvmLinux
import Glibc
import Synchronization
import VfsvmMemory
import VfsvmSys

/// How fast this host's KVM runs guest code, measured: a calibration guest
/// of 40,002 real-mode instructions (a counted loop, then `hlt`) is timed
/// from KVM_RUN to its `hlt` exit, the fastest of a few runs after a warm-up.
///
/// Hardware-assisted KVM runs it in tens of microseconds; a software KVM,
/// which interprets every guest instruction at about 1 to 3 million a
/// second, takes 13 ms or more (about 50 ms on this project's machines).
/// `vfsvm run --accel auto` uses the in-process VMM only when the figure is
/// under `KVMCalibration.threshold`.
public enum KVMCalibration {
    /// Iterations of the guest's two-instruction loop (`dec cx; jnz`).
    public static let loopIterations: UInt16 = 20000

    /// Instructions the guest executes: 1 (`mov cx`) + 2 per iteration + `hlt`.
    public static var instructions: Int { 2 + 2 * Int(loopIterations) }

    /// The decision threshold: over 100 times what hardware KVM needs, and
    /// under half of what a 3-million-instructions-a-second software KVM
    /// needs.
    public static let threshold: Duration = .milliseconds(5)
    public static let thresholdText = "5 ms"

    /// Longest the calibration may run before it is stopped and taken as
    /// "far too slow" (a software KVM on a loaded host).
    public static let limit: Duration = .seconds(2)

    public struct Result: Sendable, CustomStringConvertible {
        /// From the first KVM_RUN to the guest's `hlt` exit.
        public let elapsed: Duration
        /// True when the guest did not reach `hlt` within `limit`.
        public let timedOut: Bool

        public init(elapsed: Duration, timedOut: Bool) {
            self.elapsed = elapsed
            self.timedOut = timedOut
        }

        public var isHardwareSpeed: Bool { !timedOut && elapsed < KVMCalibration.threshold }

        /// Elapsed time in milliseconds with three decimals, e.g. "0.412 ms".
        public var milliseconds: String {
            let micros = elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000
            let ms = micros / 1000, frac = micros % 1000
            let pad = frac < 10 ? "00" : frac < 100 ? "0" : ""
            return "\(ms).\(pad)\(frac) ms"
        }

        public var description: String {
            timedOut
                ? "the \(KVMCalibration.instructions)-instruction calibration guest did not finish within 2 s"
                : "the \(KVMCalibration.instructions)-instruction calibration guest took \(milliseconds) under KVM"
        }
    }

    /// The guest: `mov cx, N; l: dec cx; jnz l; hlt` at 0x1000, real mode.
    static var code: [UInt8] {
        let n = loopIterations
        return [0xb9, UInt8(n & 0xff), UInt8(n >> 8), 0x49, 0x75, 0xfd, 0xf4]
    }

    /// Runs after the warm-up: the figure is the fastest of these, so one
    /// sample slowed by the other tenants of a shared host does not send a
    /// hardware host down the slow path.
    public static let samples = 3

    /// A sample this far over the threshold decides at once: repeating a
    /// software KVM's 50 ms run would only delay start-up.
    static let clearlySlow: Duration = threshold * 4

    /// Runs the calibration guest under `/dev/kvm` (or `path`): once to warm
    /// up (page faults, the first entry), then up to `samples` times; the
    /// result is the fastest run. Throws when KVM cannot be opened or
    /// refuses the guest.
    public static func measure(path: String = "/dev/kvm") throws(KVMError) -> Result {
        let clock = ContinuousClock()
        let kvm = try KVM(path: path, requiring: [])
        let vm = try kvm.createVM()
        try vm.setTSSAddress(0xfffb_d000)
        try vm.setIdentityMapAddress(0xfffb_c000)
        let memory: GuestMemory
        do {
            memory = try GuestMemory.anonymous(size: 0x10000)
            try memory.writeBytes(code, at: GuestAddress(0x1000))
        } catch {
            throw .ioctl(SystemError("calibration guest memory", .ENOMEM))
        }
        try vm.map(memory)
        let vcpu = try vm.createVCPU(id: 0)
        var sregs = try vcpu.specialRegisters()
        sregs.cs.base = 0
        sregs.cs.selector = 0
        try vcpu.setSpecialRegisters(sregs)

        // A watchdog kicks the vCPU if the runs have not finished in time.
        let done = Atomic<Bool>(false)
        vcpu.enterThread()
        defer { vcpu.leaveThread() }
        let watchdog: OSThread
        do {
            watchdog = try OSThread(name: "kvm-calibrate") {
                let deadline = clock.now + limit
                while !done.load(ordering: .acquiring) && clock.now < deadline { usleep(1000) }
                if !done.load(ordering: .acquiring) { vcpu.kick() }
            }
        } catch {
            throw .ioctl(SystemError("the calibration watchdog thread", error.errno))
        }
        defer {
            done.store(true, ordering: .releasing)
            watchdog.join()
        }

        /// One run from `rip` 0x1000 to the `hlt` exit (or the kick).
        func runOnce() throws(KVMError) -> Result {
            var regs = kvm_regs()
            regs.rip = 0x1000
            regs.rflags = 2
            try vcpu.setRegisters(regs)
            let start = clock.now
            while true {
                let exit = try vcpu.run()
                switch exit {
                case .hlt:
                    return Result(elapsed: clock.now - start, timedOut: false)
                case .interrupted:
                    return Result(elapsed: clock.now - start, timedOut: true)
                default:
                    throw .ioctl(SystemError("KVM_RUN of the calibration guest (it stopped with \(exit.name))", .EIO))
                }
            }
        }

        var best = try runOnce()  // the warm-up
        if best.timedOut || best.elapsed >= clearlySlow { return best }
        for _ in 0..<samples {
            let r = try runOnce()
            if r.timedOut { return best }
            if r.elapsed < best.elapsed { best = r }
        }
        return best
    }
}
