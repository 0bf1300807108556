import CVfsvmLinux
import Glibc
import VfsvmSys

/// An open /dev/kvm: the API version checked (KVM_GET_API_VERSION = 12) and
/// every capability in `KVMCapability.required` confirmed, so a host whose
/// KVM cannot run vfsvm's board is refused here with the missing
/// capability's name rather than half way through building a VM.
public final class KVM: Sendable {
    public static let apiVersion: Int32 = 12  // KVM_API_VERSION

    let fd: FileDescriptor
    /// KVM_GET_VCPU_MMAP_SIZE: the size of each vCPU's `kvm_run` mapping.
    public let vcpuMapSize: Int

    public init(path: String = "/dev/kvm", requiring capabilities: [KVMCapability] = KVMCapability.required) throws(KVMError) {
        do {
            fd = try FileDescriptor.open(path, O_RDWR)
        } catch {
            throw .unavailable(path: path, error)
        }
        let version = try Self.ioctl(fd, VFSVM_KVM_GET_API_VERSION, "KVM_GET_API_VERSION", value: 0)
        guard version == Self.apiVersion else { throw .apiVersion(version) }
        vcpuMapSize = Int(try Self.ioctl(fd, VFSVM_KVM_GET_VCPU_MMAP_SIZE, "KVM_GET_VCPU_MMAP_SIZE", value: 0))
        guard vcpuMapSize >= MemoryLayout<kvm_run>.size else {
            throw .invalidArgument("KVM_GET_VCPU_MMAP_SIZE returned \(vcpuMapSize), smaller than struct kvm_run")
        }
        for c in capabilities where checkExtension(c) <= 0 { throw .missingCapability(c) }
    }

    /// KVM_CHECK_EXTENSION: 0 when the capability is absent, else a
    /// capability-specific positive value (for some, a count).
    public func checkExtension(_ capability: KVMCapability) -> Int32 {
        (try? Self.ioctl(fd, VFSVM_KVM_CHECK_EXTENSION, "KVM_CHECK_EXTENSION", value: UInt(capability.rawValue))) ?? 0
    }

    /// Throws `missingCapability` unless KVM has `capability`.
    public func require(_ capability: KVMCapability) throws(KVMError) {
        if checkExtension(capability) <= 0 { throw .missingCapability(capability) }
    }

    /// KVM_GET_SUPPORTED_CPUID: every leaf KVM can virtualize on this host,
    /// with the feature bits it supports. `CPUIDTable.forVCPU` turns it into
    /// what one vCPU is given.
    public func supportedCPUID() throws(KVMError) -> CPUIDTable {
        var capacity = 128
        while true {
            do throws(KVMError) {
                return CPUIDTable(entries: try withFlexibleArray(
                    header: Self.cpuidHeader(capacity),
                    elements: [kvm_cpuid_entry2](repeating: kvm_cpuid_entry2(), count: capacity),
                    count: { UInt32(truncatingIfNeeded: $0.load(as: UInt32.self)) }
                ) { raw throws(KVMError) in
                    _ = try Self.ioctl(fd, VFSVM_KVM_GET_SUPPORTED_CPUID, "KVM_GET_SUPPORTED_CPUID", raw)
                })
            } catch .ioctl(let e) where e.errno == .E2BIG && capacity < 4096 {
                capacity *= 2
            }
        }
    }

    static func cpuidHeader(_ count: Int) -> kvm_cpuid2 {
        var h = kvm_cpuid2()
        h.nent = UInt32(count)
        return h
    }

    /// KVM_CREATE_VM (machine type 0: the default x86 VM).
    public func createVM() throws(KVMError) -> VirtualMachine {
        let raw = try Self.ioctl(fd, VFSVM_KVM_CREATE_VM, "KVM_CREATE_VM", value: 0)
        return VirtualMachine(kvm: self, fd: FileDescriptor(owning: raw))
    }

    // MARK: - The ioctl funnel for every KVM fd

    @discardableResult
    static func ioctl(_ fd: FileDescriptor, _ request: UInt, _ name: String, value: UInt) throws(KVMError) -> Int32 {
        do { return try fd.ioctl(request, name, value: value) } catch { throw .ioctl(error) }
    }

    @discardableResult
    static func ioctl(_ fd: FileDescriptor, _ request: UInt, _ name: String, _ arg: UnsafeMutableRawPointer) throws(KVMError) -> Int32 {
        do { return try fd.ioctl(request, name, arg) } catch { throw .ioctl(error) }
    }

    /// `ioctl` with a pointer to a plain C struct.
    @discardableResult
    static func ioctl<T>(_ fd: FileDescriptor, _ request: UInt, _ name: String, struct value: inout T) throws(KVMError) -> Int32 {
        try withUnsafeMutableBytes(of: &value) { raw throws(KVMError) in
            // Safe: `raw` covers exactly one T, which is the struct the ioctl reads or fills.
            try ioctl(fd, request, name, raw.baseAddress!)
        }
    }
}

/// Lays out a C struct with a flexible array member (`kvm_cpuid2`,
/// `kvm_msrs`, `kvm_irq_routing`): `header`, then `elements`, in one
/// buffer; runs `body` on it; returns the elements as the kernel left
/// them, as many as `count` reads from the header afterwards.
func withFlexibleArray<Header, Element>(
    header: Header, elements: [Element], count: (UnsafeRawPointer) -> UInt32,
    _ body: (UnsafeMutableRawPointer) throws(KVMError) -> Void
) throws(KVMError) -> [Element] {
    let headerSize = MemoryLayout<Header>.size
    precondition(headerSize % MemoryLayout<Element>.alignment == 0, "flexible array misaligned after its header")
    let total = headerSize + MemoryLayout<Element>.stride * elements.count
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: total, alignment: max(MemoryLayout<Header>.alignment, MemoryLayout<Element>.alignment, 8))
    defer { buffer.deallocate() }
    // Safe: `buffer` holds `total` bytes: one Header, then `elements.count`
    // Elements at the stride the C layout uses (the precondition checks the
    // array starts aligned, as the C flexible array member does).
    buffer.storeBytes(of: header, as: Header.self)
    let array = buffer + headerSize
    for (i, e) in elements.enumerated() { array.storeBytes(of: e, toByteOffset: i * MemoryLayout<Element>.stride, as: Element.self) }
    try body(buffer)
    let n = min(Int(count(UnsafeRawPointer(buffer))), elements.count)
    return (0..<n).map { array.load(fromByteOffset: $0 * MemoryLayout<Element>.stride, as: Element.self) }
}
