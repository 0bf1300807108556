import VfsvmKVM
import VfsvmSys

/// The path a `vfsvm run` takes: the in-process KVM VMM, or QEMU's TCG as
/// the CPU with vfsvm serving the devices.
enum RunPath: Equatable {
    case kvm, tcg
}

extension Accelerator {
    /// `kvm` and `tcg` are what they say. `auto` times the calibration guest
    /// under /dev/kvm (`KVMCalibration`) and takes the KVM path only when
    /// it runs at hardware speed; either way it prints one stderr line
    /// naming the path, why, and the measured figure.
    func choosePath(kvmPath: String = "/dev/kvm") -> RunPath {
        switch self {
        case .kvm: return .kvm
        case .tcg: return .tcg
        case .auto:
            let result: KVMCalibration.Result
            do {
                result = try KVMCalibration.measure(path: kvmPath)
            } catch {
                logLine("vfsvm: --accel auto: tcg (QEMU), because KVM cannot run the calibration guest: \(error)")
                return .tcg
            }
            if result.isHardwareSpeed {
                logLine("vfsvm: --accel auto: kvm (the in-process VMM), because \(result), under the \(KVMCalibration.thresholdText) threshold of hardware KVM")
                return .kvm
            }
            logLine("vfsvm: --accel auto: tcg (QEMU), because \(result), over the \(KVMCalibration.thresholdText) threshold: this KVM is not hardware-accelerated")
            return .tcg
        }
    }
}
