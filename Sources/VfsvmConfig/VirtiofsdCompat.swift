/// A virtiofsd option `vfsvm serve` knows by name and does not implement.
/// It is refused by name (never accepted and ignored), saying what it does
/// in virtiofsd, so a command line written for virtiofsd fails loudly
/// instead of serving the share differently from what it asks.
public struct UnimplementedOption: Sendable, Equatable {
    /// The long option without its dashes ("posix-acl"), nil when only the
    /// `-o` list has it.
    public let long: String?
    /// The `-o` spelling ("posix_acl"), nil when only a long option has it.
    public let compat: String?
    /// What the option does in virtiofsd, in a few words.
    public let meaning: String

    public init(long: String?, compat: String?, meaning: String) {
        self.long = long; self.compat = compat; self.meaning = meaning
    }
}

/// virtiofsd's command line (the Rust virtiofsd's long options and its
/// `-o` compatibility list, and the C virtiofsd's `-o` options) as far as
/// `vfsvm serve` refuses it.
public enum VirtiofsdCompat {
    /// Every virtiofsd option `vfsvm serve` refuses, one row each. An
    /// option leaves this table when it is implemented.
    public static let unimplemented: [UnimplementedOption] = [
        UnimplementedOption(long: "uid-map", compat: nil,
                            meaning: "maps host UIDs into the user namespace an unprivileged virtiofsd runs in, :inside:outside:count:; --translate-uid map:INSIDE:OUTSIDE:COUNT gives the guest the same view"),
        UnimplementedOption(long: "gid-map", compat: nil,
                            meaning: "maps host GIDs into the user namespace an unprivileged virtiofsd runs in, :inside:outside:count:; --translate-gid map:INSIDE:OUTSIDE:COUNT gives the guest the same view"),
        UnimplementedOption(long: "migration-mode", compat: nil,
                            meaning: "how the device state travels in a live migration (find-paths or file-handles); vfsvm serve does not migrate"),
        UnimplementedOption(long: "migration-on-error", compat: nil,
                            meaning: "what a live migration does with inodes it cannot carry over; vfsvm serve does not migrate"),
        UnimplementedOption(long: "migration-verify-handles", compat: nil,
                            meaning: "checks migrated inodes by file handle; vfsvm serve does not migrate"),
        UnimplementedOption(long: "migration-confirm-paths", compat: nil,
                            meaning: "re-checks migrated paths at switch-over; vfsvm serve does not migrate"),
        UnimplementedOption(long: "daemonize", compat: nil, meaning: "runs in the background (the C virtiofsd)"),
        UnimplementedOption(long: nil, compat: "allow_root", meaning: "libfuse's allow_root mount option (the C virtiofsd)"),
        UnimplementedOption(long: nil, compat: "max_idle_threads", meaning: "bounds idle worker threads (the C virtiofsd)"),
    ]

    /// The row refusing `--name` (without dashes), if any.
    public static func unimplemented(long name: String) -> UnimplementedOption? {
        unimplemented.first { $0.long == name }
    }

    /// The row refusing `-o name`, if any.
    public static func unimplemented(compat name: String) -> UnimplementedOption? {
        unimplemented.first { $0.compat == name }
    }

    /// Checks the arguments the command-line parser did not recognise: a
    /// virtiofsd option of the table is refused by name, anything else as
    /// unknown. Returns normally only when there are none.
    public static func check(unrecognized arguments: [String]) throws(ConfigError) {
        guard let first = arguments.first else { return }
        if first.hasPrefix("--") {
            let name = String(first.dropFirst(2).prefix { $0 != "=" })
            if let row = unimplemented(long: name) { throw .unimplemented("--\(name)", meaning: row.meaning) }
            throw .badOption(first, reason: "unknown option (see vfsvm serve --help)")
        }
        if first.hasPrefix("-") { throw .badOption(first, reason: "unknown option (see vfsvm serve --help)") }
        throw .badOption(first, reason: "unexpected argument: vfsvm serve takes options only (see vfsvm serve --help)")
    }
}
