import Synchronization
import VfsvmSys
import VfsvmTransport

/// A 16550A-compatible UART (the 8250 family Linux's `8250` driver and
/// every firmware speak), as COM1 at 0x3F8 on IRQ 4.
///
/// Registers (offset from the base; DLAB = LCR bit 7):
/// 0 RBR (read) / THR (write) / DLL (DLAB), 1 IER / DLM (DLAB), 2 IIR (read)
/// / FCR (write), 3 LCR, 4 MCR, 5 LSR, 6 MSR, 7 SCR.
///
/// Output is written at once, so the transmitter is always empty (LSR
/// THRE and TEMT set) and a "transmitter empty" interrupt follows every
/// byte when IER asks for it. Input (`receive`) queues bytes; LSR DR says
/// one is there and IER bit 0 raises the interrupt. Loopback (MCR bit 4)
/// routes THR to RBR and MCR's outputs to MSR's inputs, as the Linux
/// driver's probe checks.
public final class Serial8250: PortDevice {
    public static let portCount: UInt64 = 8

    // IER bits
    static let ierReceivedData: UInt8 = 0x01  // UART_IER_RDI
    static let ierTransmitterEmpty: UInt8 = 0x02  // UART_IER_THRI
    // IIR values
    static let iirNone: UInt8 = 0x01  // UART_IIR_NO_INT
    static let iirTransmitterEmpty: UInt8 = 0x02  // UART_IIR_THRI
    static let iirReceivedData: UInt8 = 0x04  // UART_IIR_RDI
    static let iirFIFOsEnabled: UInt8 = 0xc0
    // LSR bits
    static let lsrDataReady: UInt8 = 0x01  // UART_LSR_DR
    static let lsrTransmitterHoldingEmpty: UInt8 = 0x20  // UART_LSR_THRE
    static let lsrTransmitterEmpty: UInt8 = 0x40  // UART_LSR_TEMT
    // LCR / MCR bits
    static let lcrDivisorLatch: UInt8 = 0x80  // UART_LCR_DLAB
    static let mcrLoopback: UInt8 = 0x10  // UART_MCR_LOOP
    /// Input kept before further bytes are dropped (what a terminal can
    /// paste ahead of a guest that does not read).
    static let inputLimit = 4096

    private struct Registers {
        var ier: UInt8 = 0
        var lcr: UInt8 = 0x03  // 8N1
        var mcr: UInt8 = 0x08  // OUT2
        var scr: UInt8 = 0
        var dll: UInt8 = 0x0c  // 9600 baud
        var dlm: UInt8 = 0
        var fcr: UInt8 = 0
        var input: [UInt8] = []
        var inputHead = 0
        /// A transmitter-empty interrupt is pending (cleared by reading IIR
        /// while it is the reason, or by writing THR).
        var thrEmptyPending = false

        var hasInput: Bool { inputHead < input.count }

        var iir: UInt8 {
            let fifo = fcr & 1 != 0 ? Serial8250.iirFIFOsEnabled : 0
            if ier & Serial8250.ierReceivedData != 0 && hasInput { return Serial8250.iirReceivedData | fifo }
            if ier & Serial8250.ierTransmitterEmpty != 0 && thrEmptyPending { return Serial8250.iirTransmitterEmpty | fifo }
            return Serial8250.iirNone | fifo
        }
    }

    private let state = Mutex(Registers())
    private let line: any InterruptLine
    private let output: @Sendable (UInt8) -> Void

    /// `output` receives each byte the guest transmits (outside loopback).
    public init(line: any InterruptLine, output: @escaping @Sendable (UInt8) -> Void) {
        self.line = line
        self.output = output
    }

    /// Queues bytes typed on the console; raises the interrupt when the
    /// guest enabled it.
    public func receive(_ bytes: [UInt8]) {
        let raise = state.withLock { r -> Bool in
            Self.enqueue(&r, bytes)
            return r.ier & Self.ierReceivedData != 0
        }
        if raise { trigger() }
    }

    /// How many received bytes the guest has not read yet.
    public var pendingInput: Int { state.withLock { $0.input.count - $0.inputHead } }

    private static func enqueue(_ r: inout Registers, _ bytes: [UInt8]) {
        if r.inputHead > 0 && r.inputHead == r.input.count {
            r.input.removeAll(keepingCapacity: true)
            r.inputHead = 0
        }
        let room = max(0, inputLimit - (r.input.count - r.inputHead))
        r.input += bytes.prefix(room)
    }

    public func read(offset: UInt16, size: Int) -> UInt32 {
        UInt32(state.withLock { r -> UInt8 in
            let dlab = r.lcr & Self.lcrDivisorLatch != 0
            switch offset {
            case 0 where dlab: return r.dll
            case 0:
                guard r.hasInput else { return 0 }
                defer { r.inputHead += 1 }
                return r.input[r.inputHead]
            case 1 where dlab: return r.dlm
            case 1: return r.ier
            case 2:
                let iir = r.iir
                if iir & 0x0f == Self.iirTransmitterEmpty { r.thrEmptyPending = false }
                return iir
            case 3: return r.lcr
            case 4: return r.mcr
            case 5:
                return Self.lsrTransmitterHoldingEmpty | Self.lsrTransmitterEmpty | (r.hasInput ? Self.lsrDataReady : 0)
            case 6:
                if r.mcr & Self.mcrLoopback != 0 {
                    // DTR→DSR, RTS→CTS, OUT1→RI, OUT2→DCD (16550 loopback).
                    let m = r.mcr
                    return (m & 0x02) << 3 | (m & 0x01) << 5 | (m & 0x04) << 4 | (m & 0x08) << 4
                }
                return 0xb0  // DCD, DSR, CTS: a terminal is attached
            case 7: return r.scr
            default: return 0xff
            }
        })
    }

    public func write(offset: UInt16, size: Int, value: UInt32) {
        let byte = UInt8(truncatingIfNeeded: value)
        var transmit: UInt8?
        let raise = state.withLock { r -> Bool in
            let dlab = r.lcr & Self.lcrDivisorLatch != 0
            switch offset {
            case 0 where dlab: r.dll = byte
            case 0:
                if r.mcr & Self.mcrLoopback != 0 { Self.enqueue(&r, [byte]) } else { transmit = byte }
                r.thrEmptyPending = true
                return r.ier & Self.ierTransmitterEmpty != 0 || (r.mcr & Self.mcrLoopback != 0 && r.ier & Self.ierReceivedData != 0)
            case 1 where dlab: r.dlm = byte
            case 1:
                let enabled = byte & ~r.ier
                r.ier = byte & 0x0f
                // Enabling THRI while the transmitter is empty interrupts at once (16550).
                if enabled & Self.ierTransmitterEmpty != 0 { r.thrEmptyPending = true }
                return r.iir & 0x01 == 0 && enabled & (Self.ierTransmitterEmpty | Self.ierReceivedData) != 0
            case 2: r.fcr = byte
                if byte & 0x02 != 0 {  // clear receive FIFO
                    r.input.removeAll(keepingCapacity: true)
                    r.inputHead = 0
                }
            case 3: r.lcr = byte
            case 4: r.mcr = byte & 0x1f
            case 7: r.scr = byte
            default: break  // LSR and MSR are read-only
            }
            return false
        }
        if let transmit { output(transmit) }
        if raise { trigger() }
    }

    private func trigger() {
        do { try line.trigger() } catch { logLine("vfsvm: serial: cannot raise its interrupt: \(error)") }
    }
}
