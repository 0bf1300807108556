import Glibc

/// The calling process's own memory map (/proc/self/maps).
public enum MemoryMap {
    /// The permissions of the mapping that holds `address` ("r--p",
    /// "rw-s", ...), nil where nothing is mapped.
    public static func protection(of address: UnsafeRawPointer) -> String? {
        let want = UInt(bitPattern: address)
        guard let file = fopen("/proc/self/maps", "r") else { return nil }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 4096)
        while fgets(&line, Int32(line.count), file) != nil {
            let text = String(decoding: line.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let fields = text.split(separator: " ")
            guard fields.count > 1 else { continue }
            let range = fields[0].split(separator: "-").compactMap { UInt($0, radix: 16) }
            if range.count == 2, range[0] <= want, want < range[1] { return String(fields[1]) }
        }
        return nil
    }
}
