import Glibc
import Testing
import VfsvmConfig
import VfsvmFileServer
import VfsvmFUSE
import VfsvmFUSETestSupport

/// `-o timeout=SECONDS`, the C virtiofsd's: the entry and attribute timeout
/// of every reply instead of the cache mode's, as `vfsvm serve` builds its
/// file server from the option list.
@Suite struct TimeoutOptionTests {
    @Test func parsedToTheNanosecond() throws {
        var s = ServeSettings()
        try s.apply(OptionList(parsing: "cache=auto,timeout=2.5"))
        #expect(s.timeout?.seconds == 2 && s.timeout?.nanoseconds == 500_000_000)
        #expect(ServeSettings().timeout == nil)
    }

    @Test(arguments: ["timeout=soon", "timeout=-1", "timeout=86401", "timeout=1.", "timeout"])
    func aBadValueIsOneSentence(_ option: String) throws {
        var s = ServeSettings()
        do {
            try s.apply(OptionList(parsing: option))
            Issue.record("-o \(option) accepted")
        } catch {
            let text = "\(error)"
            #expect(text.contains("timeout") && !text.contains("ConfigError"), "\(text)")
            #expect(!text.contains("\n"), "one line: \(text)")
        }
    }

    /// The served reply: a LOOKUP's entry_valid and attr_valid (and their
    /// nanoseconds) are the option's, not cache=auto's 1 s.
    @Test func theServersRepliesCarryIt() throws {
        var template = Array("/tmp/vfsvm-timeout-XXXXXX".utf8CString)
        let dir = try #require(template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }.map { String(cString: $0) })
        defer { _ = system("rm -rf '\(dir)'") }
        let fd = open(dir + "/a", O_WRONLY | O_CREAT, 0o644)
        #expect(fd >= 0)
        close(fd)
        var s = ServeSettings()
        try s.apply(OptionList(parsing: "source=\(dir),cache=auto,timeout=2.5"))
        let client = Client(try makeFileServer(settings: s, engine: .sync))
        try #require(client.initSession().ok)
        let e = client.lookup(1, "a")
        try #require(e.ok)
        var d = Decoder(e.body, at: 16)
        let entry = d.u64(), attr = d.u64(), entryNsec = d.u32(), attrNsec = d.u32()
        #expect([entry, attr] == [2, 2] && [entryNsec, attrNsec] == [500_000_000, 500_000_000])
    }
}
