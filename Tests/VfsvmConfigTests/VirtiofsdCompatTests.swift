import Testing
@testable import VfsvmConfig

@Suite struct VirtiofsdCompatTests {
    /// Every row of the table is refused by each of its spellings, with
    /// the sentence a user sees.
    @Test func everyUnimplementedOptionIsRefusedByName() {
        #expect(!VirtiofsdCompat.unimplemented.isEmpty)
        for row in VirtiofsdCompat.unimplemented {
            #expect(row.long != nil || row.compat != nil)
            if let long = row.long {
                #expect(throws: ConfigError.unimplemented("--\(long)", meaning: row.meaning)) {
                    try VirtiofsdCompat.check(unrecognized: ["--\(long)"])
                }
                #expect(throws: ConfigError.unimplemented("--\(long)", meaning: row.meaning)) {
                    try VirtiofsdCompat.check(unrecognized: ["--\(long)=x", "more"])
                }
            }
            if let compat = row.compat {
                var s = ServeSettings()
                #expect(throws: ConfigError.unimplemented("-o \(compat)", meaning: row.meaning)) {
                    try s.apply(OptionList(parsing: "source=/srv,\(compat)"))
                }
                #expect(throws: ConfigError.unimplemented("-o \(compat)", meaning: row.meaning)) {
                    try s.apply(OptionList(parsing: "\(compat)=1"))
                }
            }
        }
    }

    @Test func refusalSentence() {
        let e = ConfigError.unimplemented("--posix-acl", meaning: "serves POSIX ACLs")
        #expect(e.description == "vfsvm serve does not implement --posix-acl (virtiofsd: serves POSIX ACLs)")
        #expect(!VirtiofsdCompat.unimplemented.contains { $0.meaning.contains("\n") })
    }

    @Test func spellingsAreUnique() {
        let longs = VirtiofsdCompat.unimplemented.compactMap(\.long)
        let compats = VirtiofsdCompat.unimplemented.compactMap(\.compat)
        #expect(Set(longs).count == longs.count && Set(compats).count == compats.count)
    }

    @Test func garbageIsUnknownNotUnimplemented() {
        #expect(throws: ConfigError.badOption("--frobnicate", reason: "unknown option (see vfsvm serve --help)")) {
            try VirtiofsdCompat.check(unrecognized: ["--frobnicate"])
        }
        #expect(throws: ConfigError.badOption("-z", reason: "unknown option (see vfsvm serve --help)")) {
            try VirtiofsdCompat.check(unrecognized: ["-z"])
        }
        #expect(throws: ConfigError.badOption("stray", reason: "unexpected argument: vfsvm serve takes options only (see vfsvm serve --help)")) {
            try VirtiofsdCompat.check(unrecognized: ["stray"])
        }
        var s = ServeSettings()
        #expect(throws: ConfigError.self) { try s.apply(OptionList(parsing: "frobnicate")) }
        #expect(throws: Never.self) { try VirtiofsdCompat.check(unrecognized: []) }
    }
}

@Suite struct VirtiofsdImplementedOptionTests {
    @Test func optionListTogglesAndDefaults() throws {
        var s = ServeSettings()
        #expect(s.readdirplus && s.killprivV2 && !s.announceSubmounts && !s.allowDirectIO && s.inodeFileHandles == .never)
        #expect(s.offersReaddirplus)
        try s.apply(OptionList(parsing: "no_readdirplus,no_killpriv_v2,allow_direct_io,cache=metadata,loglevel=err"))
        #expect(!s.readdirplus && !s.killprivV2 && s.allowDirectIO && s.cache == .metadata && s.logLevel == .error)
        try s.apply(OptionList(parsing: "readdirplus,killpriv_v2,no_allow_direct_io,debug,no_posix_acl"))
        #expect(!s.posixACL)
        try s.apply(OptionList(parsing: "posix_acl"))
        #expect(s.posixACL && s.xattr, "posix_acl implies xattr")
        #expect(s.readdirplus && s.killprivV2 && !s.allowDirectIO && s.logLevel == .debug)
        try s.apply(OptionList(parsing: "cache=never"))
        #expect(s.readdirplus && !s.offersReaddirplus, "cache=never offers no READDIRPLUS, as virtiofsd")
    }

    @Test func securityLabelImpliesXattr() throws {
        var s = ServeSettings()
        #expect(!s.securityLabel && !s.xattr)
        try s.apply(OptionList(parsing: "security_label"))
        #expect(s.securityLabel && s.xattr, "security_label implies xattr, as virtiofsd's --security-label")
        try s.apply(OptionList(parsing: "no_security_label"))
        #expect(!s.securityLabel)
        #expect(VirtiofsdCompat.unimplemented(long: "security-label") == nil && VirtiofsdCompat.unimplemented(compat: "security_label") == nil)
    }

    @Test func noatimeFollowsFowner() throws {
        var s = ServeSettings()
        #expect(s.keepsNoatime, "CAP_FOWNER kept: O_NOATIME passes")
        try s.modcaps.apply(parsing: "-fowner")
        #expect(!s.keepsNoatime)
        s.preserveNoatime = true
        #expect(s.keepsNoatime)
    }

    @Test func modeNames() {
        #expect(InodeFileHandles(named: "fallback") == .prefer && InodeFileHandles(named: "mandatory") == .mandatory)
        #expect(InodeFileHandles(named: "always") == nil)
        #expect(LogLevel(named: "err") == .error && LogLevel(named: "trace") == .trace && LogLevel.off < .error)
    }
}

@Suite struct IDTranslationRuleTests {
    @Test func parsesEveryRuleType() throws {
        #expect(try IDTranslationRule(parsing: "map:0:1000:1") == .init(kind: .map, from: 0, to: 1000, count: 1))
        #expect(try IDTranslationRule(parsing: "guest:10:20:5") == .init(kind: .guest, from: 10, to: 20, count: 5))
        #expect(try IDTranslationRule(parsing: "host:20:10:5") == .init(kind: .host, from: 20, to: 10, count: 5))
        #expect(try IDTranslationRule(parsing: "squash-guest:0:65534:65536") == .init(kind: .squashGuest, from: 0, to: 65534, count: 65536))
        #expect(try IDTranslationRule(parsing: "squash-host:1000:0:10") == .init(kind: .squashHost, from: 1000, to: 0, count: 10))
        #expect(try IDTranslationRule(parsing: "forbid-guest:5:1") == .init(kind: .forbidGuest, from: 5, to: 0, count: 1))
        #expect(try IDTranslationRule(parsing: "map/0/1000/1") == .init(kind: .map, from: 0, to: 1000, count: 1), "any separator, used throughout")
        #expect(try IDTranslationRule(parsing: "MAP:0:1000:1").kind == .map)
        #expect(try IDTranslationRule(parsing: "map:4294967295:0:1").from == 4_294_967_295)
    }

    @Test func refusesMalformedRulesWithTheReason() {
        let cases: [(String, String)] = [
            ("mop:0:1:1", "unknown rule type 'mop' (map, guest, host, squash-guest, squash-host or forbid-guest), e.g. map:0:1000:1"),
            ("map:0:1", "expected map:A:B:COUNT (3 numbers after the type, got 2)"),
            ("forbid-guest:0:1:1", "expected forbid-guest:A:COUNT"),
            ("map:0:x:1", "'x' is not an id (a whole number from 0 to 4294967295)"),
            ("map:0:-1:1", "'-1' is not an id (a whole number from 0 to 4294967295)"),
            ("map:0:1:0", "COUNT must be at least 1"),
            ("map:4294967295:0:2", "the range 4294967295+2 passes 4294967295"),
            ("map:0:4294967295:2", "the range 4294967295+2 passes 4294967295"),
            ("map", "expected map:A:B:COUNT, e.g. map:0:1000:1"),
            ("map:0/1:1", "expected map:A:B:COUNT (3 numbers after the type, got 2)"),
        ]
        for (text, reason) in cases {
            #expect(throws: ConfigError.badOption("--translate-uid \(text)", reason: reason)) { try IDTranslationRule(parsing: text) }
        }
    }

    @Test func overlapsAreRefused() throws {
        let a = try IDTranslationRule(parsing: "map:0:1000:10")
        let b = try IDTranslationRule(parsing: "guest:5:2000:1")
        #expect(throws: ConfigError.badOption("--translate-uid guest:5:2000:1", reason: "maps guest ids that map:0:1000:10 maps already")) {
            try IDTranslationRule.checkOverlaps([a, b], option: "--translate-uid")
        }
        let c = try IDTranslationRule(parsing: "squash-host:1005:0:1")
        #expect(throws: ConfigError.self) { try IDTranslationRule.checkOverlaps([a, c], option: "--translate-uid") }
        // Directions apart do not overlap: guest 0..9 and host 0..9 are different ids.
        let d = try IDTranslationRule(parsing: "host:0:50:10")
        #expect(throws: Never.self) { try IDTranslationRule.checkOverlaps([a, d], option: "--translate-uid") }
    }
}
