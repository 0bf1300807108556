import ArgumentParser
import Glibc
import VfsvmConfig

@main
struct Vfsvm: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vfsvm",
        abstract: "A virtual machine monitor that shares host directories with Linux guests over virtio-fs.",
        discussion: """
            The same virtio-fs device model runs three ways:
              run    boots a guest in vfsvm's own KVM VMM with the shares attached
              serve  serves a share to QEMU/libvirt as a vhost-user-fs backend (like virtiofsd)
              mount  serves a share on the host through /dev/fuse
            """,
        version: "0.1.0",
        subcommands: [Run.self, Serve.self, Mount.self, LibvirtHook.self]
    )

    /// Installed under a name containing "virtiofsd" (Configs/50-vfsvm.json
    /// points QEMU and libvirt at such a link), vfsvm is `vfsvm serve`.
    static func main() {
        let name = CommandLine.arguments.first.map { String($0.split(separator: "/").last ?? "") } ?? ""
        if name.contains("virtiofsd") {
            Serve.main(Array(CommandLine.arguments.dropFirst()))
        } else {
            Self.main(nil)
        }
    }
}

/// Writes to fd 2 directly (the C `stderr` global is not concurrency-safe).
struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        var bytes = Array(string.utf8)
        _ = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}

extension ShareSpec: ExpressibleByArgument {
    public init?(argument: String) { try? self.init(parsing: argument) }
}

extension CacheMode: ExpressibleByArgument {
    public init?(argument: String) { self.init(named: argument) }
    public static var allValueStrings: [String] { ["never", "none", "auto", "always", "metadata"] }
}
extension SandboxMode: ExpressibleByArgument {}

/// Parses a `--share` value with a helpful message on failure (the
/// `ExpressibleByArgument` path can only say "invalid").
func parseShare(_ text: String) throws -> ShareSpec {
    do { return try ShareSpec(parsing: text) } catch { throw ValidationError(error.description) }
}
