import CVfsvmLinux
import VfsvmMemory
import VfsvmVirtio

/// struct virtio_pci_common_cfg field offsets (linux/virtio_pci.h).
enum CommonField: QueueAddressRegisters {
    static let deviceFeatureSelect = UInt64(VIRTIO_PCI_COMMON_DFSELECT)
    static let deviceFeature = UInt64(VIRTIO_PCI_COMMON_DF)
    static let driverFeatureSelect = UInt64(VIRTIO_PCI_COMMON_GFSELECT)
    static let driverFeature = UInt64(VIRTIO_PCI_COMMON_GF)
    static let msixConfig = UInt64(VIRTIO_PCI_COMMON_MSIX)
    static let numQueues = UInt64(VIRTIO_PCI_COMMON_NUMQ)
    static let deviceStatus = UInt64(VIRTIO_PCI_COMMON_STATUS)
    static let configGeneration = UInt64(VIRTIO_PCI_COMMON_CFGGENERATION)
    static let queueSelect = UInt64(VIRTIO_PCI_COMMON_Q_SELECT)
    static let queueSize = UInt64(VIRTIO_PCI_COMMON_Q_SIZE)
    static let queueMSIXVector = UInt64(VIRTIO_PCI_COMMON_Q_MSIX)
    static let queueEnable = UInt64(VIRTIO_PCI_COMMON_Q_ENABLE)
    static let queueNotifyOff = UInt64(VIRTIO_PCI_COMMON_Q_NOFF)
    static let queueDescLow = UInt64(VIRTIO_PCI_COMMON_Q_DESCLO)
    static let queueDescHigh = UInt64(VIRTIO_PCI_COMMON_Q_DESCHI)
    static let queueAvailLow = UInt64(VIRTIO_PCI_COMMON_Q_AVAILLO)
    static let queueAvailHigh = UInt64(VIRTIO_PCI_COMMON_Q_AVAILHI)
    static let queueUsedLow = UInt64(VIRTIO_PCI_COMMON_Q_USEDLO)
    static let queueUsedHigh = UInt64(VIRTIO_PCI_COMMON_Q_USEDHI)
    static let queueNotifyData = UInt64(VIRTIO_PCI_COMMON_Q_NDATA)
    static let queueReset = UInt64(VIRTIO_PCI_COMMON_Q_RESET)

    /// The natural width of the field at `offset` (4.1.3.1: the driver
    /// accesses each field with it), 8 for a 64-bit queue address written
    /// whole; nil when no field starts there.
    static func width(at offset: UInt64, access: Int) -> Int? {
        switch offset {
        case deviceFeatureSelect, deviceFeature, driverFeatureSelect, driverFeature,
             queueDescHigh, queueAvailHigh, queueUsedHigh: 4
        case queueDescLow, queueAvailLow, queueUsedLow: access == 8 ? 8 : 4
        case msixConfig, numQueues, queueSelect, queueSize, queueMSIXVector, queueEnable, queueNotifyOff,
             queueNotifyData, queueReset: 2
        case deviceStatus, configGeneration: 1
        default: nil
        }
    }
}

/// The common configuration structure (4.1.4.3) over `TransportCore`.
extension VirtioPCITransport {
    private func checked(_ offset: UInt64, _ width: Int, _ what: String) -> Bool {
        guard CommonField.width(at: offset, access: width) == width else {
            core.logOnce("common-width", "\(width)-byte \(what) at common config 0x\(String(offset, radix: 16)) (not a field at its natural width); ignored")
            return false
        }
        return true
    }

    func readCommon(offset: UInt64, width: Int) -> UInt64 {
        guard checked(offset, width, "read") else { return 0 }
        if offset == CommonField.msixConfig { return UInt64(state.withLock { $0.configVector }) }
        if offset == CommonField.queueMSIXVector {
            let q = core.withRegisters { $0.selected }
            return UInt64(state.withLock { s in q.map { s.queueVectors[$0] } ?? UInt16(VIRTIO_MSI_NO_VECTOR) })
        }
        return core.withRegisters { r -> UInt64 in
            switch offset {
            case CommonField.deviceFeatureSelect: return UInt64(r.deviceFeaturesSelect)
            case CommonField.deviceFeature: return UInt64(r.deviceFeatureWord)
            case CommonField.driverFeatureSelect: return UInt64(r.driverFeaturesSelect)
            case CommonField.driverFeature: return UInt64(r.device.driverFeatures.word(r.driverFeaturesSelect))
            case CommonField.numQueues: return UInt64(r.queues.count)
            case CommonField.deviceStatus: return UInt64(r.device.status.rawValue)
            case CommonField.configGeneration: return UInt64(UInt8(truncatingIfNeeded: r.configGeneration))
            case CommonField.queueSelect: return UInt64(r.queueSelect)
            case CommonField.queueSize: return r.selected.map { UInt64(r.queues[$0].size) } ?? 0
            case CommonField.queueEnable: return r.selected.map { r.queues[$0].ready ? 1 : 0 } ?? 0
            case CommonField.queueNotifyOff: return r.selected.map { UInt64($0) } ?? 0
            default:
                guard let (area, half) = CommonField.queueAddress(offset), let q = r.selected else { return 0 }
                let low = UInt64(r.queues[q].address(area, half))
                return width == 8 ? low | UInt64(r.queues[q].address(area, .high)) << 32 : low
            }
        }
    }

    func writeCommon(offset: UInt64, width: Int, value: UInt64) {
        guard checked(offset, width, "write") else { return }
        let word = UInt32(truncatingIfNeeded: value)
        switch offset {
        case CommonField.deviceStatus:
            core.writeStatus(UInt8(truncatingIfNeeded: value), interrupt: self)
            // A reset returns the vectors to VIRTIO_MSI_NO_VECTOR.
            if value & 0xff == 0 { state.withLock { $0.resetVectors() } }
            return
        case CommonField.msixConfig:
            return state.withLock { s in s.configVector = s.vectorOrNone(UInt16(truncatingIfNeeded: value)) }
        case CommonField.queueMSIXVector:
            guard let q = core.withRegisters({ $0.selectedWritable }) else { return }
            return state.withLock { s in s.queueVectors[q] = s.vectorOrNone(UInt16(truncatingIfNeeded: value)) }
        default: break
        }
        core.withRegisters { r in
            switch offset {
            case CommonField.deviceFeatureSelect: r.deviceFeaturesSelect = word
            case CommonField.driverFeatureSelect: r.driverFeaturesSelect = word
            case CommonField.driverFeature: core.writeDriverFeatures(word, in: &r)
            case CommonField.queueSelect: r.queueSelect = UInt32(UInt16(truncatingIfNeeded: value))
            case CommonField.queueSize: if let q = r.selectedWritable { r.queues[q].size = UInt16(truncatingIfNeeded: value) }
            // queue_enable: only 1 may be written (4.1.4.3.2).
            case CommonField.queueEnable: if let q = r.selectedWritable, value & 0xffff == 1 { r.queues[q].ready = true }
            default:
                guard let (area, half) = CommonField.queueAddress(offset), let q = r.selectedWritable else { return }
                r.queues[q].setAddress(area, half, to: word)
                if width == 8 { r.queues[q].setAddress(area, .high, to: UInt32(truncatingIfNeeded: value >> 32)) }
            }
        }
    }
}

extension VirtioPCITransport.State {
    /// A vector the table has, or VIRTIO_MSI_NO_VECTOR: what the driver
    /// reads back to learn whether its choice was accepted (4.1.5.1.2).
    func vectorOrNone(_ v: UInt16) -> UInt16 {
        Int(v) < msix.count ? v : UInt16(VIRTIO_MSI_NO_VECTOR)
    }
}
