import Glibc
import Testing
import VfsvmSys

/// An executable SwiftPM built next to this test bundle (`swift build`
/// builds every product).
func builtExecutable(_ name: String) throws -> String {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    try #require(n > 0, "cannot read /proc/self/exe to find the build directory")
    let exe = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    let path = exe.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/") + "/" + name
    try #require(access(path, X_OK) == 0, "\(path) is missing: build the package (swift build) before running these tests")
    return path
}

/// Runs `path arguments` (stdout and stderr to files), waits up to 60 s,
/// returns (exit code, stdout, stderr).
func run(_ path: String, _ arguments: [String]) throws -> (code: Int32?, out: String, err: String) {
    var template = Array("/tmp/bench-backend-smoke-XXXXXX".utf8CString)
    let dir = try #require(template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }.map { String(cString: $0) })
    defer { _ = system("rm -rf '\(dir)'") }
    let code: Int32?
    do {
        let out = try FileDescriptor.open(dir + "/out", O_WRONLY | O_CREAT | O_CLOEXEC, mode: 0o644)
        let err = try FileDescriptor.open(dir + "/err", O_WRONLY | O_CREAT | O_CLOEXEC, mode: 0o644)
        let child = try ChildProcess(path: path, arguments: arguments, stdout: out, stderr: err)
        _ = child.wait(timeoutMilliseconds: 60_000)
        code = child.exitCode
    }
    func contents(_ name: String) throws -> String {
        let fd = try FileDescriptor.open(dir + "/" + name, O_RDONLY | O_CLOEXEC)
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while case let n = try buf.withUnsafeMutableBytes({ try fd.read(into: $0) }), n > 0 { bytes += buf[0..<n] }
        return String(decoding: bytes, as: UTF8.self)
    }
    return (code, try contents("out"), try contents("err"))
}

/// bench-backend against vfsvm's own backend (a child `vfsvm serve`), a few
/// requests per operation: every reply is right and the numbers it prints
/// are plausible.
@Suite struct BenchBackendSmokeTests {
    @Test func aShortRunAgainstVfsvmServeReportsSaneNumbers() throws {
        let vfsvm = try builtExecutable("vfsvm")
        let r = try run(try builtExecutable("bench-backend"), [
            "--rounds", "1", "--requests", "20", "--in-flight", "4", "--tsv", "--ops", "getattr,lookup,lookup-miss,read-4k,write-4k",
            "--backend", "vfsvm=\(vfsvm) serve --socket-path {socket} --shared-dir {share} --sandbox none --seccomp none",
        ])
        #expect(r.code == 0, "stderr: \(r.err)")
        #expect(r.err.isEmpty, "stderr: \(r.err)")
        let rows = r.out.split(separator: "\n").map { $0.split(separator: "\t").map(String.init) }.filter { $0.first == "run" }
        #expect(rows.map { $0[3] } == ["getattr", "lookup", "lookup-miss", "read-4k", "write-4k"])
        for row in rows {
            // run NAME ROUND OP requests errors req/s p50 p99 cpu-us/req rss-MiB
            #expect(row.count == 11 && row[1] == "vfsvm" && row[2] == "1", "\(row)")
            #expect(row[4] == "20" && row[5] == "0", "20 requests, no wrong replies: \(row)")
            let rps = Double(row[6]) ?? 0, p50 = Double(row[7]) ?? 0, p99 = Double(row[8]) ?? 0
            let cpu = Double(row[9]) ?? 0, rss = Double(row[10]) ?? 0
            #expect(rps > 0 && p50 > 0 && p99 >= p50, "\(row)")
            #expect(cpu > 0 && cpu < 100_000, "the backend spent some CPU per request: \(row)")
            #expect(rss > 1 && rss < 4096, "peak RSS in MiB: \(row)")
        }
        #expect(r.out.contains("operation") && r.out.contains("vfsvm req/s"), "the table: \(r.out)")
    }

    /// Two request queues, each on a thread of its own, packed rings, and
    /// Linux's buffer layout (headers in buffers of their own): every reply
    /// right.
    @Test(arguments: [["--queues", "2"], ["--packed"], ["--linux-layout"]])
    func twoQueuesOrPackedRingsAgainstVfsvmServe(_ extra: [String]) throws {
        let vfsvm = try builtExecutable("vfsvm")
        let r = try run(try builtExecutable("bench-backend"), extra + [
            "--rounds", "1", "--requests", "40", "--in-flight", "4", "--tsv", "--no-limit", "--ops", "getattr,read-4k",
            "--backend", "vfsvm=\(vfsvm) serve --socket-path {socket} --shared-dir {share} --sandbox none --seccomp none",
        ])
        #expect(r.code == 0, "stderr: \(r.err)")
        let rows = r.out.split(separator: "\n").map { $0.split(separator: "\t").map(String.init) }.filter { $0.first == "run" }
        #expect(rows.map { $0[3] } == ["getattr", "read-4k"])
        for row in rows { #expect(row.count == 11 && row[4] == "40" && row[5] == "0" && (Double(row[9]) ?? 0) > 0, "\(row)") }
        let summary = switch extra {
        case ["--packed"]: "packed ring, 1 request queue(s)"
        case ["--linux-layout"]: "split ring, 1 request queue(s), EVENT_IDX where offered, headers in buffers of their own"
        default: "split ring, 2 request queue(s)"
        }
        #expect(r.out.contains(summary), "\(r.out)")
    }

    /// A backend that is not there: one sentence, exit status 64 (usage).
    @Test func aMissingBackendIsOneSentence() throws {
        let r = try run(try builtExecutable("bench-backend"), ["--backend", "x=/nonexistent/backend --socket-path {socket}"])
        #expect(r.code == 64)
        #expect(r.err.contains("/nonexistent/backend is not an executable"), "stderr: \(r.err)")
        #expect(r.out.isEmpty)
    }

    /// A backend that exits at once: the run fails with a sentence naming
    /// it, and the tool exits 1 instead of hanging.
    @Test func aBackendThatExitsIsReported() throws {
        let r = try run(try builtExecutable("bench-backend"), ["--rounds", "1", "--requests", "20", "--no-limit", "--backend", "f=/bin/false {socket}"])
        #expect(r.code == 1)
        #expect(r.err.contains("f exited before listening"), "stderr: \(r.err)")
    }
}
