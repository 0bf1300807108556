import VfsvmConfig

/// A vfsvm VM as a libvirt domain describes it: only what vfsvm honours,
/// in plain values (paths, sizes in bytes, flags). Built by
/// `DomainParser` from domain XML and written back by `DomainWriter`.
public struct DomainConfig: Equatable, Sendable {
    /// `<domain type=...>`: kvm or qemu (both run the same vfsvm VM).
    public var type: DomainType = .kvm
    public var name: String
    public var uuid: String?
    /// `<memory>` in bytes, a whole number of MiB.
    public var memoryBytes: UInt64
    /// `<vcpu>`.
    public var vcpus: Int = 1
    /// `<os><kernel>`: a kernel or a vfsvm guest.img bundle.
    public var kernel: String
    public var initrd: String?
    public var cmdline: String?
    /// `<os><type machine=...>` as written (nil when absent).
    public var machine: String?
    public var memoryBacking: MemoryBacking?
    public var filesystems: [DomainFilesystem] = []
    public var disks: [DomainDisk] = []
    /// The first `<serial>` (or, without one, a `<console>` on a serial
    /// target): where COM1 goes.
    public var console: CharBackend?
    public var onPoweroff: LifecycleAction?
    public var onReboot: LifecycleAction?
    public var onCrash: LifecycleAction?
    /// `<features><acpi/>`.
    public var acpi: Bool = false
    /// The virtio transport for every device: from the devices'
    /// `<address type=...>`, else virtio-mmio on a `microvm` machine and
    /// PCI on any other (what libvirt would give QEMU).
    public var transport: DomainTransport = .pci

    public init(name: String, memoryBytes: UInt64, kernel: String) {
        self.name = name
        self.memoryBytes = memoryBytes
        self.kernel = kernel
    }
}

public enum DomainType: String, Sendable, CaseIterable { case kvm, qemu }

public enum DomainTransport: String, Sendable, CaseIterable {
    case pci
    /// libvirt's `<address type='virtio-mmio'/>`.
    case mmio
}

/// `<memoryBacking>`: vfsvm's guest RAM is always a shared memfd, which
/// `<source type='memfd'/><access mode='shared'/>` states explicitly.
public struct MemoryBacking: Equatable, Sendable {
    public enum Source: String, Sendable, CaseIterable { case memfd, anonymous }
    public enum Access: String, Sendable, CaseIterable { case shared, `private` }
    public var source: Source?
    public var access: Access?

    public init(source: Source? = nil, access: Access? = nil) {
        self.source = source
        self.access = access
    }
}

/// `<filesystem type='mount'>` with `<driver type='virtiofs'/>`.
public struct DomainFilesystem: Equatable, Sendable {
    /// `<source dir=...>`.
    public var source: String
    /// `<target dir=...>`: the virtio-fs tag.
    public var tag: VirtioFSTag
    public var readOnly = false
    /// `<driver queue=...>`: the request queue size.
    public var queueSize: Int?
    /// `<driver packed='on|off'>`.
    public var packed: Bool?
    /// `<binary path=...>`: the virtiofs daemon QEMU under libvirt runs.
    public var binaryPath: String?
    /// `<binary xattr='on|off'>`.
    public var xattr: Bool?
    /// `<binary><cache mode=...>`: libvirt 9.0 knows none and always.
    public var cache: CacheMode?
    /// `<binary><lock posix=... flock=...>`.
    public var posixLock: Bool?
    public var flock: Bool?

    public init(source: String, tag: VirtioFSTag, readOnly: Bool = false) {
        self.source = source
        self.tag = tag
        self.readOnly = readOnly
    }
}

/// `<disk type='file' device='disk'>`, raw, on the virtio bus.
public struct DomainDisk: Equatable, Sendable {
    public var path: String
    public var readOnly = false
    /// `<target dev=...>` (vda, vdb, ...).
    public var target: String

    public init(path: String, target: String, readOnly: Bool = false) {
        self.path = path
        self.target = target
        self.readOnly = readOnly
    }
}

/// A character device backend libvirt names by `type=`.
public enum CharBackend: Equatable, Sendable {
    case stdio
    case pty
    /// `<source path=...>`.
    case file(String)
}

/// `<on_poweroff>` and friends; vfsvm honours only `destroy` (the VM ends
/// and `vfsvm run` exits).
public enum LifecycleAction: String, Sendable, CaseIterable {
    case destroy, restart, preserve
    case renameRestart = "rename-restart"
    case coredumpDestroy = "coredump-destroy"
    case coredumpRestart = "coredump-restart"
}

/// Why a domain is not turned into a VM. Every message names the file.
public enum DomainError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Not well-formed XML, or not valid against libvirt's schema:
    /// libxml2's own messages, each `FILE:LINE: ...`.
    case invalidXML(String, [String])
    /// Valid for libvirt, but asking for things vfsvm cannot honour (all
    /// of them).
    case unsupported(String, [String])
    /// Values vfsvm cannot use whatever the switches (a memory size not in
    /// whole MiB, a tag longer than 36 bytes, ...).
    case badValue(String, [String])
    case schemaUnavailable(String, String)
    case unreadable(String, String)

    public var description: String {
        switch self {
        case let .invalidXML(file, messages):
            "\(file): not a valid libvirt domain: \(messages.joined(separator: "; "))"
        case let .unsupported(file, items):
            "\(file): vfsvm cannot honour \(items.count == 1 ? "this" : "these \(items.count) things"): \(items.joined(separator: "; ")) (--ignore-unsupported runs without \(items.count == 1 ? "it" : "them"))"
        case let .badValue(file, items):
            "\(file): \(items.joined(separator: "; "))"
        case let .schemaUnavailable(path, message):
            "libvirt's domain schema \(path) cannot be used (is libvirt installed?): \(message)"
        case let .unreadable(file, reason):
            "\(file): \(reason)"
        }
    }
}
