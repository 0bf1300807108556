// vfsvm-fuse-sweep: what each request must get back, and the helpers
// that send requests and check their replies (see main.swift).
import CVfsvmLinux
import Glibc
import Synchronization
import VfsvmFUSE
import VfsvmFUSETestSupport
import VfsvmMemory
import VfsvmSys

// Linux values (x86_64) the Swift importer does not give as plain names.
let oNoatime: Int32 = 0o1000000, oDirect: Int32 = 0o40000
let seekData: Int32 = 3, seekHole: Int32 = 4
let renameNoreplace: UInt32 = 1, renameExchange: UInt32 = 2, renameWhiteout: UInt32 = 4
let sIFIFO: UInt32 = 0o010000, sIFCHR: UInt32 = 0o020000, sIFBLK: UInt32 = 0o060000
let sIFREG: UInt32 = 0o100000, sIFSOCK: UInt32 = 0o140000

/// What a request must get back.
enum Expect {
    /// A reply with error 0.
    case ok
    /// This errno.
    case errno(Int32)
    /// Success or one of these errnos (where the host's file system decides).
    case okOr([Int32])
    /// No reply at all (FORGET, BATCH_FORGET).
    case noReply
}


@discardableResult
@Sendable func check(_ label: String, _ reply: Reply, _ expect: Expect) -> Reply {
    requests += 1
    let got = reply.length == 0 ? "no reply" : reply.error == 0 ? "ok" : "errno \(reply.errno)"
    let fine: Bool
    switch expect {
    case .ok: fine = reply.length >= 16 && reply.error == 0
    case let .errno(e): fine = reply.length >= 16 && reply.errno == e
    case let .okOr(es): fine = reply.length >= 16 && (reply.error == 0 || es.contains(reply.errno))
    case .noReply: fine = reply.length == 0
    }
    if fine {
        logLine("vfsvm-fuse-sweep: \(label): \(got)")
    } else {
        unexpected += 1
        logLine("vfsvm-fuse-sweep: UNEXPECTED \(label): \(got), expected \(expect)")
    }
    return reply
}

/// `expect` in the `options` variant, ENOSYS/EOPNOTSUPP-like refusals in
/// the default one (xattr off).
@Sendable func xattrExpect(_ e: Expect) -> Expect { optionsVariant || readOnlyVariant ? e : .errno(ENOSYS) }

let root: UInt64 = 1

@Sendable func initSession(_ label: String) {
    // Every flag the server knows, as a client that wants everything.
    check(label, client.initSession(minor: 38, flags: 0xffff_ffff, flags2: 0xffff_ffff), .ok)
}

@Sendable func lookup(_ parent: UInt64, _ name: String) -> UInt64 {
    check("LOOKUP \(name)", client.lookup(parent, name), .ok).nodeID
}

@Sendable func setattr(_ label: String, _ node: UInt64, valid: Int32, fh: UInt64 = 0, size: UInt64 = 0, atime: UInt64 = 0, mtime: UInt64 = 0,
             mode: UInt32 = 0, uid: UInt32 = 0, gid: UInt32 = 0, _ expect: Expect = .ok) {
    check("SETATTR \(label)", client.setattr(node, valid: UInt32(valid), fh: fh, size: size, atime: atime, mtime: mtime, mode: mode, uid: uid, gid: gid), expect)
}

@Sendable func fallocate(_ node: UInt64, fh: UInt64, offset: UInt64, length: UInt64, mode: Int32, _ label: String, _ expect: Expect) {
    let b = Bytes(); b.u64(fh).u64(offset).u64(length).u32(UInt32(mode)).u32(0)
    check("FALLOCATE \(label)", client.call(.fallocate, node: node, b), expect)
}

@Sendable func lseek(_ node: UInt64, fh: UInt64, offset: UInt64, whence: Int32, _ label: String, _ expect: Expect) {
    let b = Bytes(); b.u64(fh).u64(offset).u32(UInt32(whence)).u32(0)
    check("LSEEK \(label)", client.call(.lseek, node: node, b), expect)
}

@Sendable func xattrs(_ label: String, _ node: UInt64, name: String, setExpect: Expect) {
    let ext = server.currentSession?.has(FUSEInitFlag.setxattrExt) == true
    let value = Array("value".utf8)
    let set = Bytes(); set.u32(UInt32(value.count)).u32(0)
    if ext { set.u32(0).u32(0) }
    set.name(name).raw(value)
    check("SETXATTR \(label) \(name)", client.call(.setxattr, node: node, set), xattrExpect(setExpect))
    // A name whose SET may be refused outright (an ACL under
    // --translate-uid/gid: EOPNOTSUPP) may have its GET refused the same way.
    let refusedAlike: [Int32] = { if case let .okOr(e) = setExpect, e.contains(EOPNOTSUPP) { return [EOPNOTSUPP] } else { return [] } }()
    let ok = { () -> Expect in if case .ok = setExpect { return .ok } else { return .okOr([ENODATA, EPERM] + refusedAlike) } }()
    let size = Bytes(); size.u32(0).u32(0).name(name)
    check("GETXATTR \(label) \(name) (size query)", client.call(.getxattr, node: node, size), xattrExpect(ok))
    let get = Bytes(); get.u32(4096).u32(0).name(name)
    check("GETXATTR \(label) \(name)", client.call(.getxattr, node: node, get), xattrExpect(ok))
    let small = Bytes(); small.u32(1).u32(0).name(name)
    check("GETXATTR \(label) \(name) (1-byte buffer)", client.call(.getxattr, node: node, small), xattrExpect(.okOr([ERANGE, ENODATA, EPERM] + refusedAlike)))
    let list0 = Bytes(); list0.u32(0).u32(0)
    check("LISTXATTR \(label) (size query)", client.call(.listxattr, node: node, list0), xattrExpect(.ok))
    let list = Bytes(); list.u32(4096).u32(0)
    check("LISTXATTR \(label)", client.call(.listxattr, node: node, list), xattrExpect(.ok))
    let rm = Bytes(); rm.name(name)
    check("REMOVEXATTR \(label) \(name)", client.call(.removexattr, node: node, rm), readOnlyVariant ? .errno(EROFS) : xattrExpect(ok))
    let rm2 = Bytes(); rm2.name(name)
    check("REMOVEXATTR \(label) \(name) again", client.call(.removexattr, node: node, rm2),
          readOnlyVariant ? .errno(EROFS) : xattrExpect(.okOr([ENODATA, EPERM])))
}

/// A request that waits for a lock, through the deferred entry point (a
/// thread of its own, as the virtio-fs queues run it). Returns a function
/// that waits for the late reply.
@Sendable func waitingLock(_ label: String, node: UInt64, fh: UInt64, owner: UInt64, flock: Bool) -> () -> Void {
    let b = Bytes(); b.u64(fh).u64(owner).u64(0).u64(UInt64(Int64.max)).u32(UInt32(F_WRLCK)).u32(1).u32(flock ? 1 : 0).u32(0)
    let raw = client.header(FUSEOpcode.setlkw.rawValue, node: node, bodyLength: b.b.count) + b.b
    let late = Mutex<[UInt8]?>(nil)
    let handling = server.handle(request: HostBuffer(raw), reply: HostBuffer(count: 4096),
                                 deferral: FUSEClosureDeferral { bytes in late.withLock { $0 = bytes } })
    guard case .deferred = handling else { fail("\(label): not deferred to a waiter thread") }
    requests += 1
    logLine("vfsvm-fuse-sweep: \(label): waiting on its own thread")
    return {
        for _ in 0..<5000 {
            if let bytes = late.withLock({ $0 }) {
                var d = Decoder(bytes)
                _ = d.u32()
                let error = Int32(bitPattern: d.u32())
                if error == 0 {
                    logLine("vfsvm-fuse-sweep: \(label): ok (late reply)")
                } else {
                    unexpected += 1
                    logLine("vfsvm-fuse-sweep: UNEXPECTED \(label): errno \(-error) (late reply)")
                }
                return
            }
            usleep(1000)
        }
        unexpected += 1
        logLine("vfsvm-fuse-sweep: UNEXPECTED \(label): no late reply within 5 s")
    }
}
