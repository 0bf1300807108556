import Glibc

// What the backend costs, read from /proc: on-CPU time and peak RSS of its
// whole process tree (virtiofsd's sandbox forks; threads are summed).

enum Proc {
    /// `root` and every process descended from it (found from the ppid
    /// field of every /proc/<pid>/stat).
    static func tree(_ root: pid_t) -> [pid_t] {
        var parent: [pid_t: pid_t] = [:]
        for pid in numericEntries("/proc") {
            guard let stat = readFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: UInt8(ascii: ")")) else { continue }
            // After "pid (comm) ": state ppid ...
            let fields = stat[(close + 2)...].split(separator: UInt8(ascii: " "))
            guard fields.count > 1, let ppid = Int32(String(decoding: fields[1], as: UTF8.self)) else { continue }
            parent[pid_t(pid)] = ppid
        }
        var result = [root]
        var frontier = [root]
        while let p = frontier.popLast() {
            for (child, pp) in parent where pp == p && !result.contains(child) {
                result.append(child)
                frontier.append(child)
            }
        }
        return result
    }

    /// Nanoseconds on CPU (user + system, the scheduler's sum_exec_runtime
    /// from /proc/<pid>/task/<tid>/schedstat, exact where stat's utime and
    /// stime are in 10 ms ticks) of every thread of every process in `pids`.
    static func cpuNanoseconds(_ pids: [pid_t]) -> UInt64 {
        var total: UInt64 = 0
        for pid in pids {
            for tid in numericEntries("/proc/\(pid)/task") {
                guard let s = readFile("/proc/\(pid)/task/\(tid)/schedstat"),
                      let first = s.split(separator: UInt8(ascii: " ")).first,
                      let ns = UInt64(String(decoding: first, as: UTF8.self)) else { continue }
                total += ns
            }
        }
        return total
    }

    /// utime + stime of every process in `pids` from /proc/<pid>/stat, in
    /// nanoseconds (10 ms ticks, but it includes threads that have exited,
    /// which the per-thread schedstat sum misses).
    static func statCPUNanoseconds(_ pids: [pid_t]) -> UInt64 {
        let tick = UInt64(max(1, sysconf(Int32(_SC_CLK_TCK))))
        var total: UInt64 = 0
        for pid in pids {
            guard let stat = readFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: UInt8(ascii: ")")) else { continue }
            // After "pid (comm) ": fields 3.. ; utime and stime are fields 14 and 15.
            let fields = stat[(close + 2)...].split(separator: UInt8(ascii: " "))
            guard fields.count > 12 else { continue }
            let utime = UInt64(String(decoding: fields[11], as: UTF8.self)) ?? 0
            let stime = UInt64(String(decoding: fields[12], as: UTF8.self)) ?? 0
            total += (utime + stime) * 1_000_000_000 / tick
        }
        return total
    }

    /// The backend's CPU between two readings: the exact per-thread sum,
    /// unless the tick-grained process figure exceeds it by more than two
    /// ticks (threads ran and exited in between; their time is only there).
    static func cpuDelta(schedstat: (UInt64, UInt64), stat: (UInt64, UInt64)) -> UInt64 {
        let exact = schedstat.1 &- schedstat.0, coarse = stat.1 &- stat.0
        return coarse > exact + 20_000_000 ? coarse : exact
    }

    /// The sum of VmHWM (peak resident set) over `pids`, in KiB.
    static func peakRSSKiB(_ pids: [pid_t]) -> UInt64 {
        var total: UInt64 = 0
        for pid in pids {
            guard let s = readFile("/proc/\(pid)/status") else { continue }
            for line in s.split(separator: UInt8(ascii: "\n")) where line.starts(with: Array("VmHWM:".utf8)) {
                let digits = line.filter { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
                total += UInt64(String(decoding: digits, as: UTF8.self)) ?? 0
            }
        }
        return total
    }

    static func numericEntries(_ path: String) -> [Int] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var out: [Int] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if let n = Int(name) { out.append(n) }
        }
        return out
    }

    static func readFile(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fd, &buf, buf.count)
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return out
    }
}

/// CLOCK_MONOTONIC in nanoseconds.
func nowNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
