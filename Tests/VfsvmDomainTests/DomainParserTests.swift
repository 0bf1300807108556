import Foundation
import Testing
import VfsvmConfig
@testable import VfsvmDomain

/// The XML fixtures shipped with this test target.
func fixture(_ name: String) throws -> String {
    let url = try #require(Bundle.module.url(forResource: name, withExtension: "xml", subdirectory: "Fixtures"))
    return url.path
}

/// A domain around `devices` (and anything else at the top level).
func domain(_ inner: String, type: String = "kvm", memory: String = "<memory unit='MiB'>256</memory>",
            os: String = "<os><type arch='x86_64'>hvm</type><kernel>/k</kernel></os>") -> String {
    "<domain type='\(type)'><name>t</name>\(memory)\(os)\(inner)</domain>"
}

func parse(_ xml: String, ignore: Bool = false) throws(DomainError) -> DomainParser.Result {
    try DomainParser(ignoreUnsupported: ignore).parse(xml: xml, fileName: "t.xml")
}

/// The error a parse throws, or nil when it succeeds.
func parseError(_ xml: String, ignore: Bool = false) -> DomainError? {
    do {
        _ = try parse(xml, ignore: ignore)
        return nil
    } catch {
        return error
    }
}

@Suite struct DomainMappingTests {
    @Test func fullFixtureMapsEveryElementVfsvmHonours() throws {
        let path = try fixture("full")
        let result = try DomainParser().parse(file: path)
        #expect(result.warnings.isEmpty)
        let c = result.config
        #expect(c.type == .kvm && c.name == "full" && c.uuid == "0b3c8a70-4d1e-4f5a-9a1e-6d3c3f1f2a10")
        #expect(c.memoryBytes == 1 << 30)
        #expect(c.vcpus == 2)
        #expect(c.kernel == "/srv/vm/bzImage" && c.initrd == "/srv/vm/initrd.img" && c.cmdline == "console=ttyS0 quiet")
        #expect(c.machine == "q35")
        #expect(c.memoryBacking == MemoryBacking(source: .memfd, access: .shared))
        #expect(c.acpi)
        #expect(c.onPoweroff == .destroy && c.onReboot == .destroy && c.onCrash == .destroy)
        #expect(c.transport == .pci)
        #expect(c.console == .file("/tmp/full-console.log"))

        #expect(c.filesystems.count == 2)
        let data = c.filesystems[0]
        #expect(data.source == "/srv/data" && data.tag.value == "data" && !data.readOnly)
        #expect(data.queueSize == 1024 && data.packed == true)
        #expect(data.binaryPath == "/usr/bin/vfsvm" && data.xattr == true && data.cache == .always)
        #expect(data.posixLock == true && data.flock == false)
        let ro = c.filesystems[1]
        #expect(ro.source == "/srv/ro" && ro.tag.value == "ro" && ro.readOnly && ro.cache == .never)
        #expect(ro.queueSize == nil && ro.packed == nil && ro.binaryPath == nil && ro.posixLock == nil)

        #expect(c.disks == [DomainDisk(path: "/srv/vm/disk.img", target: "vda", readOnly: true)])
    }

    @Test func virtioMmioAddressOrMicrovmChoosesMmio() throws {
        let c = try DomainParser().parse(file: try fixture("mmio")).config
        #expect(c.type == .qemu && c.transport == .mmio && c.machine == "microvm")
        #expect(c.memoryBytes == 256 << 20)  // 262144 KiB, libvirt's default unit
        #expect(c.console == .pty)
        #expect(c.acpi == false)
        // Without an address a microvm machine still means virtio-mmio, any other PCI.
        let bare = domain("", os: "<os><type arch='x86_64' machine='microvm'>hvm</type><kernel>/k</kernel></os>")
        #expect(try parse(bare).config.transport == .mmio)
        #expect(try parse(domain("")).config.transport == .pci)
        let pci = domain("""
            <devices><filesystem type='mount'><driver type='virtiofs'/><source dir='/d'/><target dir='d'/>
            <address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/></filesystem></devices>
            """, os: "<os><type arch='x86_64' machine='microvm'>hvm</type><kernel>/k</kernel></os>")
        #expect(try parse(pci).config.transport == .pci)
    }

    static let units: [(String, UInt64)] = [
        ("<memory unit='b'>268435456</memory>", UInt64(256 << 20)),
        ("<memory unit='bytes'>268435456</memory>", UInt64(256 << 20)),
        ("<memory unit='KiB'>262144</memory>", UInt64(256 << 20)),
        ("<memory unit='k'>262144</memory>", UInt64(256 << 20)),
        ("<memory>262144</memory>", UInt64(256 << 20)),
        ("<memory unit='M'>300</memory>", UInt64(300 << 20)),
        ("<memory unit='G'>2</memory>", UInt64(2 << 30)),
        ("<memory unit='T'>1</memory>", UInt64(1 << 40)),
        ("<memory unit='MB'>1048576</memory>", UInt64(1_048_576_000_000)),
        ("<memory unit='KB'>1048576</memory>", UInt64(1_048_576_000)),  // 1000 MiB
        ("<memory unit='GiB'>1</memory>", UInt64(1 << 30)),
    ]

    @Test(arguments: units)
    func memoryUnitsScaleAsLibvirtDoes(memory: String, bytes: UInt64) throws {
        #expect(try parse(domain("", memory: memory)).config.memoryBytes == bytes)
    }

    @Test func memoryNotInWholeMiBIsABadValueEvenWhenIgnoringUnsupported() {
        let xml = domain("", memory: "<memory unit='KiB'>1025</memory>")
        #expect(parseError(xml, ignore: true) == .badValue("t.xml", ["<memory> 1049600 bytes is not a whole number of MiB"]))
    }

    @Test func vcpuCountAndItsLimits() throws {
        #expect(try parse(domain("<vcpu>4</vcpu>")).config.vcpus == 4)
        #expect(try parse(domain("")).config.vcpus == 1)
        #expect(parseError(domain("<vcpu>300</vcpu>")) == .badValue("t.xml", ["<vcpu>300</vcpu>: vfsvm runs 1 to 255 vCPUs"]))
    }

    @Test func stdioSerialWinsOverConsole() throws {
        let c = try parse(domain("<devices><serial type='stdio'/><console type='pty'/></devices>")).config
        #expect(c.console == .stdio)
        #expect(try parse(domain("")).config.console == nil)
    }

    @Test func missingKernelIsRefused() {
        let xml = domain("", os: "<os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>")
        #expect(parseError(xml, ignore: true) == .badValue("t.xml", ["no <os><kernel>: vfsvm boots a kernel directly"]))
    }

    @Test func tagLongerThan36BytesIsABadValue() throws {
        let tag = String(repeating: "t", count: 37)
        let xml = domain("<devices><filesystem type='mount'><driver type='virtiofs'/><source dir='/d'/><target dir='\(tag)'/></filesystem></devices>")
        let e = try #require(parseError(xml))
        #expect(e.description.contains("invalid virtio-fs tag") && e.description.contains("at most 36"))
    }

    /// A tag with a ',' would add options to QEMU's -device line.
    @Test func tagWithACommaIsABadValue() throws {
        let xml = domain("<devices><filesystem type='mount'><driver type='virtiofs'/><source dir='/d'/><target dir='x,romfile=/etc/shadow'/></filesystem></devices>")
        let e = try #require(parseError(xml))
        #expect(e.description.contains("invalid virtio-fs tag 'x,romfile=/etc/shadow': it contains ','"))
    }

    @Test func twoFilesystemsWithOneTagAreRefused() {
        let fs = "<filesystem type='mount'><driver type='virtiofs'/><source dir='/d'/><target dir='same'/></filesystem>"
        // libvirt's own post-parse check catches it first.
        #expect(parseError(domain("<devices>\(fs)\(fs)</devices>"))
                == .invalidXML("t.xml", ["t.xml: libvirt: unsupported configuration: filesystem target 'same' specified twice"]))
        var parser = DomainParser()
        parser.libvirtCheck = false
        #expect(throws: DomainError.badValue("t.xml", ["two <filesystem> use the target dir 'same'; each needs its own"])) {
            try parser.parse(xml: domain("<devices>\(fs)\(fs)</devices>"), fileName: "t.xml")
        }
    }
}

@Suite struct DomainRejectionTests {
    @Test func everythingVfsvmCannotHonourIsListedInOneError() throws {
        let path = try fixture("unsupported")
        var caught: DomainError?
        do { _ = try DomainParser().parse(file: path) } catch { caught = error }
        guard case let .unsupported(file, items) = try #require(caught) else {
            Issue.record("expected .unsupported, got \(String(describing: caught))")
            return
        }
        #expect(file == path)
        #expect(items == [
            "machine type 'isapc' (vfsvm's board stands in for pc, q35 and microvm)",
            "<on_reboot>restart</on_reboot> (vfsvm ends the VM: destroy)",
            "<interface type='network'>",
            "<graphics type='vnc'>",
            "<hostdev type='pci'>",
            "<disk> 'vda' in format 'qcow2' (vfsvm reads raw images)",
        ])
        let line = try #require(caught).description
        #expect(line.hasPrefix("\(path): vfsvm cannot honour these 6 things: machine type 'isapc'"))
        #expect(line.hasSuffix("(--ignore-unsupported runs without them)"))
        #expect(!line.contains("\n"))
    }

    @Test func ignoreUnsupportedTurnsTheListIntoWarnings() throws {
        let path = try fixture("unsupported")
        let result = try DomainParser(ignoreUnsupported: true).parse(file: path)
        #expect(result.warnings.count == 6)
        #expect(result.warnings[2] == "\(path): ignored (not supported by vfsvm): <interface type='network'>")
        #expect(result.config.filesystems.map(\.tag.value) == ["data"])
        #expect(result.config.disks.isEmpty)
    }

    static let rejections: [(String, String)] = [
        ("<devices><filesystem type='mount' accessmode='mapped'><driver type='path'/><source dir='/d'/><target dir='d'/></filesystem></devices>",
         "<filesystem> 'd' of type 'mount' with driver 'path' (vfsvm serves virtiofs mounts)"),
        ("<devices><filesystem type='mount'><driver type='virtiofs'/><source socket='/run/fs.sock'/><target dir='d'/></filesystem></devices>",
         "<filesystem> 'd' without <source dir> (a <source socket> daemon belongs to libvirt, not vfsvm run)"),
        ("<devices><disk type='block' device='disk'><source dev='/dev/sda'/><target dev='vda' bus='virtio'/></disk></devices>",
         "<disk> 'vda' type='block' device='disk' (vfsvm attaches raw files as virtio-blk disks)"),
        ("<devices><disk type='file' device='disk'><source file='/i'/><target dev='sda' bus='sata'/></disk></devices>",
         "<disk> 'sda' on bus 'sata' (vfsvm's disks are virtio-blk)"),
        ("<devices><serial type='tcp'><source mode='bind' host='127.0.0.1' service='4555'/></serial></devices>",
         "<serial> type='tcp' (vfsvm's console goes to stdio, a pty or a file)"),
        ("<devices><console type='pty'><target type='virtio'/></console></devices>",
         "<console> with target type 'virtio' (vfsvm's console is the serial port)"),
        ("<devices><memballoon model='virtio'/></devices>",
         "<memballoon model='virtio'> (vfsvm has no balloon; use model='none')"),
        ("<features><acpi/><hyperv mode='custom'><relaxed state='on'/></hyperv></features>", "<features><hyperv>"),
        ("<on_crash>preserve</on_crash>", "<on_crash>preserve</on_crash> (vfsvm ends the VM: destroy)"),
        ("<currentMemory unit='MiB'>128</currentMemory>", "<currentMemory> 128 MiB below <memory> 256 MiB (vfsvm has no balloon)"),
        ("<memoryBacking><hugepages/></memoryBacking>", "<memoryBacking><hugepages>"),
        ("<devices><filesystem type='mount'><driver type='virtiofs'/><source dir='/d'/><target dir='d'/><address type='ccw' cssid='0xfe' ssid='0x0' devno='0x0001'/></filesystem></devices>",
         "<filesystem> 'd' on an address of type 'ccw' (vfsvm has pci and virtio-mmio)"),
    ]

    @Test(arguments: rejections)
    func eachRejectionSaysWhatAndWhy(inner: String, item: String) throws {
        #expect(parseError(domain(inner)) == .unsupported("t.xml", [item]))
    }

    @Test func mixedTransportsAreOneUnsupportedItem() {
        let xml = domain("""
            <devices>
            <filesystem type='mount'><driver type='virtiofs'/><source dir='/a'/><target dir='a'/><address type='virtio-mmio'/></filesystem>
            <filesystem type='mount'><driver type='virtiofs'/><source dir='/b'/><target dir='b'/>
            <address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/></filesystem>
            </devices>
            """)
        #expect(parseError(xml) == .unsupported("t.xml", ["devices on both pci and virtio-mmio addresses (vfsvm puts every device on one transport)"]))
    }

    @Test func aDomainNamedTestIsNotConfusedWithTheTestDriversOwn() throws {
        let xml = domain("").replacingOccurrences(of: "<name>t</name>", with: "<name>test</name>")
        #expect(try parse(xml).config.name == "test")
        // Defined and undefined again: the same name twice is fine.
        #expect(try parse(xml).config.name == "test")
    }

    @Test func xenDomainIsUnsupported() {
        #expect(parseError(domain("", type: "xen")) == .unsupported("t.xml", ["<domain type='xen'> (vfsvm runs kvm and qemu domains)"]))
    }
}

@Suite struct DomainInvalidXMLTests {
    @Test func malformedXMLGetsLibxml2sMessageWithTheFileName() throws {
        let path = try fixture("malformed")
        var caught: DomainError?
        do { _ = try DomainParser().parse(file: path) } catch { caught = error }
        guard case let .invalidXML(file, messages) = try #require(caught) else {
            Issue.record("expected .invalidXML, got \(String(describing: caught))")
            return
        }
        #expect(file == path)
        #expect(messages.first == "\(path):5: Opening and ending tag mismatch: os line 4 and domain")
        #expect(try #require(caught).description.hasPrefix("\(path): not a valid libvirt domain: \(path):5: Opening and ending tag mismatch"))
    }

    @Test func schemaViolationGetsTheRelaxNGMessage() throws {
        let path = try fixture("schema-invalid")
        var caught: DomainError?
        do { _ = try DomainParser(ignoreUnsupported: true).parse(file: path) } catch { caught = error }
        guard case let .invalidXML(_, messages) = try #require(caught) else {
            Issue.record("expected .invalidXML, got \(String(describing: caught))")
            return
        }
        // libxml2's RelaxNG messages, as virt-xml-validate prints them: the
        // bad queue='lots' makes the whole <devices> fail to match.
        #expect(messages == ["\(path): Extra element devices in interleave", "\(path):8: Element domain failed to validate content"])
    }

    @Test func emptyAndNonDomainDocumentsAreInvalid() {
        guard case let .invalidXML(_, m1)? = parseError("") else { Issue.record("empty input accepted"); return }
        #expect(m1.first?.hasPrefix("t.xml") == true)
        guard case .invalidXML? = parseError("<network><name>n</name></network>") else { Issue.record("a <network> accepted"); return }
    }

    @Test func externalEntitiesAreNotRead() throws {
        // A domain that is otherwise valid, with an external entity in its
        // <cmdline>: the file's contents must not reach the configuration.
        let xml = "<?xml version='1.0'?><!DOCTYPE domain [<!ENTITY x SYSTEM 'file:///etc/passwd'>]>"
            + domain("", os: "<os><type arch='x86_64'>hvm</type><kernel>/k</kernel><cmdline>a &x; b</cmdline></os>")
        var parser = DomainParser()
        parser.libvirtCheck = false
        do {
            let c = try parser.parse(xml: xml, fileName: "t.xml").config
            #expect(!(c.cmdline ?? "").contains("root:"))
        } catch {
            // Refusing the document is as good as not reading the file.
            #expect(!error.description.contains("root:"))
        }
    }

    @Test func missingFileSaysSo() {
        do {
            _ = try DomainParser().parse(file: "/nonexistent/vm.xml")
            Issue.record("a missing file parsed")
        } catch {
            #expect(error == .unreadable("/nonexistent/vm.xml", "No such file or directory"))
        }
    }
}
