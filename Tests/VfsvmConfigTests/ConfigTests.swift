import Testing
@testable import VfsvmConfig

@Suite struct ShareSpecTests {
    @Test func shareOptionsReadOnlyAndCacheInAnyOrder() throws {
        let a = try ShareSpec(parsing: "/srv/data:myfs:ro:cache=never")
        #expect(a.hostPath == "/srv/data" && a.tag.value == "myfs" && a.readOnly && a.cache == .never)
        let b = try ShareSpec(parsing: "/srv/data:myfs:cache=always:ro")
        #expect(b.readOnly && b.cache == .always)
        #expect(try ShareSpec(parsing: "/srv/data:myfs").cache == nil)
        #expect(throws: ConfigError.badShare("/d:t:cache=sometimes", reason: "cache=sometimes: expected never, auto, always or metadata")) {
            try ShareSpec(parsing: "/d:t:cache=sometimes")
        }
    }

    @Test func daxWindowSizeWithSuffixAmongTheOtherOptions() throws {
        let s = try ShareSpec(parsing: "/srv/data:myfs:dax=1G:ro")
        #expect(s.dax?.bytes == 1 << 30 && s.readOnly && s.tag.value == "myfs")
        #expect(try ShareSpec(parsing: "/srv/data:myfs:cache=always:dax=2M").dax?.bytes == 2 << 20)
        #expect(try ShareSpec(parsing: "/srv/data:myfs:dax=4096K").dax?.bytes == 4 << 20)
        #expect(try ShareSpec(parsing: "/srv/data:myfs:dax=16g").dax?.bytes == 16 << 30)
        #expect(try ShareSpec(parsing: "/srv/data:myfs").dax == nil)
    }

    @Test func daxWindowSizeRefusedWithTheReason() {
        let cases: [(String, String)] = [
            ("3M", "a DAX window is a PCI BAR, so its size must be a power of two (e.g. 256M, 1G)"),
            ("1M", "a DAX window holds at least 2M (one mapping unit)"),
            ("0", "a DAX window holds at least 2M (one mapping unit)"),
            ("32G", "a DAX window holds at most 16G (the board's 64-bit PCI window is 64G and the BAR is aligned to its size)"),
            ("99999999999999999999G", "expected a whole number with a K, M or G suffix, e.g. dax=1G"),
            ("17179869184G", "a DAX window holds at most 16G (the board's 64-bit PCI window is 64G and the BAR is aligned to its size)"),
            ("1T", "unknown unit 'T': give a size with a K, M or G suffix, e.g. dax=1G"),
            ("", "expected a whole number with a K, M or G suffix, e.g. dax=1G"),
            ("-2M", "expected a whole number with a K, M or G suffix, e.g. dax=1G"),
        ]
        for (size, reason) in cases {
            let text = "/d:t:dax=\(size)"
            #expect(throws: ConfigError.badShare(text, reason: "dax=\(size): \(reason)")) { try ShareSpec(parsing: text) }
        }
    }

    @Test func parsesPathAndTag() throws {
        let s = try ShareSpec(parsing: "/srv/data:myfs")
        #expect(s.hostPath == "/srv/data" && s.tag.value == "myfs" && !s.readOnly)
        let ro = try ShareSpec(parsing: "/srv/da:ta:myfs:ro")
        #expect(ro.hostPath == "/srv/da:ta" && ro.tag.value == "myfs" && ro.readOnly)
    }

    @Test func rejectsMalformedShares() {
        #expect(throws: ConfigError.badShare("/srv/data", reason: "expected HOSTDIR:TAG or HOSTDIR:TAG:ro")) {
            try ShareSpec(parsing: "/srv/data")
        }
        #expect(throws: ConfigError.badShare(":myfs", reason: "the host directory is empty")) {
            try ShareSpec(parsing: ":myfs")
        }
        #expect(throws: ConfigError.badTag("", reason: "a tag must not be empty")) { try ShareSpec(parsing: "/srv:") }
    }

    @Test func tagFitsTheConfigSpace() throws {
        let t = try VirtioFSTag(String(repeating: "a", count: 36))
        #expect(t.configBytes.count == 36)
        #expect(try VirtioFSTag("fs").configBytes == [0x66, 0x73] + [UInt8](repeating: 0, count: 34))
        // 13 × 3-byte UTF-8 characters = 39 bytes, over the 36-byte field.
        #expect(throws: ConfigError.badTag(String(repeating: "€", count: 13), reason: "39 bytes of UTF-8; a tag holds at most 36")) {
            try VirtioFSTag(String(repeating: "€", count: 13))
        }
        #expect(throws: ConfigError.self) { try VirtioFSTag("a\u{0}b") }
    }

    /// The attacker review's tag injections: a ',' adds a QEMU -device
    /// option (romfile= reads a host file into the guest), a space adds a
    /// kernel parameter, a '/' or ".." escapes /mnt/TAG and the hook's log
    /// name, a leading '-' reads as an option to mount(8).
    @Test(arguments: ["x,romfile=/etc/shadow", "a init=/bin/sh", "a\tb", "a\nb", "../../etc", "..", ".", "a/b", "-o", "a:b",
                      "a\"b", "a'b", "a\\b", "a=b", "é"])
    func tagWithASpecialCharacterIsRefused(tag: String) {
        #expect(throws: ConfigError.self) { try VirtioFSTag(tag) }
        // (--share takes the tag after the last ':', so "a:b" is the tag "b" there.)
        if !tag.contains(":") { #expect(throws: ConfigError.self) { try ShareSpec(parsing: "/tmp/s:\(tag)") } }
    }

    @Test func refusalNamesTheCharacterAndWhatIsAccepted() {
        #expect(throws: ConfigError.badTag("x,romfile=/etc/shadow", reason: "it contains ','; a tag holds \(VirtioFSTag.allowed)")) {
            try ShareSpec(parsing: "/tmp/s:x,romfile=/etc/shadow")
        }
        #expect(throws: ConfigError.badTag("a init=/bin/sh", reason: "it contains a space; a tag holds \(VirtioFSTag.allowed)")) {
            try VirtioFSTag("a init=/bin/sh")
        }
        #expect(throws: ConfigError.badTag("a\u{1}", reason: "it contains byte 0x01; a tag holds \(VirtioFSTag.allowed)")) {
            try VirtioFSTag("a\u{1}")
        }
        #expect(ConfigError.badTag("..", reason: "a tag holds \(VirtioFSTag.allowed)").description
            == "invalid virtio-fs tag '..': a tag holds ASCII letters, digits and - _ . + @, not starting with - or .")
    }

    @Test(arguments: ["myfs", "vfsvm-root", "data_1", "a.b", "user@host", "c++", String(repeating: "Z", count: 36)])
    func ordinaryTagsAreAccepted(tag: String) throws {
        #expect(try VirtioFSTag(tag).value == tag)
    }
}

@Suite struct VirtiofsdOptionTests {
    @Test func parsesWhatLibvirtPasses() throws {
        // libvirt 9.0's launch line: -o source=DIR,cache=always,sandbox=chroot,xattr,flock,posix_lock
        var s = ServeSettings()
        try s.apply(OptionList(parsing: "source=/srv/a,,b,cache=always,sandbox=chroot,xattr,flock,posix_lock"))
        #expect(s.sharedDir == "/srv/a,b", "libvirt doubles commas inside paths")
        #expect(s.cache == .always && s.sandbox == .chroot && s.xattr && s.flockLocks && s.posixLocks)
        // libvirt 9.0 passes cache=none (virtiofsd's name for never).
        try s.apply(OptionList(parsing: "cache=none"))
        #expect(s.cache == .never)
        try s.apply(OptionList(parsing: "no_xattr,no_flock,no_posix_lock,writeback"))
        #expect(!s.xattr && !s.flockLocks && !s.posixLocks && s.writeback)
    }

    @Test func removeTakesOutOneCommandsOwnOptions() throws {
        // vfsvm mount takes uring/no_uring out before the share settings see the rest.
        var list = try OptionList(parsing: "ro,no_uring,cache=never,uring=1")
        #expect(list.remove("no_uring").map(\.key) == ["no_uring"])
        #expect(list.remove("uring").map(\.value) == ["1"])
        #expect(list.remove("uring").isEmpty)
        #expect(list.entries.map(\.key) == ["ro", "cache"])
        var s = ServeSettings()
        try s.apply(list)
        #expect(s.readOnly && s.cache == .never)
    }

    @Test func rejectsUnknownAndMalformedOptions() {
        var s = ServeSettings()
        #expect(throws: ConfigError.self) { try s.apply(OptionList(parsing: "bogus")) }
        #expect(throws: ConfigError.badOption("cache=sometimes", reason: "expected never (or none), auto, always or metadata")) {
            try s.apply(OptionList(parsing: "cache=sometimes"))
        }
        #expect(throws: ConfigError.badOption("xattr=1", reason: "takes no value")) { try s.apply(OptionList(parsing: "xattr=1")) }
        #expect(throws: ConfigError.badOption("source", reason: "needs a value: source=...")) { try s.apply(OptionList(parsing: "source=")) }
        #expect(throws: ConfigError.self) { try OptionList(parsing: "a,,,") }
        #expect(throws: ConfigError.self) { try OptionList(parsing: "=x") }
    }
}
