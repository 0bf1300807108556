import Foundation
import Testing

/// Decompiles ACPI tables with iasl (Debian's acpica-tools, in the
/// Makefile's TEST_DEBS). A missing iasl fails the calling test: the
/// tables would otherwise go unchecked by an independent decoder.
enum IASL {
    static let candidates = ["/usr/bin/iasl", "/usr/local/bin/iasl"]

    static var path: String? { candidates.first { FileManager.default.isExecutableFile(atPath: $0) } }

    /// The ASL iasl prints for `table`, or nil (with a recorded issue) when
    /// iasl is missing or fails.
    static func decompile(_ table: [UInt8], name: String, sourceLocation: SourceLocation = #_sourceLocation) -> String? {
        guard let iasl = path else {
            Issue.record("iasl is not installed (apt-get install acpica-tools); the ACPI tables cannot be decompiled and checked",
                         sourceLocation: sourceLocation)
            return nil
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vfsvm-iasl-\(UUID().uuidString)")
        defer { if ProcessInfo.processInfo.environment["KEEP_IASL"] == nil { try? FileManager.default.removeItem(at: dir) } }
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let input = dir.appendingPathComponent("\(name).dat")
            try Data(table).write(to: input)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: iasl)
            process.arguments = ["-d", input.path]
            process.currentDirectoryURL = dir
            let output = Pipe()
            process.standardOutput = output
            process.standardError = output
            try process.run()
            let log = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            let dsl = dir.appendingPathComponent("\(name).dsl")
            guard process.terminationStatus == 0, let text = try? String(contentsOf: dsl, encoding: .utf8) else {
                Issue.record("iasl -d \(name).dat failed (status \(process.terminationStatus)):\n\(log)", sourceLocation: sourceLocation)
                return nil
            }
            return text
        } catch {
            Issue.record("running iasl: \(error)", sourceLocation: sourceLocation)
            return nil
        }
    }
}
