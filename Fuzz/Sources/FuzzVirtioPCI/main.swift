// libFuzzer target: a virtio-pci function as the guest reaches it, through
// configuration space (the host bridge's 0xCFC window) and BAR0 (MMIO
// exits), over guest RAM the input fills, with a device that drains the
// queues it is handed. The input is a RegisterFuzzCase: an access whose
// offset has bit 15 set goes to configuration space at its low 8 bits,
// any other to BAR0 at its offset (0x0000-0x7fff). Entry points:
// VirtioPCITransport.readConfig/writeConfig and readBAR/writeBAR.
//
// Invariants: no crash; a BAR read returns exactly the bytes asked for;
// the vendor and device IDs and BAR0's type bits read back right; an
// MSI-X vector is sent only when it exists, MSI-X and bus mastering are
// enabled and neither the function nor the vector is masked; INTx is asserted only with
// MSI-X off and INTx not disabled; the device is active only with
// DRIVER_OK set.
import FuzzSupport
import VfsvmMemory
import VfsvmSys
import VfsvmTransport
import VfsvmVirtio

@_cdecl("LLVMFuzzerInitialize")
public func fuzzPCIInitialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> Int32 {
    writeSeedsIfAsked(PCISeeds.all)
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPCI(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    runPCICase(RegisterFuzzCase(&input))
    return 0
}

/// Config space offsets the invariants look at (linux/pci_regs.h).
enum Config {
    static let flag: UInt16 = 0x8000
    static let command = 0x04
    static let bar0 = 0x10
    static let msixControl = 0x9a
}

/// Checks each interrupt against the function's state at that moment
/// (the fuzzing thread is the only one: the device signals from activate).
final class CheckingInterrupts: MSIXVectorSink, InterruptLine, @unchecked Sendable {
    // @unchecked: driven from the fuzzing thread only.
    weak var transport: VirtioPCITransport?
    var vectors = 0

    func route(vector: Int, address: UInt64, data: UInt32) {
        invariant(vector >= 0 && vector < vectors, "route for vector \(vector) of \(vectors)")
    }

    func trigger(vector: Int) throws {
        guard let t = transport else { return }
        invariant(vector >= 0 && vector < vectors, "MSI-X vector \(vector) of \(vectors) sent")
        let control = t.readConfig(offset: Config.msixControl, size: 2)
        invariant(control & 0x8000 != 0 && control & 0x4000 == 0, "vector \(vector) sent with Message Control 0x\(String(control, radix: 16))")
        invariant(t.readConfig(offset: Config.command, size: 2) & 0x4 != 0, "vector \(vector) sent without bus mastering")
        var entry = [UInt8](repeating: 0, count: 4)
        entry.withUnsafeMutableBytes { t.readBAR(offset: 0x4000 + 16 * UInt64(vector) + 12, into: $0) }
        invariant(entry[0] & 1 == 0, "masked vector \(vector) sent")
    }

    func trigger() throws {
        guard let t = transport else { return }
        invariant(t.readConfig(offset: Config.msixControl, size: 2) & 0x8000 == 0, "INTx asserted with MSI-X enabled")
        invariant(t.readConfig(offset: Config.command, size: 2) & 0x400 == 0, "INTx asserted while disabled")
    }
}

func runPCICase(_ c: RegisterFuzzCase) {
    let memory: GuestMemory
    do { memory = try GuestRAM.memory(layout: c.layout, chunks: c.chunks) } catch { fatalError("fuzz setup: \(error)") }
    let device = FuzzDevice()
    let interrupts = CheckingInterrupts()
    let t: VirtioPCITransport
    do { t = try VirtioPCITransport(device: device, memory: memory, intx: interrupts, msix: interrupts) } catch {
        fatalError("fuzz setup: \(error)")
    }
    interrupts.transport = t
    interrupts.vectors = t.msixVectorCount
    t.assignBAR0(0x1_0000_0000)
    for a in c.accesses {
        if a.offset & Config.flag != 0 {
            let offset = Int(a.offset & 0xff)
            if a.write {
                t.writeConfig(offset: offset, size: a.width, value: UInt32(truncatingIfNeeded: a.value))
            } else {
                let v = t.readConfig(offset: offset, size: a.width)
                if a.width == 4 && offset == 0 { invariant(v == 0x1af4 | (0x1040 + 26) << 16, "vendor/device 0x\(String(v, radix: 16))") }
                if a.width == 4 && offset == Config.bar0 { invariant(v & 0xf == 0xc, "BAR0 type bits 0x\(String(v & 0xf, radix: 16))") }
            }
        } else {
            let offset = UInt64(a.offset)
            if a.write {
                a.bytes.withUnsafeBytes { t.writeBAR(offset: offset, bytes: $0) }
            } else {
                var out = [UInt8](repeating: 0xA5, count: a.width)
                out.withUnsafeMutableBytes { t.readBAR(offset: offset, into: $0) }
                invariant(out.count == a.width, "read of \(a.width) bytes at 0x\(String(offset, radix: 16)) returned \(out.count)")
            }
        }
        if device.active {
            invariant(t.status.contains(.driverOK), "device active without DRIVER_OK (status \(t.status))")
        }
    }
    // A reset at the end stops the device, as the machine does.
    [UInt8(0)].withUnsafeBytes { t.writeBAR(offset: 0x14, bytes: $0) }
    invariant(!device.active, "device active after a reset")
}
