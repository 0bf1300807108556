import Glibc
import VfsvmConfig

/// Turns libvirt domain XML into a `DomainConfig`: first libxml2 checks it
/// is well formed and valid against libvirt's RelaxNG schema (what
/// virt-xml-validate does), then the elements vfsvm honours are mapped and
/// everything else is collected into one list.
public struct DomainParser {
    /// With it, what vfsvm cannot honour becomes `warnings` instead of an
    /// error.
    public var ignoreUnsupported = false
    public var schema: DomainSchema?
    /// Also define the domain on libvirt's in-process test driver
    /// (`LibvirtCheck`), so libvirt's own post-parse checks apply.
    public var libvirtCheck = true

    public init(ignoreUnsupported: Bool = false, schema: DomainSchema? = nil) {
        self.ignoreUnsupported = ignoreUnsupported
        self.schema = schema
    }

    public struct Result: Sendable {
        public var config: DomainConfig
        /// What vfsvm leaves out (only with `ignoreUnsupported`).
        public var warnings: [String]
        /// The same, each item as the error lists it.
        public var unsupported: [String]
    }

    /// Reads and parses the file at `path`.
    public func parse(file path: String) throws(DomainError) -> Result {
        let bytes = try Self.read(path)
        return try parse(bytes: bytes, fileName: path)
    }

    public func parse(xml: String, fileName: String) throws(DomainError) -> Result {
        try parse(bytes: Array(xml.utf8), fileName: fileName)
    }

    public func parse(bytes: [UInt8], fileName: String) throws(DomainError) -> Result {
        let document = try XMLDocumentHandle.parse(bytes, fileName: fileName)
        let schema: DomainSchema
        if let given = self.schema { schema = given } else { schema = try DomainSchema.standard() }
        let complaints = schema.validate(document, fileName: fileName)
        guard complaints.isEmpty else { throw .invalidXML(fileName, complaints) }
        guard let root = document.root() else { throw .invalidXML(fileName, ["\(fileName): no root element"]) }
        if libvirtCheck, let complaint = LibvirtCheck.complaint(about: String(decoding: bytes, as: UTF8.self)) {
            throw .invalidXML(fileName, ["\(fileName): libvirt: \(complaint)"])
        }
        var mapper = DomainMapper(fileName: fileName)
        let config = mapper.map(root)
        guard mapper.bad.isEmpty, let config else {
            throw .badValue(fileName, mapper.bad.isEmpty ? ["the domain has no usable configuration"] : mapper.bad)
        }
        if !mapper.unsupported.isEmpty && !ignoreUnsupported { throw .unsupported(fileName, mapper.unsupported) }
        return Result(config: config, warnings: mapper.unsupported.map { "\(fileName): ignored (not supported by vfsvm): \($0)" },
                      unsupported: mapper.unsupported)
    }

    static func read(_ path: String) throws(DomainError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .unreadable(path, String(cString: strerror(errno))) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .unreadable(path, String(cString: strerror(errno)))
            }
            if n == 0 { break }
            bytes += chunk[0..<n]
            guard bytes.count <= 16 << 20 else { throw .unreadable(path, "larger than 16 MiB; not a domain XML file") }
        }
        return bytes
    }
}

/// The mapping proper, over a schema-valid tree. `unsupported` collects
/// what vfsvm cannot honour, `bad` what it cannot use at all.
struct DomainMapper {
    let fileName: String
    var unsupported: [String] = []
    var bad: [String] = []

    init(fileName: String) { self.fileName = fileName }

    /// Top-level elements that change nothing for vfsvm.
    static let harmless: Set<String> = ["name", "uuid", "genid", "title", "description", "metadata", "clock", "pm", "seclabel", "resource",
                                        "sysinfo"]

    mutating func map(_ root: XMLElement) -> DomainConfig? {
        let typeName = root["type"] ?? ""
        let type = DomainType(rawValue: typeName)
        if type == nil { unsupported.append("<domain type='\(typeName)'> (vfsvm runs kvm and qemu domains)") }

        let memory = root.child("memory").flatMap { scaled($0, what: "<memory>") }
        if let current = root.child("currentMemory").flatMap({ scaled($0, what: "<currentMemory>") }), let memory, current != memory {
            unsupported.append("<currentMemory> \(current >> 20) MiB below <memory> \(memory >> 20) MiB (vfsvm has no balloon)")
        }
        if let memory, memory % (1 << 20) != 0 { bad.append("<memory> \(memory) bytes is not a whole number of MiB") }
        if root.child("maxMemory") != nil { unsupported.append("<maxMemory> (memory hotplug)") }

        let os = root.child("os")
        let kernel = os?.child("kernel")?.text
        if kernel == nil || kernel == "" { bad.append("no <os><kernel>: vfsvm boots a kernel directly") }
        guard let memory, let kernel, !kernel.isEmpty else {
            if memory == nil && bad.isEmpty { bad.append("no <memory>") }
            return nil
        }

        var config = DomainConfig(name: root.child("name")?.text ?? "", memoryBytes: memory, kernel: kernel)
        config.type = type ?? .kvm
        config.uuid = root.child("uuid")?.text
        if let os { mapOS(os, into: &config) }
        if let vcpu = root.child("vcpu") { mapVCPU(vcpu, into: &config) }
        if let backing = root.child("memoryBacking") { config.memoryBacking = mapMemoryBacking(backing) }
        if let features = root.child("features") { config.acpi = mapFeatures(features) }
        config.onPoweroff = lifecycle(root, "on_poweroff")
        config.onReboot = lifecycle(root, "on_reboot")
        config.onCrash = lifecycle(root, "on_crash")
        if let cpu = root.child("cpu"), cpu.child("numa") != nil { unsupported.append("<cpu><numa> (vfsvm has one NUMA node)") }

        let mapped: Set<String> = ["memory", "currentMemory", "maxMemory", "os", "vcpu", "memoryBacking", "features", "on_poweroff",
                                   "on_reboot", "on_crash", "cpu", "devices"]
        for e in root.children where !mapped.contains(e.name) && !Self.harmless.contains(e.name) {
            unsupported.append("<\(e.name)>")
        }

        var transports: [DomainTransport] = []
        if let devices = root.child("devices") { mapDevices(devices, into: &config, transports: &transports) }
        let distinct = Set(transports)
        if distinct.count > 1 {
            unsupported.append("devices on both pci and virtio-mmio addresses (vfsvm puts every device on one transport)")
        }
        config.transport = transports.first ?? (config.machine.map(Self.isMicrovm) == true ? .mmio : .pci)
        return config
    }

    static func isMicrovm(_ machine: String) -> Bool { machine == "microvm" || machine.hasPrefix("microvm-") }

    // MARK: - Scalars

    /// libvirt's scaled integers: `unit` b/bytes, k/KiB (the default),
    /// KB = 1000, M/MiB, MB, G/GiB, GB, T/TiB, TB, P, E; case-insensitive
    /// as libvirt's virScaleInteger takes them.
    func scaledValue(_ text: String, unit: String?) -> UInt64? {
        guard let value = UInt64(text) else { return nil }
        var multiplier: UInt64 = 1024
        if let unit, !unit.isEmpty {
            let u = unit.lowercased()
            if u == "b" || u == "byte" || u == "bytes" {
                multiplier = 1
            } else {
                let rest = u.dropFirst()
                let base: UInt64
                switch rest {
                case "", "ib": base = 1024
                case "b": base = 1000
                default: return nil
                }
                let powers: [Character: Int] = ["k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6]
                guard let first = u.first, let p = powers[first] else { return nil }
                multiplier = 1
                for _ in 0..<p { multiplier *= base }
            }
        }
        let (bytes, overflow) = value.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : bytes
    }

    mutating func scaled(_ e: XMLElement, what: String) -> UInt64? {
        guard let bytes = scaledValue(e.text, unit: e["unit"]) else {
            bad.append("\(what) '\(e.text)' unit '\(e["unit"] ?? "KiB")' is not a size vfsvm can use")
            return nil
        }
        guard bytes > 0 else {
            bad.append("\(what) is zero")
            return nil
        }
        return bytes
    }

    mutating func onOff(_ value: String?, what: String) -> Bool? {
        switch value {
        case nil: return nil
        case "on": return true
        case "off": return false
        case let v?:
            bad.append("\(what)='\(v)': expected on or off")
            return nil
        }
    }

    mutating func lifecycle(_ root: XMLElement, _ name: String) -> LifecycleAction? {
        guard let e = root.child(name) else { return nil }
        guard let action = LifecycleAction(rawValue: e.text) else {
            unsupported.append("<\(name)>\(e.text)</\(name)>")
            return nil
        }
        if action != .destroy { unsupported.append("<\(name)>\(e.text)</\(name)> (vfsvm ends the VM: destroy)") }
        return action
    }

    // MARK: - Sections

    mutating func mapOS(_ os: XMLElement, into config: inout DomainConfig) {
        if let type = os.child("type") {
            if type.text != "hvm" { unsupported.append("<os><type>\(type.text)</type> (vfsvm runs hvm guests)") }
            if let arch = type["arch"], arch != "x86_64" { unsupported.append("<os><type arch='\(arch)'> (vfsvm is x86_64)") }
            if let machine = type["machine"] {
                config.machine = machine
                let known = machine == "pc" || machine == "q35" || machine.hasPrefix("pc-i440fx-") || machine.hasPrefix("pc-q35-")
                    || Self.isMicrovm(machine)
                if !known { unsupported.append("machine type '\(machine)' (vfsvm's board stands in for pc, q35 and microvm)") }
            }
        }
        if let initrd = os.child("initrd")?.text, !initrd.isEmpty { config.initrd = initrd }
        if let cmdline = os.child("cmdline") { config.cmdline = cmdline.text }
        for e in os.children where !["type", "kernel", "initrd", "cmdline", "boot", "bootmenu", "smbios"].contains(e.name) {
            unsupported.append("<os><\(e.name)> (vfsvm boots the <kernel> directly)")
        }
        if os["firmware"] != nil { unsupported.append("<os firmware='\(os["firmware"] ?? "")'> (vfsvm boots the <kernel> directly)") }
    }

    mutating func mapVCPU(_ vcpu: XMLElement, into config: inout DomainConfig) {
        guard let n = Int(vcpu.text), (1...255).contains(n) else {
            bad.append("<vcpu>\(vcpu.text)</vcpu>: vfsvm runs 1 to 255 vCPUs")
            return
        }
        config.vcpus = n
        if let current = vcpu["current"], Int(current) != n {
            unsupported.append("<vcpu current='\(current)'> below \(n) (vfsvm has no vCPU hotplug)")
        }
    }

    mutating func mapMemoryBacking(_ e: XMLElement) -> MemoryBacking {
        var backing = MemoryBacking()
        if let source = e.child("source") {
            if let s = MemoryBacking.Source(rawValue: source["type"] ?? "") {
                backing.source = s
            } else {
                unsupported.append("<memoryBacking><source type='\(source["type"] ?? "")'> (vfsvm's guest RAM is a memfd)")
            }
        }
        if let access = e.child("access"), let mode = access["mode"] { backing.access = MemoryBacking.Access(rawValue: mode) }
        for c in e.children where c.name != "source" && c.name != "access" && c.name != "discard" && c.name != "allocation" {
            unsupported.append("<memoryBacking><\(c.name)>")
        }
        return backing
    }

    mutating func mapFeatures(_ e: XMLElement) -> Bool {
        for c in e.children where !["acpi", "apic", "pae"].contains(c.name) { unsupported.append("<features><\(c.name)>") }
        return e.child("acpi") != nil
    }

    // MARK: - Devices

    mutating func mapDevices(_ devices: XMLElement, into config: inout DomainConfig, transports: inout [DomainTransport]) {
        var consoleFromSerial = false
        for d in devices.children {
            switch d.name {
            case "emulator": break
            case "filesystem":
                if let fs = mapFilesystem(d, transports: &transports) {
                    if config.filesystems.contains(where: { $0.tag == fs.tag }) {
                        bad.append("two <filesystem> use the target dir '\(fs.tag)'; each needs its own")
                    } else {
                        config.filesystems.append(fs)
                    }
                }
            case "disk":
                if let disk = mapDisk(d, transports: &transports) { config.disks.append(disk) }
            case "serial":
                if consoleFromSerial {
                    unsupported.append("a second <serial> (vfsvm has one serial port, COM1)")
                } else if let backend = charBackend(d, what: "<serial>") {
                    if let port = d.child("target")?["port"], port != "0" { unsupported.append("<serial> on port \(port) (vfsvm has COM1 only)") }
                    config.console = backend
                    consoleFromSerial = true
                }
            case "console":
                let targetType = d.child("target")?["type"] ?? "serial"
                if targetType != "serial" {
                    unsupported.append("<console> with target type '\(targetType)' (vfsvm's console is the serial port)")
                } else if !consoleFromSerial, let backend = charBackend(d, what: "<console>") {
                    config.console = backend
                }
            case "controller":
                let type = d["type"] ?? ""
                let model = d["model"]
                if type == "pci" || (type == "usb" && model == "none") { break }
                unsupported.append("<controller type='\(type)'\(model.map { " model='\($0)'" } ?? "")>")
            case "memballoon":
                if d["model"] != "none" { unsupported.append("<memballoon model='\(d["model"] ?? "")'> (vfsvm has no balloon; use model='none')") }
            case "input":
                if d["bus"] != "ps2" { unsupported.append("<input type='\(d["type"] ?? "")' bus='\(d["bus"] ?? "")'> (vfsvm has only the i8042)") }
            case "video":
                if d.child("model")?["type"] != "none" { unsupported.append("<video> (vfsvm has no display)") }
            default:
                unsupported.append("<\(d.name)\(d["type"].map { " type='\($0)'" } ?? "")>")
            }
        }
    }

    /// The transport an `<address>` asks for, if any.
    mutating func address(_ device: XMLElement, what: String) -> DomainTransport? {
        guard let a = device.child("address") else { return nil }
        switch a["type"] {
        case "pci": return .pci
        case "virtio-mmio": return .mmio
        default:
            unsupported.append("\(what) on an address of type '\(a["type"] ?? "")' (vfsvm has pci and virtio-mmio)")
            return nil
        }
    }

    mutating func mapFilesystem(_ e: XMLElement, transports: inout [DomainTransport]) -> DomainFilesystem? {
        let target = e.child("target")?["dir"] ?? ""
        let what = "<filesystem> '\(target)'"
        let type = e["type"] ?? "mount"
        let driver = e.child("driver")
        guard type == "mount", driver?["type"] == "virtiofs" else {
            unsupported.append("\(what) of type '\(type)' with driver '\(driver?["type"] ?? "path")' (vfsvm serves virtiofs mounts)")
            return nil
        }
        if let mode = e["accessmode"], mode != "passthrough" { unsupported.append("\(what) accessmode='\(mode)' (virtiofs passes through)") }
        guard let source = e.child("source"), let dir = source["dir"] else {
            unsupported.append("\(what) without <source dir> (a <source socket> daemon belongs to libvirt, not vfsvm run)")
            return nil
        }
        let tag: VirtioFSTag
        do {
            tag = try VirtioFSTag(target)
        } catch {
            bad.append("\(what): \(error)")
            return nil
        }
        var fs = DomainFilesystem(source: dir, tag: tag, readOnly: e.child("readonly") != nil)
        if let q = driver?["queue"] {
            if let n = Int(q), n > 0, n <= 32768, n & (n - 1) == 0 {
                fs.queueSize = n
            } else {
                bad.append("\(what) <driver queue='\(q)'>: a queue size is a power of two up to 32768")
            }
        }
        fs.packed = onOff(driver?["packed"], what: "\(what) <driver packed")
        if let binary = e.child("binary") {
            fs.binaryPath = binary["path"]
            fs.xattr = onOff(binary["xattr"], what: "\(what) <binary xattr")
            if let mode = binary.child("cache")?["mode"] {
                if let m = CacheMode(named: mode) { fs.cache = m } else { bad.append("\(what) <cache mode='\(mode)'>: expected none or always") }
            }
            if let lock = binary.child("lock") {
                fs.posixLock = onOff(lock["posix"], what: "\(what) <lock posix")
                fs.flock = onOff(lock["flock"], what: "\(what) <lock flock")
            }
        }
        if e.child("idmap") != nil { unsupported.append("\(what) <idmap>") }
        if let t = address(e, what: what) { transports.append(t) }
        return fs
    }

    mutating func mapDisk(_ e: XMLElement, transports: inout [DomainTransport]) -> DomainDisk? {
        let dev = e.child("target")?["dev"] ?? ""
        let what = "<disk> '\(dev)'"
        let type = e["type"] ?? "file"
        let device = e["device"] ?? "disk"
        guard type == "file", device == "disk" else {
            unsupported.append("\(what) type='\(type)' device='\(device)' (vfsvm attaches raw files as virtio-blk disks)")
            return nil
        }
        if let format = e.child("driver")?["type"], format != "raw" {
            unsupported.append("\(what) in format '\(format)' (vfsvm reads raw images)")
            return nil
        }
        if let bus = e.child("target")?["bus"], bus != "virtio" {
            unsupported.append("\(what) on bus '\(bus)' (vfsvm's disks are virtio-blk)")
            return nil
        }
        guard let file = e.child("source")?["file"], !file.isEmpty else {
            unsupported.append("\(what) without a <source file> (an empty drive)")
            return nil
        }
        if let t = address(e, what: what) { transports.append(t) }
        return DomainDisk(path: file, target: dev, readOnly: e.child("readonly") != nil)
    }

    mutating func charBackend(_ e: XMLElement, what: String) -> CharBackend? {
        switch e["type"] ?? "pty" {
        case "pty": return .pty
        case "stdio": return .stdio
        case "file":
            guard let path = e.child("source")?["path"] else {
                bad.append("\(what) type='file' without <source path>")
                return nil
            }
            return .file(path)
        case let other:
            unsupported.append("\(what) type='\(other)' (vfsvm's console goes to stdio, a pty or a file)")
            return nil
        }
    }
}
