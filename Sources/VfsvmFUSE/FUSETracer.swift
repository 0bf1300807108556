/// Logs one line per FUSE request (`-d`, `--log-level debug`): opcode,
/// unique, node, caller and the outcome (reply length, or the errno's name
/// and what failed), from the decoded request the server ran.
public struct FUSETracer: Sendable {
    public let log: @Sendable (String) -> Void

    public init(log: @escaping @Sendable (String) -> Void) {
        self.log = log
    }

    /// One request's line. `length` is the reply's (0: no reply); `error`
    /// the error it carried.
    func record(_ r: FUSERequest, length: Int, error: FUSEErrno?) {
        let h = r.header
        let name = r.opcode.map { "\($0)" } ?? "opcode \(h.opcode)"
        let outcome: String
        if let error, length > 0 {
            outcome = error.description
        } else if length == 0 {
            outcome = "no reply"
        } else {
            outcome = "ok, \(length) bytes"
        }
        log("fuse: \(name) unique=\(h.unique) node=\(h.nodeID) len=\(h.length) uid=\(h.uid) gid=\(h.gid) pid=\(h.pid) -> \(outcome)")
    }

    /// INIT's line: what the client asked and what it is told, as
    /// virtiofsd's debug log shows it (flags with flags2 in the high half).
    func recordInit(minor: UInt32, clientFlags: UInt64, maxReadahead: UInt32, agreedMinor: UInt32, flags: UInt64,
                    maxWrite: UInt32, maxPages: UInt16, maxBackground: UInt16, congestionThreshold: UInt16, mapAlignment: UInt16) {
        func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
        log("fuse: INIT client 7.\(minor) flags=\(hex(clientFlags)) max_readahead=\(maxReadahead); reply 7.\(agreedMinor) "
            + "flags=\(hex(flags)) max_write=\(maxWrite) max_pages=\(maxPages) max_background=\(maxBackground) "
            + "congestion_threshold=\(congestionThreshold) time_gran=1 map_alignment=\(mapAlignment)")
    }
}
