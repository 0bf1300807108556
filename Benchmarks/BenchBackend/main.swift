import ArgumentParser
import Glibc
import VfsvmVirtio
import VfsvmVhostUserTestSupport

/// bench-backend: a vhost-user-fs front-end that drives backends (vfsvm
/// serve, virtiofsd, anything given a command line) with batches of FUSE
/// requests and prints what each costs.
struct BenchBackend: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-backend",
        abstract: "Drive vhost-user-fs backends with FUSE requests over split or packed rings; print requests/s, latency, backend CPU per request and peak RSS.",
        discussion: """
        Each round starts every backend in turn (the order alternates between rounds) on a fresh share, \
        sends FUSE INIT and then, per operation, a warm-up and --requests requests, --in-flight at a time. \
        CPU is the backend's whole process tree (every thread's on-CPU time from /proc/<pid>/task/*/schedstat); \
        RSS is the sum of VmHWM over that tree. The table shows medians over the rounds and, with two backends, \
        first/second ratios.
        Example: bench-backend --backend 'vfsvm=vfsvm serve --socket-path {socket} --shared-dir {share}' \
        --backend 'virtiofsd=/usr/lib/qemu/virtiofsd --socket-path={socket} -o source={share}'
        """
    )

    @Option(name: .long, help: ArgumentHelp("NAME=COMMAND ({socket} and {share} are substituted); repeat for each backend.", valueName: "NAME=COMMAND"))
    var backend: [String] = []

    @Option(help: "Rounds (the table shows medians).")
    var rounds = 3

    @Option(help: "Measured requests per operation per round.")
    var requests = 2000

    @Option(help: "Requests in flight at once (posted together, one kick).")
    var inFlight = 1

    @Flag(help: "Post the in-header and the out-header of every request in buffers of their own, as Linux's virtio-fs does (default: each merged with the arguments after it, but READ's data and WRITE's).")
    var linuxLayout = false

    @Flag(help: "Use packed rings (VIRTIO_F_RING_PACKED; virtiofsd 7.2 has none) instead of split ones.")
    var packed = false

    @Flag(inversion: .prefixedNo, help: "Negotiate VIRTIO_RING_F_EVENT_IDX when the backend offers it, as Linux's virtio_fs driver does (kicks only when avail_event asks; used_event moved after reading used entries).")
    var eventIndex = true

    @Option(help: "Request queues, each driven by a thread of its own with --in-flight requests (virtiofsd 7.2 serves one).")
    var queues = 1

    @Option(help: ArgumentHelp("Request queues for one backend (overrides --queues for it), e.g. vfsvm=4 to compare 4 queues with virtiofsd's one.", valueName: "NAME=N"))
    var queuesFor: [String] = []

    @Option(help: ArgumentHelp("Comma-separated operations (default all): \(Operation.all.map(\.name).joined(separator: ",")).", valueName: "OPS"))
    var ops: String?

    @Option(help: "Milliseconds to wait for a reply before calling the backend stuck.")
    var timeout: Int32 = 5000

    @Option(help: "Milliseconds to wait for a backend to listen on its socket (more under valgrind).")
    var startTimeout = 10_000

    @Option(help: "Milliseconds a backend gets to exit after SIGTERM before SIGKILL (more under valgrind, which writes its profile at exit).")
    var stopTimeout = 2000

    @Flag(inversion: .prefixedNo, help: "Add the limit column: CPU µs of the same host system calls made directly by this process (no FUSE, no rings).")
    var limit = true

    @Flag(help: "Also print one tab-separated line per backend, round and operation (lines start with \"run\").")
    var tsv = false

    func validate() throws {
        guard !backend.isEmpty else { throw ValidationError("give at least one --backend NAME=COMMAND") }
        guard (1...99).contains(rounds) else { throw ValidationError("--rounds wants 1...99") }
        guard (1...10_000_000).contains(requests) else { throw ValidationError("--requests wants 1...10000000") }
        guard (1...64).contains(inFlight) else { throw ValidationError("--in-flight wants 1...64 (the ring has 256 descriptors)") }
        guard (1...8).contains(queues) else { throw ValidationError("--queues wants 1...8") }
        guard (1...600_000).contains(timeout) else { throw ValidationError("--timeout wants 1...600000 ms") }
        guard (1...600_000).contains(startTimeout) else { throw ValidationError("--start-timeout wants 1...600000 ms") }
        guard (1...600_000).contains(stopTimeout) else { throw ValidationError("--stop-timeout wants 1...600000 ms") }
    }

    func run() throws {
        let specs: [BackendSpec]
        let operations: [Operation]
        do {
            specs = try backend.map { try BackendSpec(parsing: $0) }
            operations = try selectedOperations()
        } catch {
            throw ValidationError("\(error)")
        }
        guard Set(specs.map(\.name)).count == specs.count else { throw ValidationError("backend names must differ") }
        var perBackend: [String: Int] = [:]
        for item in queuesFor {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, specs.contains(where: { $0.name == parts[0] }), let n = Int(parts[1]), (1...8).contains(n) else {
                throw ValidationError("--queues-for wants NAME=N with a backend's NAME and N in 1...8, got \"\(item)\"")
            }
            perBackend[parts[0]] = n
        }
        var base = RunSettings(requests: requests, inFlight: inFlight, queues: queues, layout: packed ? .packed : .split, eventIndex: eventIndex, timeoutMilliseconds: timeout,
                               startMilliseconds: startTimeout, stopMilliseconds: stopTimeout, operations: operations)
        base.linuxLayout = linuxLayout
        var results: [String: [[String: Measurement]]] = [:]
        var failed = false
        var limits: [String: [Double]] = [:]
        for round in 0..<rounds {
            if limit {
                do {
                    let fixture = try LimitFixture()
                    for op in operations {
                        if let v = Limit.measure(op.name, fixture, count: requests) { limits[op.name, default: []].append(v) }
                    }
                } catch {
                    printError("bench-backend: the limit column: \(error)")
                }
            }
            let order = round % 2 == 0 ? specs : specs.reversed()
            for spec in order {
                do {
                    var settings = base
                    settings.queues = perBackend[spec.name] ?? queues
                    let r = try runBackend(spec, settings)
                    results[spec.name, default: []].append(r)
                    if tsv {
                        for op in operations {
                            guard let m = r[op.name] else { continue }
                            print(["run", spec.name, String(round + 1), op.name, String(m.requests), String(m.errors),
                                   format(m.requestsPerSecond, 0), format(m.latencyMicroseconds(0.5), 1),
                                   format(m.latencyMicroseconds(0.99), 1), format(m.cpuMicrosecondsPerRequest, 2),
                                   format(Double(m.peakRSSKiB) / 1024, 1)].joined(separator: "\t"))
                        }
                    }
                    for op in operations where (r[op.name]?.errors ?? 0) > 0 {
                        let m = r[op.name]!
                        printError("bench-backend: \(spec.name), \(op.name): \(m.errors) of \(m.requests) replies were wrong (first: \(m.firstError))")
                        failed = true
                    }
                } catch {
                    printError("bench-backend: round \(round + 1): \(error)")
                    failed = true
                }
            }
        }
        printTable(specs, operations, results, limits, perBackend)
        if failed { throw ExitCode(1) }
    }

    /// "1", or "vfsvm 4, virtiofsd 1" when --queues-for makes them differ.
    func queueSummary(_ specs: [BackendSpec], _ queueCounts: [String: Int]) -> String {
        let counts = specs.map { queueCounts[$0.name] ?? queues }
        return Set(counts).count == 1 ? String(counts[0]) : zip(specs, counts).map { "\($0.name) \($1)" }.joined(separator: ", ")
    }

    func selectedOperations() throws -> [Operation] {
        guard let ops else { return Operation.all }
        return try ops.split(separator: ",").map { name in
            guard let op = Operation.all.first(where: { $0.name == name }) else {
                throw FrontendError("unknown operation \(name) (known: \(Operation.all.map(\.name).joined(separator: ", ")))")
            }
            return op
        }
    }

    func printTable(_ specs: [BackendSpec], _ operations: [Operation], _ results: [String: [[String: Measurement]]],
                    _ limits: [String: [Double]], _ queueCounts: [String: Int]) {
        print("bench-backend: \(requests) requests per operation, \(inFlight) in flight per queue, \(packed ? "packed" : "split") ring, \(queueSummary(specs, queueCounts)) request queue(s), \(eventIndex ? "EVENT_IDX where offered" : "no EVENT_IDX")\(linuxLayout ? ", headers in buffers of their own (Linux's layout)" : ""); medians of \(rounds) round(s)")
        var header = ["operation"]
        for s in specs { header += ["\(s.name) req/s", "p50 µs", "p99 µs", "CPU µs/req", "RSS MiB"] }
        if specs.count == 2 { header += ["CPU/req \(specs[0].name)/\(specs[1].name)", "req/s \(specs[0].name)/\(specs[1].name)"] }
        if limit { header += ["limit CPU µs", "CPU/req \(specs[0].name)/limit"] }
        var rows = [header]
        for op in operations {
            var row = [op.name]
            var cpu: [Double] = [], rps: [Double] = []
            for s in specs {
                let ms = (results[s.name] ?? []).compactMap { $0[op.name] }
                guard !ms.isEmpty else { row += ["-", "-", "-", "-", "-"]; cpu.append(0); rps.append(0); continue }
                let c = median(ms.map(\.cpuMicrosecondsPerRequest)), r = median(ms.map(\.requestsPerSecond))
                cpu.append(c)
                rps.append(r)
                row += [format(r, 0), format(median(ms.map { $0.latencyMicroseconds(0.5) }), 1),
                        format(median(ms.map { $0.latencyMicroseconds(0.99) }), 1), format(c, 2),
                        format(median(ms.map { Double($0.peakRSSKiB) / 1024 }), 1)]
            }
            if specs.count == 2 {
                row += [cpu[1] > 0 && cpu[0] > 0 ? format(cpu[0] / cpu[1], 2) : "-", rps[1] > 0 && rps[0] > 0 ? format(rps[0] / rps[1], 2) : "-"]
            }
            if limit {
                if let l = limits[op.name], !l.isEmpty {
                    let m = median(l)
                    row += [format(m, 2), m > 0 && cpu[0] > 0 ? format(cpu[0] / m, 1) : "-"]
                } else {
                    row += ["-", "-"]
                }
            }
            rows.append(row)
        }
        let widths = (0..<header.count).map { c in rows.map { $0[c].count }.max() ?? 0 }
        for row in rows {
            print(row.enumerated().map { c, cell in
                c == 0 ? cell + String(repeating: " ", count: widths[c] - cell.count)
                    : String(repeating: " ", count: widths[c] - cell.count) + cell
            }.joined(separator: "  "))
        }
    }
}

func median(_ values: [Double]) -> Double {
    let s = values.sorted()
    guard !s.isEmpty else { return 0 }
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

func format(_ v: Double, _ decimals: Int) -> String {
    var buf = [CChar](repeating: 0, count: 64)
    _ = withVaList([v]) { vsnprintf(&buf, buf.count, "%.\(decimals)f", $0) }
    return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// strerror(errno).
func errnoText() -> String {
    guard let p = strerror(errno) else { return "errno \(errno)" }
    return String(cString: p)
}

func printError(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
}

BenchBackend.main()
