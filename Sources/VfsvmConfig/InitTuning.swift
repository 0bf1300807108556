/// A benchmark knob, not a user option: the environment variable
/// `VFSVM_BENCH_INIT`, read by every file server vfsvm builds (`serve`,
/// `run`, `mount`), overrides what the FUSE_INIT reply offers and the
/// entry/attribute timeouts, so that
/// `Benchmarks/bench-serve.sh` can measure what each setting does to the
/// guest's round trips with one binary (Benchmarks/bench-serve-results.md
/// has the figures). It is read once at start and never needed in
/// production; the defaults are what the measurements chose.
///
///   VFSVM_BENCH_INIT="readdirplus=always,max_pages=32,timeout=5"
///
/// Settings, comma separated:
///   async_read=on|off       FUSE_ASYNC_READ offered
///   parallel_dirops=on|off  FUSE_PARALLEL_DIROPS offered
///   readdirplus=auto|always|off
///                           READDIRPLUS with FUSE_READDIRPLUS_AUTO, without
///                           it (every READDIR is a READDIRPLUS), or none
///   max_pages=N             1..256: max_write N × 4 KiB (and so max_pages N)
///   max_background=N        0..65535 (0: the kernel's default, 12)
///   timeout=SECONDS         entry and attribute timeout of every reply
///                           instead of the cache mode's (0..86400, decimals
///                           allowed)
///   negative_timeout=SECONDS  a LOOKUP miss answered as a negative entry
///                           cached for SECONDS instead of ENOENT
public struct InitTuning: Equatable, Sendable {
    public enum Readdirplus: String, Sendable { case auto, always, off }
    public var asyncRead: Bool?
    public var parallelDirops: Bool?
    public var readdirplus: Readdirplus?
    public var maxPages: UInt32?
    public var maxBackground: UInt16?
    public var timeout: ReplyTimeout?
    public var negativeTimeout: ReplyTimeout?

    public static let variable = "VFSVM_BENCH_INIT"

    public init() {}

    /// Parses the variable's value; an empty one changes nothing.
    public init(parsing text: String) throws(ConfigError) {
        for item in text.split(separator: ",", omittingEmptySubsequences: true) {
            let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = String(parts[0]), value = parts.count == 2 ? String(parts[1]) : ""
            func bad(_ why: String) -> ConfigError { .badOption("\(Self.variable) \(key)", reason: why) }
            func onOff() throws(ConfigError) -> Bool {
                switch value {
                case "on": return true
                case "off": return false
                default: throw bad("wants on or off, not '\(value)'")
                }
            }
            switch key {
            case "async_read": asyncRead = try onOff()
            case "parallel_dirops": parallelDirops = try onOff()
            case "readdirplus":
                guard let r = Readdirplus(rawValue: value) else { throw bad("wants auto, always or off, not '\(value)'") }
                readdirplus = r
            case "max_pages":
                guard let n = UInt32(value), (1...256).contains(n) else { throw bad("wants a number of pages from 1 to 256, not '\(value)'") }
                maxPages = n
            case "max_background":
                guard let n = UInt16(value) else { throw bad("wants a number from 0 to 65535, not '\(value)'") }
                maxBackground = n
            case "timeout":
                timeout = try ReplyTimeout(parsing: value, bad)
            case "negative_timeout":
                negativeTimeout = try ReplyTimeout(parsing: value, bad)
            default:
                throw bad("unknown setting (known: async_read, parallel_dirops, readdirplus, max_pages, max_background, timeout, negative_timeout)")
            }
        }
    }
}
