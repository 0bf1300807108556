import VfsvmMemory

/// Logs one line per FUSE request (`-d`, `--log-level debug`): opcode,
/// unique, node, caller and the reply's errno and length, read from the
/// headers the wrapped handler saw and wrote.
public struct FUSETracer<Handler: FUSERequestHandler>: FUSERequestHandler {
    public let handler: Handler
    public let log: @Sendable (String) -> Void

    public init(_ handler: Handler, log: @escaping @Sendable (String) -> Void) {
        self.handler = handler
        self.log = log
    }

    public func handle(request: some ScatterGatherList, reply: some ScatterGatherList) -> Int {
        let length = handler.handle(request: request, reply: reply)
        var r = WireReader((try? request.bytes(at: 0, count: min(request.byteCount, FUSEWireSize.inHeader))) ?? [], what: "trace")
        let len = (try? r.u32()) ?? 0, op = (try? r.u32()) ?? 0, unique = (try? r.u64()) ?? 0
        let node = (try? r.u64()) ?? 0, uid = (try? r.u32()) ?? 0, gid = (try? r.u32()) ?? 0, pid = (try? r.u32()) ?? 0
        let name = FUSEOpcode(rawValue: op).map { "\($0)" } ?? "opcode \(op)"
        var outcome = "no reply"
        if length >= FUSEWireSize.outHeader, let h = try? reply.bytes(at: 4, count: 4) {
            var e = WireReader(h, what: "trace")
            let error = Int32(bitPattern: (try? e.u32()) ?? 0)
            outcome = error == 0 ? "ok, \(length) bytes" : "errno \(-error)"
        }
        log("fuse: \(name) unique=\(unique) node=\(node) len=\(len) uid=\(uid) gid=\(gid) pid=\(pid) -> \(outcome)")
        return length
    }
}
