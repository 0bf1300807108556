import CLibvirt
import CVfsvmLinux
import Glibc
import Synchronization

/// libvirt's own reading of a domain: the XML is defined, with
/// VIR_DOMAIN_DEFINE_VALIDATE, on an in-process connection to libvirt's
/// test driver, which runs libvirt's parser and its post-parse checks
/// (duplicate filesystem targets, device address clashes, ...) without a
/// daemon, then undefined again.
///
/// What libvirt 9.0's test driver accepts (found by trying): domains of
/// any `type` (kvm, qemu, even xen) and any arch or machine; it does not
/// compare them with its capabilities, which list only `type='test'`. So
/// it is a check of the XML, not of what vfsvm can honour, and its
/// normalised output (`virDomainGetXMLDesc`) adds libvirt's defaults
/// (`<on_reboot>restart</on_reboot>`, `<clock>`, `<boot dev='hd'/>`, a
/// console mirroring the serial port): vfsvm maps the XML as written.
///
/// test:///default holds a running domain named `test`, so the
/// connection is opened on an empty node description instead
/// (`test:///proc/self/fd/N`, N a memfd holding `<node/>`).
public enum LibvirtCheck {
    private static let connection = Mutex<OpaquePointer?>(nil)

    /// libvirt's complaint about `xml`, or nil when it defines cleanly.
    public static func complaint(about xml: String) -> String? {
        connection.withLock { (conn: inout OpaquePointer?) -> String? in
            if conn == nil {
                guard let opened = open() else { return "libvirt's test driver could not be opened: \(lastMessage())" }
                conn = opened
            }
            guard let domain = virDomainDefineXMLFlags(conn, xml, UInt32(VIR_DOMAIN_DEFINE_VALIDATE.rawValue)) else {
                return lastMessage()
            }
            virDomainUndefine(domain)
            virDomainFree(domain)
            return nil
        }
    }

    /// libvirt's version as major.minor.micro.
    public static var version: String {
        var v: UInt = 0
        guard virGetVersion(&v, nil, nil) == 0 else { return "unknown" }
        return "\(v / 1_000_000).\(v / 1000 % 1000).\(v % 1000)"
    }

    private static func open() -> OpaquePointer? {
        // libvirt prints every error on stderr unless told otherwise; the
        // caller reports the message itself.
        virSetErrorFunc(nil, { _, _ in })
        let fd = vfsvm_memfd_create("vfsvm-libvirt-node", 0)
        guard fd >= 0 else { return nil }
        let node = Array("<node/>\n".utf8)
        guard node.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == node.count else {
            close(fd)
            return nil
        }
        // The driver reads the file while opening; the fd is not needed after.
        defer { close(fd) }
        return virConnectOpen("test:///proc/self/fd/\(fd)")
    }

    private static func lastMessage() -> String {
        guard let m = virGetLastErrorMessage() else { return "unknown libvirt error" }
        return String(cString: m)
    }
}
