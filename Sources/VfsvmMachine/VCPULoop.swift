import CVfsvmLinux
import Synchronization
import VfsvmKVM
import VfsvmMemory
import VfsvmSys

/// Userspace exits by where they went, for `-d`: the data path (queue
/// kicks, completions) should add none, since kicks are ioeventfds and
/// completions irqfds.
public final class ExitCounters: Sendable {
    private let counts = Mutex<[String: Int]>([:])
    private let unclaimed = Mutex<Set<UInt64>>([])

    public init() {}

    func count(_ what: String) { counts.withLock { $0[what, default: 0] += 1 } }

    /// True the first time `address` is reported unclaimed.
    func firstUnclaimed(_ address: UInt64) -> Bool { unclaimed.withLock { $0.insert(address).inserted } }

    /// Exits per device or port range, largest first.
    public var snapshot: [(String, Int)] { counts.withLock { $0.sorted { $0.value > $1.value } } }
}

/// One vCPU's thread body: KVM_RUN, dispatch the exit to the port or MMIO
/// bus, repeat, until the machine stops or the vCPU meets an exit the
/// board cannot handle (which stops the machine with one line).
struct VCPULoop {
    let vcpu: VCPU
    let memory: GuestMemory
    let ports: PortBus
    let mmio: MMIOBus
    let latch: StopLatch
    let counters: ExitCounters?

    func run() {
        vcpu.enterThread()
        defer { vcpu.leaveThread() }
        while latch.stopped == nil {
            let exit: VCPUExit
            do { exit = try vcpu.run() } catch {
                latch.stop(.failure("vCPU \(vcpu.id): \(error)"))
                return
            }
            switch exit {
            case let .io(io): handlePort(io)
            case let .mmio(m): handleMMIO(m)
            case .interrupted: continue
            case .shutdown: latch.stop(.reboot("triple fault on vCPU \(vcpu.id)"))
            case .systemEvent(.shutdown): latch.stop(.powerOff)
            case .systemEvent(.reset): latch.stop(.reboot("reset requested through KVM"))
            case .systemEvent(.crash): latch.stop(.failure("the guest crashed (KVM_SYSTEM_EVENT_CRASH) on vCPU \(vcpu.id)"))
            case .hlt:
                // Only without an in-kernel irqchip; the board always has one.
                latch.stop(.failure(unhandled(exit, detail: "the vCPU halted")))
            case let .internalError(suberror, data):
                let words = data.prefix(4).map { "0x" + String($0, radix: 16) }.joined(separator: " ")
                latch.stop(.failure(unhandled(exit, detail: "suberror \(suberror)\(suberror == 1 ? " (instruction emulation failed)" : "")\(words.isEmpty ? "" : ", data \(words)")")))
            case let .failEntry(reason, _):
                latch.stop(.failure(unhandled(exit, detail: "hardware entry failure reason 0x\(String(reason, radix: 16))")))
            case let .exception(vector, code):
                latch.stop(.failure(unhandled(exit, detail: "exception \(vector), error code \(code)")))
            case .systemEvent(.other), .unknown:
                latch.stop(.failure(unhandled(exit, detail: "\(exit)")))
            }
        }
    }

    private func handlePort(_ io: IOExit) {
        guard let (device, offset) = ports.find(UInt64(io.port)) else {
            noteUnclaimed(1 << 63 | UInt64(io.port), "I/O port 0x\(String(io.port, radix: 16))")
            if io.direction == .in { for i in 0..<io.count { vcpu.setIOValue(0xffff_ffff, i) } }
            return
        }
        counters?.count(portName(io.port))
        for i in 0..<io.count {
            switch io.direction {
            case .in: vcpu.setIOValue(device.read(offset: UInt16(offset), size: io.size), i)
            case .out: device.write(offset: UInt16(offset), size: io.size, value: vcpu.ioValue(i))
            }
        }
    }

    private func portName(_ port: UInt16) -> String {
        ports.all.first { UInt64(port) >= $0.base && UInt64(port) - $0.base < $0.size }?.name ?? "port"
    }

    private func handleMMIO(_ m: MMIOExit) {
        guard let (device, offset) = mmio.find(m.address) else {
            noteUnclaimed(m.address & ~0xfff, "MMIO address 0x\(String(m.address, radix: 16))")
            if !m.isWrite { vcpu.setMMIOValue(~0) }
            return
        }
        if let counters {
            let name = mmio.all.first { m.address >= $0.base && m.address - $0.base < $0.size }?.name ?? "mmio"
            counters.count(device.exitGroup(offset: offset).map { "\(name) \($0)" } ?? name)
        }
        vcpu.withMMIOData { data in
            if m.isWrite { device.write(offset: offset, bytes: UnsafeRawBufferPointer(data)) } else { device.read(offset: offset, into: data) }
        }
    }

    /// An access nothing decodes reads as all ones and is otherwise
    /// ignored, as on a PC's bus (Linux probes for absent devices and
    /// writes to port 0x80 as a delay); logged with -d once per port or
    /// 4 KiB page (`key`).
    private func noteUnclaimed(_ key: UInt64, _ what: String) {
        guard let counters else { return }
        counters.count("unclaimed")
        if counters.firstUnclaimed(key) { logLine("vfsvm: vCPU \(vcpu.id): access to \(what), which no device claims (ignored; further ones there are not logged)") }
    }

    /// One line for an exit the board cannot go on from: which exit, RIP,
    /// and the instruction bytes there, read through the guest's page
    /// tables (KVM_TRANSLATE) when paging is on.
    func unhandled(_ exit: VCPUExit, detail: String) -> String {
        var line = "vCPU \(vcpu.id): unhandled \(exit.name): \(detail)"
        guard let regs = try? vcpu.registers(), let sregs = try? vcpu.specialRegisters() else { return line }
        // In long mode CS's base is ignored (zero); in other modes it applies.
        let longMode = sregs.efer & EntryState.eferLongModeActive != 0 && sregs.cs.l != 0
        let linear = longMode ? regs.rip : (sregs.cs.base &+ regs.rip)
        line += " at RIP 0x\(String(regs.rip, radix: 16))"
        let paging = sregs.cr0 & EntryState.cr0Paging != 0
        let physical: UInt64? = paging ? ((try? vcpu.translate(linear)) ?? nil) : linear
        if let physical {
            // Up to 15 bytes (the longest x86 instruction), not past the page.
            let count = Int(min(15, 0x1000 - (physical & 0xfff)))
            if let bytes = try? memory.readBytes(at: GuestAddress(physical), count: count) {
                line += ", instruction bytes " + bytes.map { String($0, radix: 16).leftPadded(2) }.joined(separator: " ")
            } else {
                line += " (not in guest RAM)"
            }
        } else {
            line += " (not mapped by the guest's page tables)"
        }
        return line
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
