import Testing
import VfsvmConfig
@testable import VfsvmDomain

/// A domain as libvirt hands it to the hook: `metadata` inside
/// <metadata>, `filesystems` inside <devices>.
func hookDomain(metadata: String, filesystems: String) -> [UInt8] {
    Array("""
        <domain type='qemu'>
          <name>g</name>
          <metadata>\(metadata)</metadata>
          <memory unit='MiB'>256</memory>
          <os><type>hvm</type><kernel>/k</kernel></os>
          <devices>\(filesystems)</devices>
        </domain>
        """.utf8)
}

let ns = "xmlns:vfsvm='urn:x-vfsvm:libvirt-hook:1'"
func socketFS(_ socket: String, tag: String) -> String {
    "<filesystem type='mount'><driver type='virtiofs'/><source socket='\(socket)'/><target dir='\(tag)'/></filesystem>"
}

@Suite struct HookPlanTests {
    @Test func prepareBeginStartsEachDescribedShareAndReleaseEndStopsThem() throws {
        let xml = hookDomain(
            metadata: """
                <vfsvm:shares \(ns)>
                  <vfsvm:share socket='/run/a.sock' dir='/srv/a' cache='none' readonly='yes'/>
                  <vfsvm:share socket='/run/b.sock' dir='/srv/b' xattr='on'/>
                </vfsvm:shares>
                <other:x xmlns:other='urn:other'/>
                """,
            filesystems: socketFS("/run/a.sock", tag: "a") + socketFS("/run/b.sock", tag: "b")
                + socketFS("/run/not-ours.sock", tag: "c")
                + "<filesystem type='mount'><driver type='virtiofs'/><source dir='/d'/><target dir='d'/></filesystem>")
        let a = HookShare(socket: "/run/a.sock", dir: "/srv/a", tag: "a", cache: .never, readOnly: true)
        let b = HookShare(socket: "/run/b.sock", dir: "/srv/b", tag: "b", xattr: true)
        #expect(try HookPlan.make(arguments: ["g", "prepare", "begin", "-"], domainXML: xml) == .start(domain: "g", [a, b]))
        #expect(try HookPlan.make(arguments: ["g", "release", "end", "-"], domainXML: xml) == .stop(domain: "g", [a, b]))
        #expect(a.serveArguments == ["serve", "--socket-path", "/run/a.sock", "--shared-dir", "/srv/a", "--cache", "never", "--readonly"])
        #expect(b.serveArguments == ["serve", "--socket-path", "/run/b.sock", "--shared-dir", "/srv/b", "--xattr"])
        #expect(a.pidFile == "/run/a.sock.vfsvm.pid")
    }

    @Test(arguments: [["g", "start", "begin", "-"], ["g", "started", "begin", "-"], ["g", "stopped", "end", "-"],
                      ["g", "release", "begin", "-"], ["g", "prepare", "end", "-"], ["g", "migrate", "begin", "-"], ["g"], []])
    func otherOperationsPassThroughWithoutReadingTheXML(arguments: [String]) throws {
        #expect(!HookPlan.needsDomain(arguments))
        #expect(try HookPlan.make(arguments: arguments, domainXML: Array("not xml".utf8)) == .nothing)
    }

    @Test func aDomainWithoutVfsvmMetadataIsLeftAlone() throws {
        let xml = hookDomain(metadata: "", filesystems: socketFS("/run/x.sock", tag: "x"))
        #expect(try HookPlan.make(arguments: ["g", "prepare", "begin", "-"], domainXML: xml) == .nothing)
        // The same element names in another namespace are not vfsvm's.
        let foreign = hookDomain(metadata: "<v:shares xmlns:v='urn:else'><v:share socket='/run/x.sock' dir='/d'/></v:shares>",
                                 filesystems: socketFS("/run/x.sock", tag: "x"))
        #expect(try HookPlan.make(arguments: ["g", "prepare", "begin", "-"], domainXML: foreign) == .nothing)
    }

    @Test func everyProblemInTheMetadataIsOneError() {
        let xml = hookDomain(
            metadata: """
                <vfsvm:shares \(ns)>
                  <vfsvm:share socket='/run/a.sock' dir='relative'/>
                  <vfsvm:share socket='/run/b.sock' dir='/b' cache='sometimes'/>
                  <vfsvm:share socket='/run/c.sock' dir='/c' readonly='maybe'/>
                  <vfsvm:share socket='/run/lost.sock' dir='/l'/>
                  <vfsvm:share dir='/nosocket'/>
                </vfsvm:shares>
                """,
            filesystems: socketFS("/run/a.sock", tag: "a") + socketFS("/run/b.sock", tag: "b") + socketFS("/run/c.sock", tag: "c"))
        #expect(throws: DomainError.badValue("domain g", [
            "a <vfsvm:share> needs an absolute socket='PATH'",
            "<vfsvm:share socket='/run/a.sock'> needs an absolute dir='PATH'",
            "<vfsvm:share socket='/run/b.sock'> cache='sometimes': expected never, auto or always",
            "<vfsvm:share socket='/run/c.sock'> readonly='maybe': expected yes or no",
            "<vfsvm:share socket='/run/lost.sock'> matches no <filesystem> with <source socket='/run/lost.sock'/>",
        ])) {
            try HookPlan.make(arguments: ["g", "prepare", "begin", "-"], domainXML: xml)
        }
    }

    /// The hook (root) logs to LOGDIR/DOMAIN-TAG-vfsvm.log: a '/' or ".."
    /// in the tag would put the log anywhere.
    @Test func aTagWithASlashIsRefusedBeforeAnyLogIsOpened() {
        let xml = hookDomain(metadata: "<vfsvm:shares \(ns)><vfsvm:share socket='/run/a.sock' dir='/srv/a'/></vfsvm:shares>",
                             filesystems: socketFS("/run/a.sock", tag: "../../../etc/cron.d/x"))
        #expect(throws: DomainError.badValue("domain g", [
            "<filesystem> for socket /run/a.sock: invalid virtio-fs tag '../../../etc/cron.d/x': it contains '/'; a tag holds \(VirtioFSTag.allowed)",
        ])) {
            try HookPlan.make(arguments: ["g", "prepare", "begin", "-"], domainXML: xml)
        }
    }

    @Test func brokenStandardInputIsAnErrorNamingTheDomain() {
        do {
            _ = try HookPlan.make(arguments: ["g", "prepare", "begin", "-"], domainXML: Array("<domain><name>".utf8))
            Issue.record("broken XML accepted")
        } catch {
            guard case let .invalidXML(what, messages) = error else { Issue.record("\(error)"); return }
            #expect(what == "domain g" && messages.first?.hasPrefix("domain g:1: ") == true)
        }
        #expect(throws: DomainError.badValue("domain g", ["the hook's standard input is a <network>, not a <domain>"])) {
            try HookPlan.make(arguments: ["g", "prepare", "begin", "-"], domainXML: Array("<network/>".utf8))
        }
    }
}
