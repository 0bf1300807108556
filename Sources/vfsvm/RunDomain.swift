import ArgumentParser
import Glibc
import VfsvmConfig
import VfsvmDomain
import VfsvmMachine
import VfsvmSys

// `vfsvm run --domain FILE [--ignore-unsupported]` and `--print-domain-xml`.
// A domain becomes the same option values the command line gives (shares,
// kernel, memory, ...), so the rest of `vfsvm run` is unchanged; the way
// out writes those values as libvirt domain XML (VfsvmDomain's
// DomainWriter). Run.swift declares the three options and calls in here
// first thing in run().

/// What the domain asks of `vfsvm run` beyond the option values: the
/// console file (`<serial type='file'>`), opened when the VM boots.
struct DomainRunExtras {
    var consoleFile: String?

    /// COM1's output goes to the console file instead of stdout.
    func redirectConsole() throws(PlanError) {
        guard let path = consoleFile else { return }
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw PlanError(description: "console file \(path): \(String(cString: strerror(errno)))", status: 66) }
        defer { close(fd) }
        guard dup2(fd, 1) == 1 else { throw PlanError(description: "console file \(path): \(String(cString: strerror(errno)))", status: 1) }
    }
}

/// The options `vfsvm run` takes from a domain, and what it cannot honour.
struct DomainRunOptions: Equatable {
    var shares: [String] = []
    var disks: [String] = []
    var kernel: String
    var initrd: String?
    var cmdline: String?
    var memory: String
    var cpus: Int
    var transport: MachineConfig.Transport
    var ring: RingChoice?
    var consoleFile: String?
    var unsupported: [String] = []

    /// The mapping; every item `vfsvm run` cannot honour (beyond what
    /// the domain parser already found) lands in `unsupported`.
    init(_ c: DomainConfig) {
        kernel = c.kernel
        initrd = c.initrd
        cmdline = c.cmdline
        memory = "\(c.memoryBytes >> 20)M"
        cpus = c.vcpus
        transport = c.transport == .mmio ? .mmio : .pci
        if !c.acpi { unsupported.append("no <features><acpi/> (vfsvm's board always has ACPI)") }
        switch c.console {
        case nil, .stdio?: break
        case .file(let path)?: consoleFile = path
        case .pty?: unsupported.append("<serial type='pty'> (vfsvm run's console is stdin/stdout or a file)")
        }
        // Raw disks in order: vda, vdb, ... as --disk attaches them.
        for d in c.disks {
            guard !d.path.contains(":") else {
                unsupported.append("<disk> '\(d.target)': a path with ':' (vfsvm run --disk cannot express it)")
                continue
            }
            disks.append(d.readOnly ? d.path + ":ro" : d.path)
        }
        var rings: Set<Bool> = []
        for fs in c.filesystems {
            let what = "<filesystem> '\(fs.tag)'"
            var text = "\(fs.source):\(fs.tag.value)"
            if fs.readOnly { text += ":ro" }
            if let cache = fs.cache { text += ":cache=\(cache.rawValue)" }
            // The tag and options are read from the right: a tag with ':'
            // in it cannot be said on vfsvm run's command line.
            let back = try? ShareSpec(parsing: text)
            guard back?.hostPath == fs.source, back?.tag == fs.tag else {
                unsupported.append("\(what): a tag or directory vfsvm run --share cannot express")
                continue
            }
            shares.append(text)
            if let q = fs.queueSize, q != 1024 { unsupported.append("\(what) <driver queue='\(q)'> (vfsvm's virtio-fs queues hold 1024)") }
            if let p = fs.packed { rings.insert(p) }
            if fs.xattr == true { unsupported.append("\(what) <binary xattr='on'> (vfsvm run's shares have no extended attributes)") }
            if fs.posixLock == false || fs.flock == false {
                unsupported.append("\(what) <lock> off (vfsvm run's shares always offer POSIX locks and flock)")
            }
        }
        if rings.count > 1 {
            unsupported.append("packed='on' on some <filesystem> and 'off' on others (vfsvm run's ring choice is for all devices)")
        } else if let packed = rings.first {
            // QEMU's packed='on' offers VIRTIO_F_RING_PACKED and the driver
            // chooses: vfsvm's --ring auto.
            ring = packed ? .auto : .split
        }
    }
}

extension Run {
    /// Options a domain replaces: giving one with --domain is refused.
    static let domainReplaces = ["--share", "--kernel", "--initrd", "--cmdline", "--memory", "--cpus", "--transport", "--ring", "--disk"]

    /// Which of `names` the command line spells out (`--name V` or
    /// `--name=V`).
    static func given(_ names: [String], in arguments: [String]) -> [String] {
        names.filter { name in arguments.contains { $0 == name || $0.hasPrefix(name + "=") } }
    }

    /// Reads `--domain`, refuses options it conflicts with and replaces
    /// this command's VM options with the domain's. Prints the warnings of
    /// `--ignore-unsupported`.
    mutating func applyDomain(_ path: String) throws -> DomainRunExtras {
        do {
            return try loadDomain(path)
        } catch {
            throw failure(error.description, status: error.status)
        }
    }

    private mutating func loadDomain(_ path: String) throws(PlanError) -> DomainRunExtras {
        var conflicts = Self.given(Self.domainReplaces, in: CommandLine.arguments)
        if guest != nil { conflicts.append("a GUEST argument") }
        guard conflicts.isEmpty else {
            throw PlanError(description: "--domain \(path) describes the VM: drop \(conflicts.joined(separator: ", ")) (or leave out --domain)", status: 64)
        }
        let parsed: DomainParser.Result
        do {
            parsed = try DomainParser(ignoreUnsupported: true).parse(file: path)
        } catch {
            if case .unreadable = error { throw PlanError(description: error.description, status: 66) }
            throw PlanError(description: error.description, status: 64)
        }
        let options = DomainRunOptions(parsed.config)
        let items = parsed.unsupported + options.unsupported
        if !items.isEmpty {
            guard ignoreUnsupported else { throw PlanError(description: DomainError.unsupported(path, items).description, status: 64) }
            for item in items { logLine("vfsvm: \(path): ignored (not supported by vfsvm run): \(item)") }
        }
        share = options.shares
        disk = options.disks
        // `<kernel>` may name a guest.img bundle (what --print-domain-xml
        // writes for one): it is then booted as GUEST, its initramfs and
        // command line included.
        if (try? GuestImage.kind(ofFileAt: options.kernel)) == .bundle {
            guest = options.kernel
            kernel = nil
        } else {
            kernel = options.kernel
        }
        initrd = options.initrd
        cmdline = options.cmdline
        memory = options.memory
        cpus = options.cpus
        transport = options.transport
        if let r = options.ring { ring = r }
        do { try validate() } catch { throw PlanError(description: "\(path): \(error)", status: 64) }
        return DomainRunExtras(consoleFile: options.consoleFile)
    }

    /// `--print-domain-xml`: the libvirt domain equivalent of these
    /// options, on stdout.
    func writeDomainXML() throws {
        do {
            let config = try domainConfig()
            let xml = DomainWriter().xml(config)
            var out = StandardOutput()
            out.write(xml)
        } catch {
            throw failure(error.description, status: error.status)
        }
    }

    /// The domain QEMU under libvirt runs as this VM: vfsvm as each
    /// share's virtiofs daemon, PCI on q35 or virtio-mmio on microvm,
    /// shared memfd memory, ACPI, and every stop ending the domain.
    func domainConfig() throws(PlanError) -> DomainConfig {
        if guest != nil && kernel != nil {
            throw PlanError(description: "--print-domain-xml: a GUEST bundle with --kernel has no libvirt equivalent (a domain names one kernel file)", status: 64)
        }
        guard let kernelPath = kernel ?? guest else { throw PlanError(description: "give a GUEST image or --kernel", status: 64) }
        let bytes: UInt64
        do { bytes = try MemorySize.parse(memory).bytes } catch { throw PlanError(description: error.message, status: 64) }
        var c = DomainConfig(name: "vfsvm", memoryBytes: bytes, kernel: try absolute(kernelPath))
        c.type = accel == .tcg ? .qemu : .kvm
        c.vcpus = cpus
        c.initrd = try initrd.map { (p: String) throws(PlanError) in try absolute(p) }
        c.cmdline = cmdline
        c.transport = (transport ?? .mmio) == .mmio ? .mmio : .pci
        c.machine = (transport ?? .mmio) == .mmio ? "microvm" : "q35"
        c.memoryBacking = MemoryBacking(source: .memfd, access: .shared)
        c.acpi = true
        c.onPoweroff = .destroy
        c.onReboot = .destroy
        c.onCrash = .destroy
        c.console = .stdio
        let binary = Self.virtiofsdLink()
        for text in share {
            let spec: ShareSpec
            do { spec = try ShareSpec(parsing: text) } catch { throw PlanError(description: error.description, status: 64) }
            var fs = DomainFilesystem(source: try absolute(spec.hostPath), tag: spec.tag, readOnly: spec.readOnly)
            fs.queueSize = 1024
            fs.packed = ring != .split
            fs.binaryPath = binary
            // libvirt 9.0 says none or always; auto is the daemon's default.
            fs.cache = spec.cache == .auto ? nil : spec.cache
            c.filesystems.append(fs)
        }
        guard disk.count <= 26 else { throw PlanError(description: "--print-domain-xml: at most 26 disks (vda to vdz)", status: 64) }
        for (i, text) in disk.enumerated() {
            let spec: DiskSpec
            do { spec = try parseDisk(text) } catch { throw PlanError(description: error.message, status: 64) }
            let target = "vd" + String(UnicodeScalar(UInt8(ascii: "a") + UInt8(i)))
            c.disks.append(DomainDisk(path: try absolute(spec.path), target: target, readOnly: spec.readOnly))
        }
        if requestQueues != 1 {
            logLine("vfsvm: --print-domain-xml: --request-queues \(requestQueues) has no libvirt equivalent; the domain has one request queue per share")
        }
        return c
    }

    /// libvirt starts `<binary path>` with virtiofsd's command line, which
    /// vfsvm takes under a name containing "virtiofsd": the
    /// `vfsvm-virtiofsd` link next to this executable when there is one,
    /// else where Configs/README.md installs it.
    static func virtiofsdLink() -> String {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        if n > 0 {
            let exe = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let link = String(exe[..<(exe.lastIndex(of: "/") ?? exe.startIndex)]) + "/vfsvm-virtiofsd"
            if access(link, X_OK) == 0 { return link }
        }
        return "/usr/local/libexec/vfsvm-virtiofsd"
    }

    private func absolute(_ path: String) throws(PlanError) -> String {
        guard let resolved = realpath(path, nil) else {
            throw PlanError(description: "\(path): \(String(cString: strerror(errno)))", status: 66)
        }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}

/// Writes to fd 1 directly, all of it.
struct StandardOutput {
    mutating func write(_ text: String) {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { Glibc.write(1, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            bytes = bytes.dropFirst(n)
        }
    }
}
