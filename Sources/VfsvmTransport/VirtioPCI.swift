import CVfsvmLinux
import Synchronization
import VfsvmMemory
import VfsvmSys
import VfsvmVirtio

/// virtio-pci, modern only (virtio 1.2, 4.1): a PCI function's
/// configuration space (`readConfig`/`writeConfig`, routed by the board's
/// host bridge) and its BAR0 (`readBAR`/`writeBAR`, mapped by the board
/// where the BAR register says while memory decoding is on). Layout in
/// `VirtioPCILayout`; the state machine, features and queue registers are
/// the `TransportCore` the virtio-mmio transport shares.
///
/// The seam: `notifications` lists one address per queue in the notify
/// region (`notifyMultiplier` apart, any width, no data match) for the
/// VMM to register as ioeventfds. Interrupts: with MSI-X enabled, the
/// config vector and each queue's vector go to the `MSIXVectorSink`
/// (masking and pending bits are handled here); without, the INTx
/// `InterruptLine` is asserted and the ISR byte says why (reading it
/// clears it, 4.1.4.5). `intxAsserted` tells a VMM with a level line
/// (an irqfd with a resample fd) whether to re-assert after an EOI.
public final class VirtioPCITransport: VirtioTransport, CoreInterrupt {
    struct State {
        var config: PCIConfigSpace
        var msix: MSIXTable
        var configVector = UInt16(VIRTIO_MSI_NO_VECTOR)
        var queueVectors: [UInt16]

        mutating func resetVectors() {
            configVector = UInt16(VIRTIO_MSI_NO_VECTOR)
            for i in queueVectors.indices { queueVectors[i] = UInt16(VIRTIO_MSI_NO_VECTOR) }
        }
    }

    let core: TransportCore
    private let intx: any InterruptLine
    private let msixSink: any MSIXVectorSink
    let state: Mutex<State>

    /// The device's shared-memory region 0 (a virtio-fs DAX window) in
    /// BAR2, when it has one.
    public let sharedMemory: SharedMemoryWindow?

    /// MSI-X vectors: one for configuration changes and one per queue.
    /// `sharedMemory`, a power of two of at least 4 KiB, is announced by a
    /// VIRTIO_PCI_CAP_SHARED_MEMORY_CFG capability (shmid 0) in BAR2.
    public init(device: any VirtioDevice, memory: GuestMemory, intx: any InterruptLine,
                msix: any MSIXVectorSink, sharedMemory: SharedMemoryWindow? = nil) throws(SystemError) {
        core = try TransportCore(name: "virtio-pci", device: device, memory: memory)
        self.intx = intx
        msixSink = msix
        self.sharedMemory = sharedMemory
        let queues = device.queueMaxSizes.count
        let vectors = queues + 1
        state = Mutex(State(config: PCIConfigSpace(deviceType: device.deviceType, queues: queues, msixVectors: vectors,
                                                   shmSize: sharedMemory?.size ?? 0),
                            msix: MSIXTable(vectors: vectors),
                            queueVectors: Array(repeating: UInt16(VIRTIO_MSI_NO_VECTOR), count: queues)))
    }

    public var device: any VirtioDevice { core.device }
    public var memory: GuestMemory { core.memory }
    public var kicks: [EventFD] { core.kicks }
    public var status: DeviceStatus { core.status }
    public var msixVectorCount: Int { state.withLock { $0.msix.count } }

    public var notifications: [QueueNotification] {
        core.kicks.enumerated().map { i, kick in
            QueueNotification(queue: i, eventfd: kick, bar: VirtioPCILayout.bar,
                              offset: VirtioPCILayout.notifyOffset + UInt64(i) * VirtioPCILayout.notifyMultiplier,
                              length: 0, dataMatch: nil)
        }
    }

    // MARK: - Configuration space

    /// The board writes INTx's GSI into the interrupt line register (what
    /// firmware would), so a driver without ACPI finds it there too.
    public func setInterruptLine(_ gsi: UInt8) {
        state.withLock { $0.config.write(Int(PCI_INTERRUPT_LINE), gsi) }
    }

    /// The board's placement of BAR0, before the guest runs.
    public func assignBAR0(_ address: UInt64) { state.withLock { $0.config.assignBAR0(address) } }

    /// Where BAR0 decodes now; nil while memory decoding is off or the BAR
    /// holds no usable address.
    public var decodedBAR0: UInt64? { state.withLock { $0.config.decodedBAR0 } }

    /// The board's placement of BAR2 (the shared-memory window).
    public func assignBAR2(_ address: UInt64) { state.withLock { $0.config.assignBAR2(address) } }

    /// Where BAR2 decodes now; nil without a window, while memory decoding
    /// is off or while the BAR holds no usable address.
    public var decodedBAR2: UInt64? { state.withLock { $0.config.decodedBAR2 } }

    /// Reads `size` (1, 2 or 4) bytes at `offset`; past 255 reads zero.
    public func readConfig(offset: Int, size: Int) -> UInt32 {
        guard offset >= 0, size >= 1, size <= 4, offset <= PCIConfigSpace.size - size else { return 0 }
        if Self.touchesPCICfgData(offset: offset, size: size) {
            // The BAR read fills pci_cfg_data; the driver then reads
            // whichever of its bytes it asked for (4.1.4.9.1).
            let data = pciCfgAccess(write: nil)
            state.withLock { s in
                for i in 0..<4 { s.config.write(VirtioPCILayout.pciCfgData + i, UInt8(truncatingIfNeeded: data >> (8 * UInt32(i)))) }
            }
        }
        let isr = core.withRegisters { $0.interruptStatus }
        return state.withLock { s in
            let pending = isr != 0 && !s.msix.enabled
            var v: UInt32 = 0
            for i in 0..<size { v |= UInt32(s.config.byte(offset + i, interruptPending: pending)) << (8 * UInt32(i)) }
            return v
        }
    }

    public func writeConfig(offset: Int, size: Int, value: UInt32) {
        guard offset >= 0, size >= 1, size <= 4, offset <= PCIConfigSpace.size - size else { return }
        let delivered: [Int] = state.withLock { s in
            for i in 0..<size { s.config.write(offset + i, UInt8(truncatingIfNeeded: value >> (8 * UInt32(i)))) }
            // Message Control (or Bus Master Enable in the command
            // register): enabling or unmasking delivers pending vectors.
            s.msix.enabled = s.config.msixEnabled
            s.msix.functionMasked = s.config.msixFunctionMasked
            s.msix.busMaster = s.config.busMasterEnabled
            return s.msix.takeDeliverable()
        }
        deliver(delivered)
        // A write of any width that lands in pci_cfg_data sends the window's
        // first cap.length bytes of it to the BAR (4.1.4.9.1).
        if Self.touchesPCICfgData(offset: offset, size: size) {
            _ = pciCfgAccess(write: state.withLock { $0.config.get32(VirtioPCILayout.pciCfgData) })
        }
    }

    /// Whether an access of `size` bytes at `offset` overlaps pci_cfg_data.
    private static func touchesPCICfgData(offset: Int, size: Int) -> Bool {
        offset < VirtioPCILayout.pciCfgData + 4 && offset + size > VirtioPCILayout.pciCfgData
    }

    /// The VIRTIO_PCI_CAP_PCI_CFG window (4.1.4.9): an access of `length`
    /// (1, 2 or 4) bytes at `offset` of the BAR the capability names, its
    /// data in pci_cfg_data. Another BAR, length or a misaligned offset is
    /// ignored (reads as zero).
    private func pciCfgAccess(write value: UInt32?) -> UInt32 {
        let w = state.withLock { $0.config.pciCfgWindow }
        guard Int(w.bar) == VirtioPCILayout.bar, [1, 2, 4].contains(w.length), w.offset % w.length == 0 else {
            core.logOnce("pcicfg", "PCI_CFG window access to BAR \(w.bar) offset 0x\(String(w.offset, radix: 16)) length \(w.length); ignored")
            return 0
        }
        var data = value ?? 0
        withUnsafeMutableBytes(of: &data) { buffer in
            let part = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<Int(w.length)])
            if value != nil { writeBAR(offset: UInt64(w.offset), bytes: UnsafeRawBufferPointer(part)) } else { readBAR(offset: UInt64(w.offset), into: part) }
        }
        return data
    }

    // MARK: - BAR0

    public func readBAR(offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) {
        typealias L = VirtioPCILayout
        let page = offset & ~(L.pageSize - 1), within = offset - page
        let width = buffer.count
        switch page {
        case L.commonOffset:
            return RegisterBytes.store(readCommon(offset: within, width: width), into: buffer)
        case L.isrOffset:
            guard within == 0 else { return RegisterBytes.zero(buffer) }
            // Reading the ISR status acknowledges it (4.1.4.5.1).
            let isr = core.withRegisters { r in
                defer { r.interruptStatus = 0 }
                return r.interruptStatus
            }
            return RegisterBytes.store(UInt64(isr), into: buffer)
        case L.deviceOffset:
            return device.readConfig(offset: Int(within), into: buffer)
        case L.msixTableOffset:
            return RegisterBytes.store(state.withLock { $0.msix.readTable(offset: within, width: width) }, into: buffer)
        case L.msixPBAOffset:
            return RegisterBytes.store(state.withLock { $0.msix.readPBA(offset: within, width: width) }, into: buffer)
        default:
            // The notify region reads as zero, like everything unnamed.
            RegisterBytes.zero(buffer)
        }
    }

    public func writeBAR(offset: UInt64, bytes: UnsafeRawBufferPointer) {
        typealias L = VirtioPCILayout
        let page = offset & ~(L.pageSize - 1), within = offset - page
        let value = RegisterBytes.load(bytes)
        switch page {
        case L.commonOffset:
            writeCommon(offset: within, width: bytes.count, value: value)
        case L.deviceOffset:
            device.writeConfig(offset: Int(within), bytes: bytes)
        case L.notifyOffset:
            // What the ioeventfd catches; a write that reaches here (no
            // ioeventfd registered) kicks the same eventfd.
            guard within % L.notifyMultiplier == 0 else {
                return core.logOnce("notify-offset", "notification at 0x\(String(offset, radix: 16)), between queue addresses; ignored")
            }
            core.notify(queue: within / L.notifyMultiplier)
        case L.msixTableOffset:
            // Routed under the lock: two vCPUs writing one entry at once
            // must not leave KVM with the older of the two messages.
            let unmasked = state.withLock { s in
                let (rerouted, unmasked) = s.msix.writeTable(offset: within, width: bytes.count, value: value)
                if let v = rerouted { msixSink.route(vector: v, address: s.msix.entries[v].address, data: s.msix.entries[v].data) }
                return unmasked
            }
            if unmasked != nil { deliver(state.withLock { $0.msix.takeDeliverable() }) }
        default:
            // ISR and PBA are read only.
            core.logOnce("bar-write", "write at BAR0 0x\(String(offset, radix: 16)) (read-only or unused); ignored")
        }
    }

    // MARK: - Interrupts

    /// Whether INTx should be asserted now: MSI-X off, INTx not disabled,
    /// and an ISR bit the driver has not read yet.
    public var intxAsserted: Bool {
        let isr = core.withRegisters { $0.interruptStatus }
        return isr != 0 && state.withLock { !$0.msix.enabled && !$0.config.intxDisabled }
    }

    private enum Route { case vector(Int), intx, none }

    /// Sets `bits` in the ISR and sends the interrupt: the vector `pick`
    /// chooses when MSI-X is enabled (pending when masked, nothing for
    /// VIRTIO_MSI_NO_VECTOR), else INTx.
    private func send(_ bits: UInt32, _ pick: (State) -> UInt16) throws {
        core.raise(bits)
        let route: Route = state.withLock { s in
            guard s.msix.enabled else { return s.config.intxDisabled ? .none : .intx }
            let v = Int(pick(s))
            guard v < s.msix.count else { return .none }
            guard s.msix.deliverable(v) else {
                s.msix.pending[v] = true
                return .none
            }
            return .vector(v)
        }
        switch route {
        case .vector(let v): try msixSink.trigger(vector: v)
        case .intx: try intx.trigger()
        case .none: break
        }
    }

    private func deliver(_ vectors: [Int]) {
        for v in vectors {
            do { try msixSink.trigger(vector: v) } catch { core.logOnce("msix", "MSI-X vector \(v): \(error)") }
        }
    }

    /// Sets DEVICE_NEEDS_RESET and tells the driver (configuration change).
    public func needsReset() { core.needsReset(interrupt: self) }

    public func signalQueue(_ index: Int) throws {
        try send(TransportCore.usedBuffer) { s in s.queueVectors.indices.contains(index) ? s.queueVectors[index] : UInt16(VIRTIO_MSI_NO_VECTOR) }
    }

    public func signalConfigChange() throws {
        try send(TransportCore.configChange) { $0.configVector }
    }
}
