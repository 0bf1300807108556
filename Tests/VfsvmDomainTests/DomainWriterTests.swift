import PropertyBased
import Testing
import VfsvmConfig
@testable import VfsvmDomain

/// A small deterministic generator (splitmix64), so a failing seed
/// reproduces.
struct SplitMix {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func int(_ range: ClosedRange<Int>) -> Int { range.lowerBound + Int(next() % UInt64(range.count)) }
    mutating func bool() -> Bool { next() & 1 == 1 }
    mutating func pick<T>(_ items: [T]) -> T { items[int(0...items.count - 1)] }
    mutating func maybe<T>(_ make: (inout SplitMix) -> T) -> T? { bool() ? make(&self) : nil }
}

/// A configuration of the kind `vfsvm run` describes, with awkward
/// characters (XML specials, spaces) in names and paths.
func generatedConfig(seed: Int) throws -> DomainConfig {
    var r = SplitMix(state: UInt64(bitPattern: Int64(seed)))
    let words = ["data", "a&b", "it's", "x<y>", "with space", "q\"uote", "ünï", "v1.2", "-"]
    func path(_ r: inout SplitMix) -> String { "/" + (0..<r.int(1...3)).map { _ in r.pick(words) }.joined(separator: "/") }
    var c = DomainConfig(name: "vm-" + r.pick(words), memoryBytes: UInt64(r.int(2...4096)) << 20, kernel: path(&r))
    c.type = r.pick(DomainType.allCases)
    c.vcpus = r.int(1...255)
    c.initrd = r.maybe(path)
    c.cmdline = r.maybe { r in (0..<r.int(1...4)).map { _ in r.pick(["console=ttyS0", "quiet", "a=<&>", "init='/x y'"]) }.joined(separator: " ") }
    c.transport = r.pick(DomainTransport.allCases)
    c.machine = c.transport == .mmio ? "microvm" : r.pick([nil, "pc", "q35"])
    c.memoryBacking = r.maybe { r in MemoryBacking(source: r.maybe { r in r.pick(MemoryBacking.Source.allCases) },
                                                   access: r.maybe { r in r.pick(MemoryBacking.Access.allCases) }) }
    c.acpi = r.bool()
    c.onPoweroff = r.maybe { _ in .destroy }
    c.onReboot = r.maybe { _ in .destroy }
    c.onCrash = r.maybe { _ in .destroy }
    c.console = r.maybe { r in r.pick([CharBackend.stdio, .pty, .file(path(&r))]) }
    for i in 0..<r.int(0...3) {
        // Tags hold no XML-special characters (VirtioFSTag): the paths and
        // the command line exercise the escaping.
        var fs = DomainFilesystem(source: path(&r), tag: try VirtioFSTag("\(r.pick(["data", "v1.2", "a_b", "c++", "user@h", "x-y"]))\(i)"),
                                  readOnly: r.bool())
        fs.queueSize = r.maybe { r in 1 << r.int(1...15) }
        fs.packed = r.maybe { $0.bool() }
        fs.binaryPath = r.maybe(path)
        fs.xattr = r.maybe { $0.bool() }
        fs.cache = r.maybe { r in r.pick([CacheMode.never, .always]) }
        fs.posixLock = r.maybe { $0.bool() }
        fs.flock = r.maybe { $0.bool() }
        c.filesystems.append(fs)
    }
    for i in 0..<r.int(0...2) {
        c.disks.append(DomainDisk(path: path(&r), target: "vd" + String(UnicodeScalar(UInt8(97 + i))), readOnly: r.bool()))
    }
    return c
}

@Suite struct DomainWriterTests {
    @Test func writtenXMLIsValidForLibvirtAndReadsBackAsTheSameConfiguration() async {
        await propertyCheck(count: 150, input: Gen.int(in: 0...Int.max)) { seed in
            do {
                let config = try generatedConfig(seed: seed)
                let xml = DomainWriter().xml(config)
                // DomainParser validates against domain.rng and defines it on
                // libvirt's test driver before mapping.
                let back = try DomainParser().parse(xml: xml, fileName: "seed-\(seed).xml")
                #expect(back.warnings.isEmpty)
                #expect(back.config == config, "seed \(seed):\n\(xml)")
            } catch {
                Issue.record("seed \(seed): \(error)")
            }
        }
    }

    @Test func pciDevicesOnAMicrovmMachineSayPCI() throws {
        var c = DomainConfig(name: "m", memoryBytes: 256 << 20, kernel: "/k")
        c.machine = "microvm"
        c.transport = .pci
        c.filesystems = [DomainFilesystem(source: "/d", tag: try VirtioFSTag("d"))]
        let xml = DomainWriter().xml(c)
        #expect(xml.contains("<address type='pci'/>"))
        #expect(try DomainParser().parse(xml: xml, fileName: "m.xml").config == c)
    }

    @Test func aQEMUDomainWithVfsvmAsItsVirtiofsDaemon() throws {
        var c = DomainConfig(name: "demo", memoryBytes: 512 << 20, kernel: "/srv/guest.img")
        c.type = .qemu
        c.machine = "q35"
        c.cmdline = "console=ttyS0"
        c.memoryBacking = MemoryBacking(source: .memfd, access: .shared)
        c.acpi = true
        c.onPoweroff = .destroy
        c.console = .file("/tmp/demo.log")
        var fs = DomainFilesystem(source: "/srv/a&b", tag: try VirtioFSTag("myfs"), readOnly: true)
        fs.binaryPath = "/usr/local/bin/vfsvm"
        fs.cache = .never
        c.filesystems = [fs]
        #expect(DomainWriter().xml(c) == """
            <domain type='qemu'>
              <name>demo</name>
              <memory unit='KiB'>524288</memory>
              <currentMemory unit='KiB'>524288</currentMemory>
              <memoryBacking>
                <source type='memfd'/>
                <access mode='shared'/>
              </memoryBacking>
              <vcpu placement='static'>1</vcpu>
              <os>
                <type arch='x86_64' machine='q35'>hvm</type>
                <kernel>/srv/guest.img</kernel>
                <cmdline>console=ttyS0</cmdline>
              </os>
              <features>
                <acpi/>
              </features>
              <on_poweroff>destroy</on_poweroff>
              <devices>
                <filesystem type='mount' accessmode='passthrough'>
                  <driver type='virtiofs'/>
                  <binary path='/usr/local/bin/vfsvm'>
                    <cache mode='none'/>
                  </binary>
                  <source dir='/srv/a&amp;b'/>
                  <target dir='myfs'/>
                  <readonly/>
                </filesystem>
                <serial type='file'>
                  <source path='/tmp/demo.log'/>
                  <target port='0'/>
                </serial>
                <console type='file'>
                  <source path='/tmp/demo.log'/>
                  <target type='serial' port='0'/>
                </console>
                <controller type='usb' model='none'/>
                <memballoon model='none'/>
              </devices>
            </domain>

            """)
    }
}
