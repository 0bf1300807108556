import Testing
@testable import VfsvmConfig

@Suite struct CapabilityOptionTests {
    /// What a writable share needs: ownership and mode changes for guest
    /// users, reading and writing every file, per-request fsuid/fsgid and
    /// groups, device nodes, file capabilities.
    static let readWrite: Set<Int32> = [0, 1, 3, 4, 6, 7, 27, 31]

    @Test func writableShareKeepsWhatVirtiofsdKeeps() {
        #expect(ServeSettings().capabilities == Self.readWrite)
    }

    /// A read-only share only reads (DAC_OVERRIDE, on a read-only mount)
    /// and may open others' files with O_NOATIME (FOWNER).
    @Test func readOnlyShareKeepsOverrideAndFowner() throws {
        var s = ServeSettings()
        try s.apply(OptionList(parsing: "readonly"))
        #expect(s.capabilities == [1, 3])
    }

    /// DAC_READ_SEARCH (open_by_handle_at) only where file handles are on.
    @Test func fileHandlesAddReadSearch() throws {
        for mode in [InodeFileHandles.prefer, .mandatory] {
            var s = ServeSettings()
            s.inodeFileHandles = mode
            #expect(s.capabilities == Self.readWrite.union([2]), "\(mode)")
            try s.apply(OptionList(parsing: "readonly"))
            #expect(s.capabilities == [1, 2, 3], "\(mode), read-only")
        }
    }

    @Test func modcapsAddsAndRemovesByName() throws {
        var s = ServeSettings()
        try s.apply(OptionList(parsing: "modcaps=-mknod:+sys_admin:-CAP_SETFCAP"))
        #expect(s.capabilities == Self.readWrite.subtracting([27, 31]).union([21]))
        // A later list adds to the earlier one; the last word on a capability wins.
        try s.apply(OptionList(parsing: "modcaps=+mknod"))
        #expect(s.capabilities == Self.readWrite.subtracting([31]).union([21]))
    }

    @Test func modcapsRejectsUnknownNamesAndMissingSigns() {
        var s = ServeSettings()
        #expect(throws: ConfigError.badOption("modcaps=+sys_adnim", reason: "unknown capability 'sys_adnim' (names as in capabilities(7), e.g. chown, sys_admin, mknod)")) {
            try s.apply(OptionList(parsing: "modcaps=+sys_adnim"))
        }
        #expect(throws: ConfigError.badOption("modcaps=chown", reason: "each entry starts with + or -, e.g. +sys_admin:-mknod")) {
            try s.apply(OptionList(parsing: "modcaps=chown"))
        }
        #expect(throws: ConfigError.self) { try s.apply(OptionList(parsing: "modcaps=+chown::-mknod")) }
    }

    @Test func namesMatchLinuxNumbers() {
        #expect(Capability.number(named: "chown") == 0)
        #expect(Capability.number(named: "sys_admin") == 21)
        #expect(Capability.number(named: "cap_setfcap") == 31)
        #expect(Capability.number(named: "checkpoint_restore") == 40)
        #expect(Capability.names.count == 41)
    }
}
