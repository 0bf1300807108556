import VfsvmMemory
import VfsvmSys
import VfsvmVirtio

/// What the server sends back for one request.
enum VhostUserResponse {
    /// Nothing (a REPLY_ACK "0" follows if the front-end asked for one).
    case none
    /// The request's own reply payload (GET_*): it replaces any REPLY_ACK.
    case reply([UInt8])
    /// A refusal that keeps the connection: REPLY_ACK "1" if asked for.
    case refused(String)
}

/// The state of one queue as the front-end has set it up so far.
struct VringState {
    var size: UInt16?
    var addresses: (descriptor: GuestAddress, driver: GuestAddress, device: GuestAddress)?
    var base: UInt32?
    var kick: EventFD?
    var call: EventFD?
    var err: EventFD?
    /// SET_VRING_ENABLE's last value (used only with protocol features).
    var enabledByFrontend = false
    var started = false
}

/// One front-end connection's state machine: features, memory, rings.
/// Decodes and validates each request, drives the device, and says what to
/// reply. Used from the connection thread only.
final class VhostUserSession {
    let device: any VhostUserDevice
    let offeredProtocolFeatures: UInt64

    private(set) var ackedFeatures: VirtioFeatures = []
    private(set) var protocolFeatures: UInt64 = 0
    private var table: VhostUserMemoryTable?
    private var rings: [VringState]

    init(device: any VhostUserDevice, protocolFeatures: UInt64) {
        self.device = device
        offeredProtocolFeatures = protocolFeatures & VhostUserProtocolFeature.supported
        rings = Array(repeating: VringState(), count: max(device.queueCount, 0))
    }

    var offeredFeatures: VirtioFeatures { device.deviceFeatures.union(.vhostUserProtocolFeatures) }
    var replyAckNegotiated: Bool { protocolFeatures & VhostUserProtocolFeature.replyAck != 0 }
    private var protocolFeaturesNegotiated: Bool { ackedFeatures.contains(.vhostUserProtocolFeatures) }
    private var packed: Bool { ackedFeatures.contains(.ringPacked) }

    /// The memory currently mapped (tests and diagnostics).
    var memory: GuestMemory? { table?.memory }

    // MARK: - Per-request payload and fd expectations

    /// The payload size a request must carry, or nil when it varies
    /// (checked by the handler).
    static func expectedPayloadSize(_ r: VhostUserRequest) -> Int? {
        switch r {
        case .getFeatures, .getProtocolFeatures, .setOwner, .resetOwner, .resetDevice, .getQueueNum, .getMaxMemSlots:
            0
        case .setFeatures, .setProtocolFeatures, .setVringKick, .setVringCall, .setVringErr:
            8
        case .addMemReg, .remMemReg:
            40
        case .setVringNum, .setVringBase, .getVringBase, .setVringEnable:
            8
        case .setVringAddr:
            40
        default:
            nil
        }
    }

    /// How many fds a request may carry (exact count checked by handlers
    /// that take fds).
    static func maxFDs(_ r: VhostUserRequest) -> Int {
        switch r {
        case .setMemTable: VhostUserConstants.maxMemoryRegions
        case .setVringKick, .setVringCall, .setVringErr, .addMemReg, .remMemReg: 1
        default: 0
        }
    }

    // MARK: - Dispatch

    func handle(_ m: VhostUserMessage) throws(VhostUserError) -> VhostUserResponse {
        if let size = Self.expectedPayloadSize(m.request), m.payload.count != size {
            throw .wrongPayloadSize(m.request, expected: size, got: m.payload.count)
        }
        if m.fds.count > Self.maxFDs(m.request) {
            throw .wrongFDCount(m.request, expected: Self.maxFDs(m.request), got: m.fds.count)
        }
        var p = PayloadReader(m.payload)
        switch m.request {
        case .getFeatures:
            return .reply(u64(offeredFeatures.rawValue))

        case .setFeatures:
            let value = VirtioFeatures(rawValue: p.u64())
            guard value.isSubset(of: offeredFeatures) else {
                throw .unsupportedFeatures(offered: offeredFeatures, requested: value)
            }
            ackedFeatures = value
            return .none

        case .getProtocolFeatures:
            return .reply(u64(offeredProtocolFeatures))

        case .setProtocolFeatures:
            let value = p.u64()
            guard value & ~offeredProtocolFeatures == 0 else {
                throw .unsupportedProtocolFeatures(offered: offeredProtocolFeatures, requested: value)
            }
            protocolFeatures = value
            return .none

        case .setOwner:
            return .none

        case .resetOwner:
            resetDevice()
            return .none

        case .resetDevice:
            guard protocolFeatures & VhostUserProtocolFeature.resetDevice != 0 else {
                throw .unsupportedRequest(.resetDevice)
            }
            resetDevice()
            return .none

        case .getQueueNum:
            return .reply(u64(UInt64(rings.count)))

        case .setMemTable:
            let regions = try VhostUserMemoryTable.decode(m.payload)
            replaceTable(try VhostUserMemoryTable(regions: regions, fds: m.fds))
            return .none

        case .getMaxMemSlots:
            try requireMemSlots(m.request)
            return .reply(u64(UInt64(VhostUserConstants.maxMemorySlots)))

        case .addMemReg:
            try requireMemSlots(m.request)
            guard let fd = m.fds.first else { throw .wrongFDCount(m.request, expected: 1, got: 0) }
            let current: VhostUserMemoryTable
            if let table { current = table } else { current = try VhostUserMemoryTable.empty() }
            replaceTable(try current.adding(VhostUserMemoryTable.decodeSingle(m.payload), fd: fd,
                                            limit: VhostUserConstants.maxMemorySlots))
            return .none

        case .remMemReg:
            // Some front-ends pass the region's fd along; it is not needed.
            try requireMemSlots(m.request)
            guard let table else { throw .noMemoryTable(m.request) }
            replaceTable(try table.removing(VhostUserMemoryTable.decodeSingle(m.payload)))
            return .none

        case .setVringNum:
            let i = try queueIndex(UInt64(p.u32()), m.request)
            let num = p.u32()
            try requireStopped(i, m.request)
            guard num >= 1, num <= UInt32(device.maxQueueSize), packed || num.nonzeroBitCount == 1 else {
                throw .badQueueSize(index: i, size: num, max: device.maxQueueSize)
            }
            rings[i].size = UInt16(num)
            return .none

        case .setVringAddr:
            let i = try queueIndex(UInt64(p.u32()), m.request)
            let flags = p.u32()
            let desc = p.u64(), used = p.u64(), avail = p.u64()
            _ = p.u64()  // log_guest_addr: dirty logging is not offered
            try requireStopped(i, m.request)
            guard flags == 0 else { throw .badVringFlags(index: i, flags: flags) }
            guard let table else { throw .noMemoryTable(m.request) }
            func translate(_ a: UInt64, _ what: String) throws(VhostUserError) -> GuestAddress {
                guard let g = table.translate(userAddress: a) else {
                    throw .untranslatable(index: i, what: what, userAddress: a)
                }
                return g
            }
            rings[i].addresses = (try translate(desc, "descriptor"), try translate(avail, "driver (avail)"),
                                  try translate(used, "device (used)"))
            return .none

        case .setVringBase:
            let i = try queueIndex(UInt64(p.u32()), m.request)
            let base = p.u32()
            try requireStopped(i, m.request)
            // A split ring's state is one 16-bit index; a packed ring's is
            // two 15-bit indices with their wrap counters.
            guard packed || base <= 0xffff else { throw .badVringBase(index: i, base: base) }
            rings[i].base = base
            return .none

        case .getVringBase:
            let i = try queueIndex(UInt64(p.u32()), m.request)
            let base = stopIfStarted(i)
            // The ring is stopped until the front-end sends a new kick fd.
            rings[i].kick = nil
            if !protocolFeaturesNegotiated { rings[i].enabledByFrontend = false }
            var w = PayloadWriter()
            w.u32(UInt32(i))
            w.u32(base)
            return .reply(w.bytes)

        case .setVringKick, .setVringCall, .setVringErr:
            let value = p.u64()
            let i = try queueIndex(value & VhostUserConstants.vringIndexMask, m.request)
            let noFD = value & VhostUserConstants.vringNoFDFlag != 0
            // Reserved bits must be clear; a kick without an fd asks for
            // polling mode, which is not offered.
            guard value & ~(VhostUserConstants.vringIndexMask | VhostUserConstants.vringNoFDFlag) == 0,
                  !(noFD && m.request == .setVringKick) else {
                throw .badVringFDFlags(m.request, value: value)
            }
            guard m.fds.count == (noFD ? 0 : 1) else {
                throw .wrongFDCount(m.request, expected: noFD ? 0 : 1, got: m.fds.count)
            }
            let fd = try m.fds.first.map { fd throws(VhostUserError) in try RingFDs.adopt(fd, for: m.request, index: i) }
            switch m.request {
            case .setVringKick:
                if rings[i].started {
                    // A new kick fd for a running ring: restart it where it
                    // stopped.
                    rings[i].base = stopIfStarted(i)
                }
                rings[i].kick = fd
                try startIfReady(i)
            case .setVringCall:
                rings[i].call = fd
                if rings[i].started { device.callChanged(i, call: fd) }
            default:
                rings[i].err = fd
            }
            return .none

        case .setVringEnable:
            let i = try queueIndex(UInt64(p.u32()), m.request)
            let value = p.u32()
            guard protocolFeaturesNegotiated else { throw .unsupportedRequest(.setVringEnable) }
            guard value <= 1 else { throw .badEnable(index: i, value: value) }
            rings[i].enabledByFrontend = value == 1
            if value == 1 {
                try startIfReady(i)
            } else if rings[i].started {
                rings[i].base = stopIfStarted(i)
            }
            return .none

        case .getConfig, .setConfig:
            guard protocolFeatures & VhostUserProtocolFeature.config != 0 else {
                throw .unsupportedRequest(m.request)
            }
            guard m.payload.count >= 12 else { throw .wrongPayloadSize(m.request, expected: 12, got: m.payload.count) }
            let offset = p.u32(), size = p.u32(), flags = p.u32()
            guard size <= UInt32(VhostUserConstants.maxConfigSize),
                  UInt64(offset) + UInt64(size) <= UInt64(VhostUserConstants.maxConfigSize) else {
                throw .badConfigAccess(offset: offset, size: size)
            }
            guard m.payload.count == 12 + Int(size) else {
                throw .wrongPayloadSize(m.request, expected: 12 + Int(size), got: m.payload.count)
            }
            if m.request == .setConfig {
                return .refused("SET_CONFIG: the device configuration is read-only")
            }
            var bytes = device.readConfig(offset: Int(offset), count: Int(size))
            if bytes.count > Int(size) { bytes.removeLast(bytes.count - Int(size)) }
            bytes += [UInt8](repeating: 0, count: Int(size) - bytes.count)
            var w = PayloadWriter()
            w.u32(offset)
            w.u32(size)
            w.u32(flags)
            w.append(bytes)
            return .reply(w.bytes)

        default:
            throw .unsupportedRequest(m.request)
        }
    }

    private func requireMemSlots(_ r: VhostUserRequest) throws(VhostUserError) {
        guard protocolFeatures & VhostUserProtocolFeature.configureMemSlots != 0 else { throw .unsupportedRequest(r) }
    }

    /// Installs a new memory table; running rings switch to it.
    private func replaceTable(_ newTable: VhostUserMemoryTable) {
        table = newTable
        if rings.contains(where: \.started) { device.memoryChanged(newTable.memory) }
    }

    // MARK: - Rings

    private func queueIndex(_ raw: UInt64, _ r: VhostUserRequest) throws(VhostUserError) -> Int {
        guard raw < UInt64(rings.count) else { throw .badQueueIndex(r, index: raw) }
        return Int(raw)
    }

    private func requireStopped(_ i: Int, _ r: VhostUserRequest) throws(VhostUserError) {
        if rings[i].started { throw .queueRunning(r, index: i) }
    }

    /// Stops ring `i` if it runs and returns its state; otherwise the last
    /// SET_VRING_BASE value (0 if none).
    private func stopIfStarted(_ i: Int) -> UInt32 {
        guard rings[i].started else { return rings[i].base ?? 0 }
        rings[i].started = false
        let base = device.stopQueue(i)
        rings[i].base = base
        return base
    }

    /// Starts ring `i` once it has everything: size, addresses, base, a kick
    /// fd, memory, and is enabled. Without VHOST_USER_F_PROTOCOL_FEATURES a
    /// ring is enabled by its kick fd; with it, only by SET_VRING_ENABLE.
    private func startIfReady(_ i: Int) throws(VhostUserError) {
        let r = rings[i]
        guard !r.started, let size = r.size, let a = r.addresses, let base = r.base, let kick = r.kick,
              let table else { return }
        if protocolFeaturesNegotiated && !r.enabledByFrontend { return }
        let vring = VhostUserVring(index: i, size: size, descriptorTable: a.descriptor, driverArea: a.driver,
                                   deviceArea: a.device, base: base)
        do {
            try device.startQueue(vring, features: ackedFeatures.subtracting(.vhostUserProtocolFeatures),
                                  memory: table.memory, kick: kick, call: r.call, error: r.err)
        } catch {
            throw .deviceRefusedQueue(index: i, reason: "\(error)")
        }
        rings[i].started = true
    }

    /// RESET_OWNER / RESET_DEVICE / disconnect: the device stops all rings
    /// and the session forgets memory, rings and virtio features.
    func resetDevice() {
        device.reset()
        table = nil
        rings = Array(repeating: VringState(), count: rings.count)
        ackedFeatures = []
    }

    private func u64(_ v: UInt64) -> [UInt8] {
        var w = PayloadWriter()
        w.u64(v)
        return w.bytes
    }
}
