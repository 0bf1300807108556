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
        #expect(s.readdirplus && s.killprivV2 && s.announceSubmounts && !s.allowDirectIO && s.inodeFileHandles == .prefer)
        #expect(s.offersReaddirplus)
        try s.apply(OptionList(parsing: "no_readdirplus,no_killpriv_v2,allow_direct_io,cache=metadata,loglevel=err"))
        #expect(!s.readdirplus && !s.killprivV2 && s.allowDirectIO && s.cache == .metadata && s.logLevel == .error)
        try s.apply(OptionList(parsing: "readdirplus,killpriv_v2,no_allow_direct_io,debug,no_posix_acl"))
        #expect(s.readdirplus && s.killprivV2 && !s.allowDirectIO && s.logLevel == .debug)
        try s.apply(OptionList(parsing: "cache=never"))
        #expect(s.readdirplus && !s.offersReaddirplus, "cache=never offers no READDIRPLUS, as virtiofsd")
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
