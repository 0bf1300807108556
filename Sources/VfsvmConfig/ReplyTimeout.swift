/// An entry or attribute timeout to the nanosecond, as FUSE replies carry
/// it: `-o timeout=` and the benchmark knob's `timeout=` and
/// `negative_timeout=` (InitTuning).
public struct ReplyTimeout: Equatable, Sendable {
    public var seconds: UInt64
    public var nanoseconds: UInt32

    /// "1", "0.5", "86400": decimal seconds, at most a day, to the
    /// nanosecond; anything else is `bad`'s error with the reason.
    init(parsing value: String, _ bad: (String) -> ConfigError) throws(ConfigError) {
        let parts = value.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        let why = "wants seconds from 0 to 86400 (decimals allowed), not '\(value)'"
        guard let whole = UInt64(parts[0]), whole <= 86400 else { throw bad(why) }
        var nanos: UInt32 = 0
        if parts.count == 2 {
            let digits = parts[1]
            guard !digits.isEmpty, digits.count <= 9, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
                  let frac = UInt32(digits) else { throw bad(why) }
            var n = frac
            for _ in digits.count..<9 { n *= 10 }
            nanos = n
        }
        guard whole < 86400 || nanos == 0 else { throw bad(why) }
        seconds = whole
        nanoseconds = nanos
    }
}
