import Glibc
import VfsvmSys
import VfsvmVirtio
import VfsvmVhostUserTestSupport

/// A backend to benchmark: a name and a command line in which `{socket}`
/// and `{share}` are replaced by the run's socket path and share directory.
struct BackendSpec {
    let name: String
    let words: [String]

    /// `NAME=COMMAND WORDS...`
    init(parsing text: String) throws {
        guard let eq = text.firstIndex(of: "="), eq != text.startIndex else {
            throw FrontendError("--backend wants NAME=COMMAND, got \"\(text)\"")
        }
        name = String(text[..<eq])
        words = text[text.index(after: eq)...].split(separator: " ").map(String.init)
        guard let first = words.first else { throw FrontendError("--backend \(name)= has an empty command") }
        guard words.contains(where: { $0.contains("{socket}") }) else {
            throw FrontendError("--backend \(name): the command must contain {socket} (where the backend listens)")
        }
        guard Self.resolve(first) != nil else { throw FrontendError("--backend \(name): \(first) is not an executable") }
    }

    static func resolve(_ program: String) -> String? {
        if program.contains("/") { return access(program, X_OK) == 0 ? program : nil }
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(program)" }.first { access($0, X_OK) == 0 }
    }
}

/// What one operation measured in one run.
struct Measurement {
    var requests = 0
    var errors = 0
    var firstError = ""
    var seconds = 0.0
    var latencies: [UInt64] = []
    var cpuNanoseconds: UInt64 = 0
    var peakRSSKiB: UInt64 = 0

    var requestsPerSecond: Double { seconds > 0 ? Double(requests) / seconds : 0 }
    var cpuMicrosecondsPerRequest: Double { requests > 0 ? Double(cpuNanoseconds) / 1000 / Double(requests) : 0 }
    func latencyMicroseconds(_ q: Double) -> Double {
        guard !latencies.isEmpty else { return 0 }
        let sorted = latencies.sorted()
        return Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))]) / 1000
    }
}

struct RunSettings {
    var requests: Int
    var inFlight: Int
    var queues: Int
    var layout: RingLayout
    var eventIndex: Bool
    /// Headers in buffers of their own (`RequestQueue.linuxLayout`).
    var linuxLayout = false
    var timeoutMilliseconds: Int32
    var startMilliseconds: Int
    var stopMilliseconds: Int
    var operations: [Operation]
}

/// Backends whose EVENT_IDX outcome was said (once each, not per round).
nonisolated(unsafe) var eventIndexReported: Set<String> = []

/// Starts the backend on a fresh share, connects, runs every operation,
/// stops it. Throws one sentence when the backend does not come up or
/// answers wrongly at setup.
func runBackend(_ spec: BackendSpec, _ settings: RunSettings) throws -> [String: Measurement] {
    var template = Array("\(getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp")/bench-backend-XXXXXX".utf8CString)
    guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
        throw FrontendError("cannot create a work directory: \(errnoText())")
    }
    let work = String(cString: p)
    defer { _ = system("rm -rf '\(work)'") }
    let share = work + "/share", socketPath = work + "/fs.sock", logPath = work + "/backend.log"
    try Fixture.create(at: share)
    let arguments = spec.words.dropFirst().map {
        substitute(substitute($0, "{socket}", socketPath), "{share}", share)
    }
    let log = Glibc.open(logPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard log >= 0 else { throw FrontendError("cannot create \(logPath)") }
    let logFD = FileDescriptor(owning: log)
    let child = try ChildProcess(path: BackendSpec.resolve(spec.words[0])!, arguments: Array(arguments),
                                 stdout: logFD, stderr: logFD)
    func logTail() -> String {
        let text = String(decoding: Proc.readFile(logPath) ?? [], as: UTF8.self)
        let lines = text.split(separator: "\n").suffix(3).joined(separator: " | ")
        return lines.isEmpty ? "" : " (its output: \(lines))"
    }
    defer {
        child.send(signal: SIGTERM)
        if child.wait(timeoutMilliseconds: settings.stopMilliseconds) == nil { child.send(signal: SIGKILL) }
    }
    var socket: FileDescriptor?
    for _ in 0..<max(1, settings.startMilliseconds / 10) {
        guard child.isRunning else { throw FrontendError("\(spec.name) exited before listening\(logTail())") }
        if access(socketPath, F_OK) == 0, let s = try? UnixSocket.connect(path: socketPath) { socket = s; break }
        usleep(10_000)
    }
    guard let socket else { throw FrontendError("\(spec.name) did not listen on its socket within \(settings.startMilliseconds) ms\(logTail())") }
    let largest = settings.operations.map(\.bufferBytes).max() ?? 4096
    let slice = ((1 << 20) + settings.inFlight * (largest + 8192) + 0xfffff) & ~0xfffff
    let session: FSSession
    do {
        session = try FSSession(socket: socket, queues: settings.queues, sliceBytes: slice, queueSize: 256, layout: settings.layout,
                                eventIndex: settings.eventIndex, linuxLayout: settings.linuxLayout, timeoutMilliseconds: settings.timeoutMilliseconds)
    } catch {
        throw FrontendError("\(spec.name): \(error)\(logTail())")
    }
    defer { session.close() }
    if settings.eventIndex && eventIndexReported.insert(spec.name).inserted {
        let said = session.eventIndex ? "negotiated" : "not offered by the backend"
        print("bench-backend: \(spec.name): VIRTIO_RING_F_EVENT_IDX \(said)")
    }
    let handles = try Handles(session)
    var results: [String: Measurement] = [:]
    for op in settings.operations {
        // Warm up (page cache, inode tables), unmeasured.
        _ = try measure(op, session.queues, handles, count: max(settings.inFlight, settings.requests / 10), inFlight: settings.inFlight,
                        pid: child.pid)
        do {
            results[op.name] = try measure(op, session.queues, handles, count: settings.requests, inFlight: settings.inFlight,
                                           pid: child.pid)
        } catch {
            throw FrontendError("\(spec.name), \(op.name): \(error)\(logTail())")
        }
    }
    return results
}

/// `count` iterations of `op`, `inFlight` at a time on each queue; with
/// several queues, each gets an equal share on a thread of its own.
func measure(_ op: Operation, _ queues: [RequestQueue], _ h: Handles, count: Int, inFlight: Int, pid: pid_t) throws -> Measurement {
    let tree = Proc.tree(pid)
    let cpu0 = Proc.cpuNanoseconds(tree), stat0 = Proc.statCPUNanoseconds(tree)
    let t0 = nowNanoseconds()
    var m = Measurement()
    if queues.count == 1 {
        m = try drive(op, queues[0], h, range: 0..<count, inFlight: inFlight)
    } else {
        let parts = queues.indices.map { q in ResultBox(range: (count * q / queues.count)..<(count * (q + 1) / queues.count)) }
        let threads = try queues.indices.map { q in
            let queue = queues[q], part = parts[q]
            return try OSThread(name: "bench-q\(q)") {
                do { part.result = .success(try drive(op, queue, h, range: part.range, inFlight: inFlight)) } catch { part.result = .failure(error) }
            }
        }
        for t in threads { t.join() }
        for part in parts {
            let p = try part.result.get()
            m.latencies += p.latencies
            if m.errors == 0 { m.firstError = p.firstError }
            m.errors += p.errors
        }
    }
    m.seconds = Double(nowNanoseconds() - t0) / 1e9
    let after = Proc.tree(pid)
    m.cpuNanoseconds = Proc.cpuDelta(schedstat: (cpu0, Proc.cpuNanoseconds(after)), stat: (stat0, Proc.statCPUNanoseconds(after)))
    m.peakRSSKiB = Proc.peakRSSKiB(after)
    m.requests = count
    return m
}

/// One thread's share of a multi-queue measurement.
final class ResultBox: @unchecked Sendable {
    // @unchecked: written by its one thread, read after join.
    let range: Range<Int>
    var result: Result<Measurement, any Error> = .failure(FrontendError("the queue thread did not run"))
    init(range: Range<Int>) { self.range = range }
}

/// Iterations `range` of `op` on one queue, `inFlight` at a time: latencies
/// and wrong replies (timing and CPU are the caller's).
func drive(_ op: Operation, _ s: RequestQueue, _ h: Handles, range: Range<Int>, inFlight: Int) throws -> Measurement {
    var m = Measurement()
    m.latencies.reserveCapacity(range.count)
    var k = range.lowerBound
    var latency = [UInt64](repeating: 0, count: inFlight)
    var previous = [FUSEReplyBytes?](repeating: nil, count: inFlight)
    while k < range.upperBound {
        let n = min(range.upperBound - k, inFlight)
        for i in 0..<n { latency[i] = 0; previous[i] = nil }
        for step in op.steps {
            let batch = (0..<n).map { step.build(s, h, k + $0, previous[$0]) }
            try s.run(batch) { i, reply, took in
                latency[i] += took
                previous[i] = reply
                if !step.check(reply) {
                    if m.errors == 0 { m.firstError = "error \(reply.error), \(reply.length) bytes" }
                    m.errors += 1
                }
            }
        }
        m.latencies += latency[0..<n]
        k += n
    }
    return m
}

/// `text` with every `pattern` replaced by `value`.
func substitute(_ text: String, _ pattern: String, _ value: String) -> String {
    let parts = text.split(separator: pattern, omittingEmptySubsequences: false)
    return parts.joined(separator: value)
}
