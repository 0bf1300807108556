import ArgumentParser
import VfsvmMachine

/// `--memory SIZE` as QEMU's `-m` takes it: a plain number is MiB; a
/// suffix K, M, G or T (either case, optionally followed by B or iB)
/// scales it. The result is in bytes, a whole number of MiB.
struct MemorySize: Equatable, CustomStringConvertible {
    let bytes: UInt64

    init(bytes: UInt64) { self.bytes = bytes }

    static func parse(_ text: String) throws(ValidationError) -> MemorySize {
        var digits = Substring(text)
        var unit: UInt64 = 1 << 20
        var suffix = ""
        while let last = digits.last, !last.isNumber && last != "." {
            suffix = String(last) + suffix
            digits = digits.dropLast()
        }
        switch suffix.lowercased() {
        case "": unit = 1 << 20
        case "k", "kb", "kib": unit = 1 << 10
        case "m", "mb", "mib": unit = 1 << 20
        case "g", "gb", "gib": unit = 1 << 30
        case "t", "tb", "tib": unit = 1 << 40
        default: throw ValidationError("--memory '\(text)': unknown unit '\(suffix)' (use a number of MiB or a K, M, G or T suffix)")
        }
        guard let value = UInt64(digits), value > 0 else {
            throw ValidationError("--memory '\(text)': expected a positive whole number with an optional K, M, G or T suffix")
        }
        let (bytes, overflow) = value.multipliedReportingOverflow(by: unit)
        guard !overflow else { throw ValidationError("--memory '\(text)' is too large") }
        guard bytes % (1 << 20) == 0 else { throw ValidationError("--memory '\(text)' is not a whole number of MiB") }
        return MemorySize(bytes: bytes)
    }

    var description: String {
        bytes % (1 << 30) == 0 ? "\(bytes >> 30) GiB" : "\(bytes >> 20) MiB"
    }
}

extension MachineConfig.Transport: ExpressibleByArgument {}
extension RingChoice: ExpressibleByArgument {}

/// `--accel`: only the in-process KVM VMM is built (issue 10 adds `tcg`,
/// QEMU as the CPU, and `auto`, which picks by measurement).
enum Accelerator: String, ExpressibleByArgument, CaseIterable {
    case kvm, tcg, auto
}
