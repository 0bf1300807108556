import Testing
import VfsvmConfig

/// The VFSVM_BENCH_INIT benchmark knob: every setting parsed, and a bad one
/// refused with a sentence naming it.
@Suite struct InitTuningTests {
    @Test func emptyChangesNothing() throws {
        #expect(try InitTuning(parsing: "") == InitTuning())
        #expect(try InitTuning(parsing: ",") == InitTuning())
    }

    @Test func everySetting() throws {
        let t = try InitTuning(parsing: "async_read=off,parallel_dirops=on,readdirplus=always,max_pages=32,max_background=12,timeout=2.5")
        #expect(t.asyncRead == false && t.parallelDirops == true && t.readdirplus == .always)
        #expect(t.maxPages == 32 && t.maxBackground == 12)
        #expect(t.timeout?.seconds == 2 && t.timeout?.nanoseconds == 500_000_000)
        #expect(try InitTuning(parsing: "readdirplus=off").readdirplus == .off)
        #expect(try InitTuning(parsing: "timeout=0").timeout?.seconds == 0)
        #expect(try InitTuning(parsing: "timeout=86400").timeout?.seconds == 86400)
        #expect(try InitTuning(parsing: "timeout=0.000000001").timeout?.nanoseconds == 1)
        let n = try InitTuning(parsing: "negative_timeout=1")
        #expect(n.negativeTimeout?.seconds == 1 && n.timeout == nil)
    }

    @Test(arguments: [
        ("async_read=yes", "VFSVM_BENCH_INIT async_read"), ("readdirplus=plus", "VFSVM_BENCH_INIT readdirplus"),
        ("max_pages=0", "VFSVM_BENCH_INIT max_pages"), ("max_pages=257", "VFSVM_BENCH_INIT max_pages"),
        ("max_background=70000", "VFSVM_BENCH_INIT max_background"), ("timeout=-1", "VFSVM_BENCH_INIT timeout"),
        ("timeout=86400.5", "VFSVM_BENCH_INIT timeout"), ("timeout=1.", "VFSVM_BENCH_INIT timeout"),
        ("timeout=1.0000000001", "VFSVM_BENCH_INIT timeout"), ("writeback=on", "unknown setting"),
        ("negative_timeout=x", "VFSVM_BENCH_INIT negative_timeout"),
    ])
    func badSettingsAreRefused(text: String, mentions: String) {
        do {
            _ = try InitTuning(parsing: text)
            Issue.record("\(text) was accepted")
        } catch {
            #expect(error.description.contains(mentions), "\(text): \(error.description)")
            #expect(!error.description.contains("badOption("), "one sentence, not an enum dump")
        }
    }
}
