import Glibc
import Testing
import VfsvmSys

/// What the guest flushed is in the image after the VMM process dies by
/// SIGKILL: vfsvm-blk-probe writes and flushes through the device, says so,
/// and is killed; this process then reads the file.
///
/// A process kill does not lose the page cache, so this proves the device
/// keeps no write-back buffer of its own and acknowledges only what reached
/// the file; the FLUSH's fdatasync is what carries it over a host crash,
/// which a test cannot stage here.
@Suite struct KillTests {
    static func probePath() throws -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        try #require(n > 0, "cannot read /proc/self/exe to find the build directory")
        let exe = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let path = exe.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/") + "/vfsvm-blk-probe"
        try #require(access(path, X_OK) == 0, "\(path) is missing: build the package (swift build) before running these tests")
        return path
    }

    @Test(arguments: [(UInt64(0), UInt8(0x31)), (UInt64(1000), UInt8(0xC7))])
    func flushedWritesSurviveSIGKILLOfTheVMM(sector: UInt64, byte: UInt8) throws {
        var template = Array("/tmp/vfsvm-blk-kill.XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        try #require(fd >= 0)
        let path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        defer { unlink(path) }
        let image = FileDescriptor(owning: fd)
        try #require(ftruncate(image.rawValue, 2048 * 512) == 0)

        let out = try makePipe()
        let child = try ChildProcess(path: try Self.probePath(), arguments: [path, "\(sector)", "\(byte)"], stdout: out.write)
        var said: [UInt8] = []
        for _ in 0..<500 where !said.contains(UInt8(ascii: "\n")) {
            if try pollReadable([out.read], timeoutMilliseconds: 20) == [true] { said += try out.read.readSome() }
            if !child.isRunning { break }
        }
        let line = String(decoding: said, as: UTF8.self)
        try #require(line.hasPrefix("flushed"), "the probe did not report a flushed write (exit \(child.exitCode.map(String.init) ?? "none")): '\(line)'")
        print("probe: \(line.split(separator: "\n").first ?? "")")
        #expect(line.contains("engine=io_uring"))
        #expect(line.contains("direct=true"))
        child.send(signal: SIGKILL)
        let status = try #require(child.wait(timeoutMilliseconds: 5000), "the probe did not die")
        #expect(status & 0x7f == SIGKILL, "the probe ended by signal \(status & 0x7f), not SIGKILL")

        var back = [UInt8](repeating: 0, count: 10 * 512)
        let n = try back.withUnsafeMutableBytes { try image.pread(into: $0, at: Int64(sector) * 512 - (sector > 0 ? 512 : 0)) }
        #expect(n == back.count)
        let start = sector > 0 ? 512 : 0
        #expect(Array(back[start..<start + 8 * 512]) == [UInt8](repeating: byte, count: 8 * 512))
        if sector > 0 { #expect(Array(back[0..<512]) == [UInt8](repeating: 0, count: 512)) }
        #expect(Array(back[start + 8 * 512..<start + 9 * 512]) == [UInt8](repeating: 0, count: 512))
    }
}
