import Glibc
import VfsvmFUSE
import VfsvmFUSETestSupport
import VfsvmVhostUserTestSupport

/// The share every run gets, fresh: `data` (1 MiB, read), `wfile` (1 MiB,
/// written), `dir200` (200 empty files).
enum Fixture {
    static let fileSize = 1 << 20
    static let directoryEntries = 200

    static func create(at share: String) throws {
        guard mkdir(share, 0o755) == 0, mkdir(share + "/dir200", 0o755) == 0 else {
            throw FrontendError("cannot create the share \(share): \(errnoText())")
        }
        var bytes = [UInt8](repeating: 0, count: fileSize)
        for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: i &* 31 &+ i >> 12) }
        try write(share + "/data", bytes)
        try write(share + "/wfile", [UInt8](repeating: 0, count: fileSize))
        for i in 0..<directoryEntries { try write(share + "/dir200/entry-\(i)", []) }
    }

    static func write(_ path: String, _ bytes: [UInt8]) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FrontendError("cannot create \(path): \(errnoText())") }
        defer { close(fd) }
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw FrontendError("cannot write \(path): \(errnoText())") }
            done += n
        }
    }
}

/// Node ids and handles the operations work on, found once per run.
struct Handles {
    var data: UInt64, dataFH: UInt64
    var wfile: UInt64, wfileFH: UInt64
    var dir: UInt64, dirFH: UInt64

    init(_ s: FSSession) throws {
        func need<T>(_ v: T?, _ what: String) throws -> T {
            guard let v else { throw FrontendError("setup failed: \(what)") }
            return v
        }
        data = try need(try s.lookup("data"), "LOOKUP data")
        dataFH = try need(try s.open(data), "OPEN data")
        wfile = try need(try s.lookup("wfile"), "LOOKUP wfile")
        wfileFH = try need(try s.open(wfile), "OPEN wfile")
        dir = try need(try s.lookup("dir200"), "LOOKUP dir200")
        dirFH = try need(try s.open(dir, directory: true), "OPENDIR dir200")
    }
}

/// One request of an operation: how to build it for iteration `k` (given
/// the reply to the previous step of that iteration, if any), and whether a
/// reply is what a working backend answers.
struct Step: Sendable {
    let build: @Sendable (RequestQueue, Handles, Int, FUSEReplyBytes?) -> FUSERequest
    let check: @Sendable (FUSEReplyBytes) -> Bool
}

/// One benchmarked operation: one request, or a sequence (CREATE, RELEASE,
/// UNLINK) whose steps go out as batches one after the other. Figures are
/// per iteration (the whole sequence).
struct Operation: Sendable {
    let name: String
    /// Bytes of guest buffer one request needs (sizes guest RAM).
    let bufferBytes: Int
    let steps: [Step]

    init(name: String, bufferBytes: Int, steps: [Step]) {
        self.name = name
        self.bufferBytes = bufferBytes
        self.steps = steps
    }

    init(name: String, bufferBytes: Int, build: @escaping @Sendable (RequestQueue, Handles, Int) -> FUSERequest,
         check: @escaping @Sendable (FUSEReplyBytes) -> Bool) {
        self.init(name: name, bufferBytes: bufferBytes, steps: [Step(build: { s, h, k, _ in build(s, h, k) }, check: check)])
    }

    static func readIn(fh: UInt64, offset: UInt64, size: UInt32) -> Bytes {
        let b = Bytes()
        b.u64(fh).u64(offset).u32(size).u32(0).u64(0).u32(UInt32(O_RDWR)).u32(0)
        return b
    }

    static func read(_ name: String, size: Int) -> Operation {
        Operation(name: name, bufferBytes: size + 4096, build: { s, h, k in
            let offset = UInt64((k * size) % Fixture.fileSize)
            return FUSERequest(readable: s.request(.read, node: h.data, readIn(fh: h.dataFH, offset: offset, size: UInt32(size))),
                               writable: [16, UInt32(size)])
        }, check: { r in r.error == 0 && r.length == UInt32(16 + size) && r.headerLength == r.length })
    }

    static func write(_ name: String, size: Int) -> Operation {
        let payload = [UInt8](repeating: 0x5a, count: size)
        return Operation(name: name, bufferBytes: size + 4096, build: { s, h, k in
            let offset = UInt64((k * size) % Fixture.fileSize)
            let args = readIn(fh: h.wfileFH, offset: offset, size: UInt32(size))  // fuse_write_in has read_in's layout
            return FUSERequest(readable: s.request(.write, node: h.wfile, args, data: payload), writable: [16 + 8])
        }, check: { r in r.error == 0 && r.length == 24 && u32(r.bytes, 16) == UInt32(size) })
    }

    static let all: [Operation] = [
        Operation(name: "getattr", bufferBytes: 4096, build: { s, h, _ in
            let args = Bytes()
            args.u32(0).u32(0).u64(0)
            return FUSERequest(readable: s.request(.getattr, node: h.data, args), writable: [16 + 104])
        }, check: { r in r.error == 0 && r.length == 16 + 104 }),
        Operation(name: "lookup", bufferBytes: 4096, build: { s, _, _ in
            let args = Bytes()
            args.name("data")
            return FUSERequest(readable: s.request(.lookup, node: 1, args), writable: [16 + 128])
        }, check: { r in r.error == 0 && r.length == 16 + 128 && u64(r.bytes, 16) != 0 }),
        // A miss is ENOENT, or (a negative entry) node id 0 with error 0.
        Operation(name: "lookup-miss", bufferBytes: 4096, build: { s, _, _ in
            let args = Bytes()
            args.name("no-such-file")
            return FUSERequest(readable: s.request(.lookup, node: 1, args), writable: [16 + 128])
        }, check: { r in r.error == -ENOENT || (r.error == 0 && r.length == 16 + 128 && u64(r.bytes, 16) == 0) }),
        read("read-4k", size: 4096),
        read("read-128k", size: 128 << 10),
        write("write-4k", size: 4096),
        write("write-128k", size: 128 << 10),
        Operation(name: "fsync", bufferBytes: 4096, build: { s, h, _ in
            let args = Bytes()
            args.u64(h.wfileFH).u32(0).u32(0)
            return FUSERequest(readable: s.request(.fsync, node: h.wfile, args), writable: [16])
        }, check: { r in r.error == 0 && r.length == 16 }),
        createReleaseUnlink,
        read("read-1m", size: 1 << 20),
        write("write-1m", size: 1 << 20),
        // The whole directory in one reply: 200 entries plus . and ..
        Operation(name: "readdirplus-200", bufferBytes: 68 << 10, build: { s, h, _ in
            FUSERequest(readable: s.request(.readdirplus, node: h.dir, readIn(fh: h.dirFH, offset: 0, size: 64 << 10)),
                        writable: [16, 64 << 10])
        }, check: { r in
            r.error == 0 && r.length > 16
                && parseDirents(Array(r.bytes[16..<Int(r.length)]), plus: true).filter { $0.name.hasPrefix("entry-") }.count
                == Fixture.directoryEntries
        }),
    ]

    /// CREATE new-<k> (O_RDWR), RELEASE its handle, UNLINK it.
    static let createReleaseUnlink = Operation(name: "create+release+unlink", bufferBytes: 4096, steps: [
        Step(build: { s, _, k, _ in
            let args = Bytes()
            args.u32(UInt32(O_RDWR | O_CREAT | O_EXCL)).u32(0o644).u32(0o022).u32(0).name("new-\(k)")
            return FUSERequest(readable: s.request(.create, node: 1, args), writable: [16 + 128 + 16])
        }, check: { r in r.error == 0 && r.length == 16 + 128 + 16 && u64(r.bytes, 16) != 0 }),
        Step(build: { s, _, _, created in
            let node = created.map { u64($0.bytes, 16) } ?? 0, fh = created.map { u64($0.bytes, 16 + 128) } ?? 0
            let args = Bytes()
            args.u64(fh).u32(UInt32(O_RDWR)).u32(0).u64(0)
            return FUSERequest(readable: s.request(.release, node: node, args), writable: [16])
        }, check: { r in r.error == 0 && r.length == 16 }),
        Step(build: { s, _, k, _ in
            let args = Bytes()
            args.name("new-\(k)")
            return FUSERequest(readable: s.request(.unlink, node: 1, args), writable: [16])
        }, check: { r in r.error == 0 && r.length == 16 }),
    ])
}
