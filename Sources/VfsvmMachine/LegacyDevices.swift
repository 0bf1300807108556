import Glibc
import Synchronization
import VfsvmBoot
import VfsvmSys

/// Why the machine stops: the guest powered off, reset, wrote to the
/// debug-exit port; the user quit; or something the VMM cannot go on from.
public enum MachineStop: Hashable, Sendable, CustomStringConvertible {
    /// ACPI S5 through PM1a_CNT (SLP_TYP 5 with SLP_EN).
    case powerOff
    /// i8042 reset (0xFE to port 0x64), a triple fault, or KVM's reset
    /// event: taken as a reboot, which ends the VM.
    case reboot(String)
    /// isa-debug-exit on port 0x501: the value the guest wrote.
    case debugExit(UInt32)
    /// Ctrl-A x on the console (status 0, as QEMU), or a signal to vfsvm
    /// (128 + the signal, as a shell reports it).
    case quit(String, status: Int32)
    /// An exit vfsvm cannot handle, a guest crash, or KVM refusing something:
    /// one line saying which.
    case failure(String)

    /// The process exit status (issue 9): 0 for power-off and reboot,
    /// (v << 1) | 1 for debug-exit (QEMU's isa-debug-exit convention),
    /// 1 for a failure, the quit's own status.
    public var exitStatus: Int32 {
        switch self {
        case .powerOff, .reboot: 0
        case let .debugExit(v): Int32(truncatingIfNeeded: (v << 1 | 1) & 0xff)
        case let .quit(_, status): status
        case .failure: 1
        }
    }

    public var description: String {
        switch self {
        case .powerOff: "the guest powered off"
        case let .reboot(why): "the guest rebooted (\(why)); vfsvm ends the VM on reboot"
        case let .debugExit(v): "the guest wrote 0x\(String(v, radix: 16)) to the debug-exit port"
        case let .quit(why, _): why
        case let .failure(why): why
        }
    }
}

/// isa-debug-exit (QEMU's device, port 0x501): a write of v ends the VM
/// with exit status (v << 1) | 1. Reads return 0xFF... (nothing there).
public final class DebugExit: PortDevice {
    private let stop: @Sendable (MachineStop) -> Void

    public init(stop: @escaping @Sendable (MachineStop) -> Void) { self.stop = stop }

    public func read(offset: UInt16, size: Int) -> UInt32 { 0xffff_ffff }
    public func write(offset: UInt16, size: Int, value: UInt32) { stop(.debugExit(value)) }
}

/// The i8042 keyboard controller, as much as a guest without a keyboard
/// needs: a status register, the command byte, the self test, and the
/// reset line (command 0xFE pulses the CPU's reset: the VM ends as a reboot).
public final class I8042: PortDevice {
    /// Status: bit 0 output buffer full, bit 2 system flag (POST passed).
    static let statusOutputFull: UInt8 = 0x01
    static let statusSystemFlag: UInt8 = 0x04

    private struct State {
        var output: UInt8?
        var commandByte: UInt8 = 0x45  // translate, system flag, IRQ1 enabled
        var pendingWrite: UInt8?  // command waiting for its data byte
    }

    private let state = Mutex(State())
    private let stop: @Sendable (MachineStop) -> Void

    public init(stop: @escaping @Sendable (MachineStop) -> Void) { self.stop = stop }

    /// One device on ports 0x60 and 0x64: offsets 0 and 4 of a 5-port range.
    public func read(offset: UInt16, size: Int) -> UInt32 {
        state.withLock { s in
            switch offset {
            case 0:
                defer { s.output = nil }
                return UInt32(s.output ?? 0)
            case 4: return UInt32(Self.statusSystemFlag | (s.output != nil ? Self.statusOutputFull : 0))
            default: return 0xff
            }
        }
    }

    public func write(offset: UInt16, size: Int, value: UInt32) {
        let byte = UInt8(truncatingIfNeeded: value)
        let reset = state.withLock { s -> Bool in
            switch offset {
            case 0:
                if s.pendingWrite == 0x60 { s.commandByte = byte }
                s.pendingWrite = nil
            case 4:
                switch byte {
                case 0x20: s.output = s.commandByte  // read command byte
                case 0x60: s.pendingWrite = byte  // write command byte: data follows
                case 0xaa: s.output = 0x55  // controller self test passed
                case 0xab: s.output = 0x00  // keyboard interface test passed
                case X86Ports.i8042ResetCommand: return true  // pulse reset
                default: break  // enable/disable ports etc.: nothing to do
                }
            default: break
            }
            return false
        }
        if reset { stop(.reboot("i8042 reset")) }
    }
}

/// The CMOS real-time clock (MC146818) on ports 0x70 (index; bit 7 masks
/// NMI) and 0x71 (data): the host's UTC time, ticking, in BCD or binary
/// and 12- or 24-hour form as status register B says, plus 128 bytes of
/// CMOS RAM. Setting the time is not modelled: writes to the time
/// registers are kept as RAM but reads give the host clock.
public final class CMOSClock: PortDevice {
    static let statusA: Int = 0x0a
    static let statusB: Int = 0x0b
    static let statusC: Int = 0x0c
    static let statusD: Int = 0x0d
    static let century: Int = 0x32
    static let bBinary: UInt8 = 0x04  // DM
    static let b24Hour: UInt8 = 0x02

    private struct State {
        var index: Int = 0
        var ram = [UInt8](repeating: 0, count: 128)
    }

    private let state: Mutex<State>
    private let now: @Sendable () -> time_t

    public init(now: @escaping @Sendable () -> time_t = { time(nil) }) {
        var s = State()
        s.ram[Self.statusA] = 0x26  // 32.768 kHz time base, 1024 Hz rate, UIP clear
        s.ram[Self.statusB] = Self.b24Hour  // BCD, 24-hour
        s.ram[Self.statusD] = 0x80  // VRT: RAM and time valid
        state = Mutex(s)
        self.now = now
    }

    public func read(offset: UInt16, size: Int) -> UInt32 {
        guard offset == 1 else { return 0xff }
        return UInt32(state.withLock { s -> UInt8 in
            let b = s.ram[Self.statusB]
            var t = now()
            var tm = tm()
            gmtime_r(&t, &tm)
            func encode(_ v: Int32) -> UInt8 {
                b & Self.bBinary != 0 ? UInt8(v) : UInt8((v / 10) << 4 | (v % 10))
            }
            switch s.index {
            case 0x00: return encode(tm.tm_sec)
            case 0x02: return encode(tm.tm_min)
            case 0x04:
                if b & Self.b24Hour != 0 { return encode(tm.tm_hour) }
                let h = tm.tm_hour % 12 == 0 ? 12 : tm.tm_hour % 12
                return encode(h) | (tm.tm_hour >= 12 ? 0x80 : 0)
            case 0x06: return encode(tm.tm_wday + 1)
            case 0x07: return encode(tm.tm_mday)
            case 0x08: return encode(tm.tm_mon + 1)
            case 0x09: return encode(tm.tm_year % 100)
            case Self.century: return encode((tm.tm_year + 1900) / 100)
            case Self.statusC:
                defer { s.ram[Self.statusC] = 0 }  // reading C clears the flags
                return s.ram[Self.statusC]
            default: return s.ram[s.index]
            }
        })
    }

    public func write(offset: UInt16, size: Int, value: UInt32) {
        let byte = UInt8(truncatingIfNeeded: value)
        state.withLock { s in
            switch offset {
            case 0: s.index = Int(byte & 0x7f)
            case 1:
                switch s.index {
                case Self.statusA: s.ram[Self.statusA] = byte & 0x7f  // UIP is read-only
                case Self.statusC, Self.statusD: break  // read-only
                default: s.ram[s.index] = byte
                }
            default: break
            }
        }
    }
}

/// ACPI fixed-hardware power management (ACPI 6.4, 4.8), as VfsvmBoot's
/// FADT describes it (`ACPIPM`): the PM1a event block (PM1_STS, PM1_EN)
/// and the PM1a control block, where SLP_EN with the DSDT's `_S5` SLP_TYP
/// is power-off. A PM timer answers at +8 too (the FADT does not announce
/// it; the test guests use it as a clock).
public final class ACPIPowerManagement: PortDevice {
    /// Offsets inside the block the board maps: EVT 0..3, CNT 4..5, TMR 8..11.
    public static let eventOffset: UInt16 = 0
    public static let controlOffset: UInt16 = 4
    public static let timerOffset: UInt16 = 8
    public static let blockSize: UInt64 = 12
    static let sciEnable = ACPIPM.sciEnable  // the OS is in ACPI mode
    /// PM timer frequency (ACPI 6.4, 4.8.3.3): 3.579545 MHz.
    public static let timerHz: UInt64 = 3_579_545

    private let registers = Mutex((status: UInt16(0), enable: UInt16(0), control: sciEnable))
    private let stop: @Sendable (MachineStop) -> Void

    public init(stop: @escaping @Sendable (MachineStop) -> Void) {
        self.stop = stop
    }

    public func read(offset: UInt16, size: Int) -> UInt32 {
        switch offset {
        case Self.timerOffset...(Self.timerOffset + 3):
            var ts = timespec()
            clock_gettime(CLOCK_MONOTONIC, &ts)
            let ticks = (UInt64(ts.tv_sec) * Self.timerHz + UInt64(ts.tv_nsec) * Self.timerHz / 1_000_000_000) & 0xff_ffff
            return UInt32(ticks >> (8 * UInt64(offset - Self.timerOffset)))
        default:
            let r = registers.withLock { $0 }
            let bytes: [UInt8] = [UInt8(r.status & 0xff), UInt8(r.status >> 8), UInt8(r.enable & 0xff), UInt8(r.enable >> 8),
                                  UInt8(r.control & 0xff), UInt8(r.control >> 8)]
            var v: UInt32 = 0
            for i in 0..<size where Int(offset) + i < bytes.count { v |= UInt32(bytes[Int(offset) + i]) << (8 * i) }
            return v
        }
    }

    public func write(offset: UInt16, size: Int, value: UInt32) {
        let powerOff = registers.withLock { r -> Bool in
            for i in 0..<size {
                let byte = UInt16(truncatingIfNeeded: value >> (8 * i)) & 0xff
                switch Int(offset) + i {
                case 0: r.status &= ~byte  // write 1 to clear
                case 1: r.status &= ~(byte << 8)
                case 2: r.enable = r.enable & 0xff00 | byte
                case 3: r.enable = r.enable & 0x00ff | byte << 8
                case 4: r.control = r.control & 0xff00 | byte | Self.sciEnable
                case 5: r.control = r.control & 0x00ff | byte << 8
                default: break
                }
            }
            guard r.control & ACPIPM.sleepEnable != 0 else { return false }
            defer { r.control &= ~ACPIPM.sleepEnable }  // SLP_EN reads as zero
            return ACPIPM.isPowerOff(pm1aControl: r.control)
        }
        if powerOff { stop(.powerOff) }
    }
}
