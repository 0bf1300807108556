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
}
