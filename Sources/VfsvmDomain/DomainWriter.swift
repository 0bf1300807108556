import VfsvmConfig

/// Writes a `DomainConfig` as libvirt domain XML that QEMU under libvirt
/// runs as the same VM, with vfsvm as each share's virtiofs daemon
/// (`<binary path=...>`), and that `DomainParser` reads back as the same
/// configuration.
///
/// What is written beyond the configuration itself is what libvirt needs
/// to behave like `vfsvm run` (../shared/LIBVIRT.md): devices vfsvm does
/// not have switched off (`<controller type='usb' model='none'/>`,
/// `<memballoon model='none'/>`), and a console that mirrors the serial
/// port. A nil cache mode writes no `<cache>`: the daemon's default, which
/// for vfsvm and virtiofsd is auto (libvirt 9.0 can only say none or
/// always).
public struct DomainWriter {
    public init() {}

    public func xml(_ c: DomainConfig) -> String {
        var out = "<domain type='\(c.type.rawValue)'>\n"
        out += "  <name>\(esc(c.name))</name>\n"
        if let uuid = c.uuid { out += "  <uuid>\(esc(uuid))</uuid>\n" }
        let kib = c.memoryBytes / 1024
        out += "  <memory unit='KiB'>\(kib)</memory>\n"
        out += "  <currentMemory unit='KiB'>\(kib)</currentMemory>\n"
        if let b = c.memoryBacking {
            out += "  <memoryBacking>\n"
            if let s = b.source { out += "    <source type='\(s.rawValue)'/>\n" }
            if let a = b.access { out += "    <access mode='\(a.rawValue)'/>\n" }
            out += "  </memoryBacking>\n"
        }
        out += "  <vcpu placement='static'>\(c.vcpus)</vcpu>\n"
        out += "  <os>\n"
        out += "    <type arch='x86_64'\(c.machine.map { " machine='\(esc($0))'" } ?? "")>hvm</type>\n"
        out += "    <kernel>\(esc(c.kernel))</kernel>\n"
        if let initrd = c.initrd { out += "    <initrd>\(esc(initrd))</initrd>\n" }
        if let cmdline = c.cmdline { out += "    <cmdline>\(esc(cmdline))</cmdline>\n" }
        out += "  </os>\n"
        if c.acpi { out += "  <features>\n    <acpi/>\n  </features>\n" }
        if let a = c.onPoweroff { out += "  <on_poweroff>\(a.rawValue)</on_poweroff>\n" }
        if let a = c.onReboot { out += "  <on_reboot>\(a.rawValue)</on_reboot>\n" }
        if let a = c.onCrash { out += "  <on_crash>\(a.rawValue)</on_crash>\n" }
        out += "  <devices>\n"
        let address = addressLine(c)
        for fs in c.filesystems { out += filesystem(fs, address: address) }
        for disk in c.disks { out += self.disk(disk, address: address) }
        if let console = c.console {
            out += character("serial", console, target: "<target port='0'/>")
            out += character("console", console, target: "<target type='serial' port='0'/>")
        }
        out += "    <controller type='usb' model='none'/>\n"
        out += "    <memballoon model='none'/>\n"
        out += "  </devices>\n"
        out += "</domain>\n"
        return out
    }

    /// virtio-mmio is said on every device; PCI is libvirt's default on
    /// pc and q35 machines and needs no address (libvirt assigns slots).
    private func addressLine(_ c: DomainConfig) -> String? {
        switch c.transport {
        case .mmio: "      <address type='virtio-mmio'/>\n"
        case .pci: c.machine.map(DomainMapper.isMicrovm) == true ? "      <address type='pci'/>\n" : nil
        }
    }

    private func filesystem(_ fs: DomainFilesystem, address: String?) -> String {
        var out = "    <filesystem type='mount' accessmode='passthrough'>\n"
        var driver = "      <driver type='virtiofs'"
        if let q = fs.queueSize { driver += " queue='\(q)'" }
        if let p = fs.packed { driver += " packed='\(onOff(p))'" }
        out += driver + "/>\n"
        var binaryAttributes = ""
        if let path = fs.binaryPath { binaryAttributes += " path='\(esc(path))'" }
        if let x = fs.xattr { binaryAttributes += " xattr='\(onOff(x))'" }
        var binaryChildren = ""
        if let cache = fs.cache { binaryChildren += "        <cache mode='\(cache == .never ? "none" : cache.rawValue)'/>\n" }
        if fs.posixLock != nil || fs.flock != nil {
            binaryChildren += "        <lock\(fs.posixLock.map { " posix='\(onOff($0))'" } ?? "")\(fs.flock.map { " flock='\(onOff($0))'" } ?? "")/>\n"
        }
        if !binaryChildren.isEmpty {
            out += "      <binary\(binaryAttributes)>\n\(binaryChildren)      </binary>\n"
        } else if !binaryAttributes.isEmpty {
            out += "      <binary\(binaryAttributes)/>\n"
        }
        out += "      <source dir='\(esc(fs.source))'/>\n"
        out += "      <target dir='\(esc(fs.tag.value))'/>\n"
        if fs.readOnly { out += "      <readonly/>\n" }
        if let address { out += address }
        out += "    </filesystem>\n"
        return out
    }

    private func disk(_ d: DomainDisk, address: String?) -> String {
        var out = "    <disk type='file' device='disk'>\n"
        out += "      <driver name='qemu' type='raw'/>\n"
        out += "      <source file='\(esc(d.path))'/>\n"
        out += "      <target dev='\(esc(d.target))' bus='virtio'/>\n"
        if d.readOnly { out += "      <readonly/>\n" }
        if let address { out += address }
        out += "    </disk>\n"
        return out
    }

    private func character(_ element: String, _ backend: CharBackend, target: String) -> String {
        switch backend {
        case .stdio: "    <\(element) type='stdio'>\n      \(target)\n    </\(element)>\n"
        case .pty: "    <\(element) type='pty'>\n      \(target)\n    </\(element)>\n"
        case .file(let path): "    <\(element) type='file'>\n      <source path='\(esc(path))'/>\n      \(target)\n    </\(element)>\n"
        }
    }

    private func onOff(_ b: Bool) -> String { b ? "on" : "off" }

    /// Text and attribute values with the five XML specials escaped.
    private func esc(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for ch in s {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "'": out += "&apos;"
            case "\"": out += "&quot;"
            default: out.append(ch)
            }
        }
        return out
    }
}
