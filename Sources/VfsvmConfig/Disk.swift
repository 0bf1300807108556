/// `--disk FILE[:ro]`: a raw disk image for a virtio-blk device, read-write
/// unless `:ro` (or read-write spelled out as `:rw`).
///
/// Only a final `:ro` / `:rw` is an option; any other colon belongs to the
/// file name (`disk:1.img` is a file of that name).
public struct DiskSpec: Hashable, Sendable {
    public var path: String
    public var readOnly: Bool

    public init(path: String, readOnly: Bool = false) {
        self.path = path
        self.readOnly = readOnly
    }

    public init(parsing text: String) throws(ConfigError) {
        var path = Substring(text)
        var readOnly = false
        if path.hasSuffix(":ro") {
            readOnly = true
            path = path.dropLast(3)
        } else if path.hasSuffix(":rw") {
            path = path.dropLast(3)
        }
        guard !path.isEmpty else { throw .badDisk(text, reason: "expected FILE or FILE:ro, and the file name is empty") }
        guard !path.utf8.contains(0) else { throw .badDisk(text, reason: "the file name contains a NUL byte") }
        self.path = String(path)
        self.readOnly = readOnly
    }
}
