import VfsvmSys

/// What `vfsvm run` boots: a kernel (bzImage or an ELF with a PVH note),
/// or the `guest.img` bundle Images builds (a ustar archive with members
/// `kernel`, `initramfs`, `cmdline` and optionally `vmlinux`; see
/// Images/README.md).
struct GuestImage {
    var kernel: [UInt8]
    var initrd: [UInt8]?
    var cmdline: String?
    /// The bundle's bzImage when it also has a vmlinux (`kernel` is then
    /// the vmlinux, for the KVM path's PVH entry; QEMU boots the bzImage).
    var bzImage: [UInt8]?

    /// What a GUEST file is, from its first 4 KiB.
    enum Kind { case bundle, kernel, disk }

    /// A ustar archive is a bundle; an ELF or a bzImage ("HdrS" at 0x202)
    /// a kernel; an ext2/3/4 superblock (magic 0xEF53 at 1080), an MBR
    /// (0x55AA at 510) or a GPT header ("EFI PART" at 512) a raw disk;
    /// anything else is taken as a kernel (and refused by the loader).
    static func kind(ofFileAt path: String) throws(GuestImageError) -> Kind {
        var head = [UInt8](repeating: 0, count: 4096)
        let n: Int
        do throws(SystemError) {
            let fd = try FileDescriptor.open(path, O_RDONLY)
            n = try head.withUnsafeMutableBytes { raw in Result { () throws(SystemError) in try fd.pread(into: raw, at: 0) } }.get()
        } catch {
            throw .unreadable(path, error)
        }
        head.removeSubrange(n...)
        func at(_ offset: Int, _ bytes: [UInt8]) -> Bool {
            head.count >= offset + bytes.count && Array(head[offset..<(offset + bytes.count)]) == bytes
        }
        if Ustar.isArchive(head) { return .bundle }
        if at(0, [0x7f, 0x45, 0x4c, 0x46]) || at(0x202, Array("HdrS".utf8)) { return .kernel }
        if at(1080, [0x53, 0xef]) || at(510, [0x55, 0xaa]) || at(512, Array("EFI PART".utf8)) { return .disk }
        return .kernel
    }

    /// Reads `path`; a ustar archive is unpacked as a bundle, anything
    /// else is taken as a kernel.
    static func load(_ path: String) throws(GuestImageError) -> GuestImage {
        let bytes = try readWholeFile(path)
        guard Ustar.isArchive(bytes) else { return GuestImage(kernel: bytes) }
        let members: [String: [UInt8]]
        do { members = try Ustar.members(bytes) } catch { throw .badBundle(path, error.description) }
        // The uncompressed vmlinux (PVH entry) when the bundle has one: it
        // needs no decompression in the guest; else the bzImage.
        guard let kernel = members["vmlinux"] ?? members["kernel"] else {
            throw .badBundle(path, "it has neither a 'kernel' nor a 'vmlinux' member")
        }
        let cmdline = members["cmdline"].map { String(decoding: $0, as: UTF8.self).trimmingTrailingNewlines() }
        return GuestImage(kernel: kernel, initrd: members["initramfs"], cmdline: cmdline,
                          bzImage: members["vmlinux"] == nil ? nil : members["kernel"])
    }

    static func readWholeFile(_ path: String) throws(GuestImageError) -> [UInt8] {
        do throws(SystemError) {
            let fd = try FileDescriptor.open(path, O_RDONLY)
            var out: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 1 << 20)
            while true {
                let n = try chunk.withUnsafeMutableBytes { raw in Result { () throws(SystemError) in try fd.read(into: raw) } }.get()
                if n == 0 { return out }
                out += chunk[0..<n]
            }
        } catch {
            throw .unreadable(path, error)
        }
    }
}

enum GuestImageError: Error, CustomStringConvertible {
    case unreadable(String, SystemError)
    case badBundle(String, String)

    var description: String {
        switch self {
        case let .unreadable(path, e): "cannot read \(path): \(e.errno)"
        case let .badBundle(path, why): "\(path) is not a usable guest image: \(why)"
        }
    }
}

/// The POSIX ustar format (POSIX.1-2001, pax "ustar" interchange format):
/// 512-byte headers (name at 0, size in octal at 124, type at 156, magic
/// "ustar" at 257), data padded to 512 bytes, two zero blocks at the end.
enum Ustar {
    struct Malformed: Error, CustomStringConvertible { let description: String }

    static func isArchive(_ b: [UInt8]) -> Bool {
        b.count >= 512 && Array(b[257..<262]) == Array("ustar".utf8)
    }

    static func members(_ b: [UInt8]) throws(Malformed) -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        var at = 0
        while at + 512 <= b.count {
            let header = b[at..<(at + 512)]
            if header.allSatisfy({ $0 == 0 }) { break }
            let name = String(decoding: header.prefix(100).prefix { $0 != 0 }, as: UTF8.self)
            let sizeField = String(decoding: b[(at + 124)..<(at + 136)].prefix { $0 != 0 && $0 != 0x20 }, as: UTF8.self)
            guard let size = Int(sizeField, radix: 8) else { throw Malformed(description: "member '\(name)' has a bad size field") }
            let type = b[at + 156]
            let start = at + 512
            guard size >= 0, start + size <= b.count else { throw Malformed(description: "member '\(name)' runs past the end") }
            if type == UInt8(ascii: "0") || type == 0 { out[name] = Array(b[start..<(start + size)]) }
            at = start + (size + 511) / 512 * 512
        }
        return out
    }
}

extension String {
    func trimmingTrailingNewlines() -> String {
        var s = Substring(self)
        while let last = s.last, last == "\n" || last == "\r" { s = s.dropLast() }
        return String(s)
    }
}

import Glibc
