// libFuzzer target: a transport's register file as a vCPU's MMIO exits
// reach it (RegisterFuzzCase), over guest RAM the input fills, with a
// device that drains the queues it is handed. Entry points:
// VirtioMMIOTransport.read(offset:into:) / write(offset:bytes:), through
// caller buffers as the VMM's MMIO exits call them.
//
// Invariants: no crash; a read returns exactly the bytes asked for; the
// magic, version and device id read back right; DEVICE_NEEDS_RESET or a
// refused activation never starts the device; the device is active only
// with DRIVER_OK set; the queues it is handed are activated ones.
//
// virtio-pci has a target of its own (FuzzVirtioPCI): its accesses go to
// configuration space as well as BAR0.
import FuzzSupport
import VfsvmMemory
import VfsvmSys
import VfsvmTransport
import VfsvmVirtio

@_cdecl("LLVMFuzzerInitialize")
public func fuzzRegistersInitialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> Int32 {
    writeSeedsIfAsked(RegisterSeeds.all)
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRegisters(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    runRegisterCase(RegisterFuzzCase(&input))
    return 0
}

/// What the target drives: read and write at an offset of the window.
protocol FuzzedTransport {
    func read(offset: UInt64, count: Int) -> [UInt8]
    func write(offset: UInt64, bytes: [UInt8])
    var deviceStatus: UInt8 { get }
}

extension VirtioMMIOTransport: FuzzedTransport {
    var deviceStatus: UInt8 { status.rawValue }
    func read(offset: UInt64, count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0xA5, count: count)
        out.withUnsafeMutableBytes { read(offset: offset, into: $0) }
        return out
    }
    func write(offset: UInt64, bytes: [UInt8]) {
        bytes.withUnsafeBytes { write(offset: offset, bytes: $0) }
    }
}

struct Line: InterruptLine {
    func trigger() throws {}
}

func makeTransport(_ kind: UInt8, device: FuzzDevice, memory: GuestMemory) -> (any FuzzedTransport)? {
    switch kind {
    case 0:
        do { return try VirtioMMIOTransport(device: device, memory: memory, line: Line()) } catch {
            fatalError("fuzz setup: \(error)")
        }
    default:
        return nil
    }
}

func runRegisterCase(_ c: RegisterFuzzCase) {
    let memory: GuestMemory
    do { memory = try GuestRAM.memory(layout: c.layout, chunks: c.chunks) } catch { fatalError("fuzz setup: \(error)") }
    let device = FuzzDevice()
    guard let t = makeTransport(c.transport, device: device, memory: memory) else { return }
    for a in c.accesses {
        let offset = UInt64(a.offset)
        if a.write {
            t.write(offset: offset, bytes: a.bytes)
        } else {
            let out = t.read(offset: offset, count: a.width)
            invariant(out.count == a.width, "read of \(a.width) bytes at 0x\(String(offset, radix: 16)) returned \(out.count)")
            if a.width == 4, c.transport == 0 {
                let v = out.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) }
                switch offset {
                case 0x000: invariant(v == VirtioMMIOTransport.magic, "MagicValue \(v)")
                case 0x004: invariant(v == 2, "Version \(v)")
                case 0x008: invariant(v == device.deviceType, "DeviceID \(v)")
                default: break
                }
            }
        }
        let status = t.deviceStatus
        if device.active {
            invariant(status & 4 != 0, "device active without DRIVER_OK (status 0x\(String(status, radix: 16)))")
        }
    }
}
