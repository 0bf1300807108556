import Synchronization
import VfsvmSys

/// FUSE_INIT: what the server offers, what it agrees to, and the session
/// every later request reads.
extension FUSEServer {
    /// init_out.congestion_threshold: where the client starts to throttle
    /// background requests, three quarters of max_background as libfuse
    /// derives it (Linux's defaults are 12 and 9).
    var congestionThreshold: UInt16 { options.maxBackground - options.maxBackground / 4 }

    func negotiate(major: UInt32, minor: UInt32, maxReadahead: UInt32, clientFlags: UInt64) throws(FUSEErrno) -> [UInt8] {
        var w = WireWriter(capacity: 64)
        if major > FUSEProtocol.major {
            // Newer major: answer with ours only; the client may retry with 7.
            w.u32(FUSEProtocol.major); w.u32(FUSEProtocol.minor); w.zeros(56)
            return w.bytes
        }
        if major < FUSEProtocol.major || minor < FUSEProtocol.oldestMinor {
            throw FUSEErrno(.EPROTO, "INIT: unsupported protocol version")
        }
        if currentSession != nil {
            // A new INIT while a session is open: the client rebooted or
            // crashed without DESTROY (a virtio-fs guest's rings are reset
            // but the backend stays connected). Drop the old session as
            // DESTROY would (inodes, handles, locks), then start anew.
            backingFiles?.reset()
            dax?.removeAll()
            fileSystem.destroy()
            session.store(nil)
        }
        var ours: UInt64 = FUSEInitFlag.atomicOTrunc | FUSEInitFlag.bigWrites
            | FUSEInitFlag.dontMask | FUSEInitFlag.maxPages
            | FUSEInitFlag.cacheSymlinks | FUSEInitFlag.setxattrExt | FUSEInitFlag.autoInvalData
            | FUSEInitFlag.asyncDIO
        if options.asyncRead { ours |= FUSEInitFlag.asyncRead }
        if options.parallelDirops { ours |= FUSEInitFlag.parallelDirops }
        if options.readdirplus {
            ours |= FUSEInitFlag.doReaddirplus
            if options.readdirplusAuto { ours |= FUSEInitFlag.readdirplusAuto }
        }
        // Not with passthrough (a host mount): its writes never reach the
        // server, so the kernel must clear setuid/setgid bits itself.
        if options.killprivV2, backingFiles == nil { ours |= FUSEInitFlag.handleKillprivV2 }
        if options.directIOAllowMmap { ours |= FUSEInitFlag.directIOAllowMmap }
        if options.announceSubmounts { ours |= FUSEInitFlag.submounts }
        if options.posixACL { ours |= FUSEInitFlag.posixACL }
        if options.securityLabel { ours |= FUSEInitFlag.securityContext }
        if options.posixLocks { ours |= FUSEInitFlag.posixLocks }
        if options.flockLocks { ours |= FUSEInitFlag.flockLocks }
        if options.writeback { ours |= FUSEInitFlag.writebackCache }
        if dax != nil { ours |= FUSEInitFlag.mapAlignment }
        ours &= fileSystem.supportedInitFlags
        // Passthrough where a backing-file registry exists; the kernel
        // refuses it together with the writeback cache.
        if backingFiles != nil, !options.writeback { ours |= FUSEInitFlag.passthrough }
        if options.overIOURing { ours |= FUSEInitFlag.overIOURing }
        var negotiated = ours & clientFlags
        if clientFlags & FUSEInitFlag.initExt != 0 { negotiated |= FUSEInitFlag.initExt }
        let agreedMinor = min(minor, FUSEProtocol.minor)
        let maxWrite = max(options.maxWrite, 4096)
        let s = FUSESession(minor: agreedMinor, flags: negotiated, maxWrite: maxWrite)
        fileSystem.initialize(s)
        session.store(s)
        let maxPages = UInt16(min((UInt64(maxWrite) + 4095) / 4096, 256))
        let mapAlignment = negotiated & FUSEInitFlag.mapAlignment != 0 ? DAXMappings.alignmentShift : 0
        tracer?.recordInit(minor: minor, clientFlags: clientFlags, maxReadahead: maxReadahead, agreedMinor: agreedMinor,
                           flags: negotiated, maxWrite: maxWrite, maxPages: maxPages, maxBackground: options.maxBackground,
                           congestionThreshold: congestionThreshold, mapAlignment: mapAlignment)
        w.u32(FUSEProtocol.major); w.u32(agreedMinor); w.u32(maxReadahead)
        w.u32(UInt32(truncatingIfNeeded: negotiated))
        w.u16(options.maxBackground); w.u16(congestionThreshold)
        w.u32(maxWrite)
        w.u32(1)  // time_gran: nanoseconds
        w.u16(maxPages)
        // map_alignment: log2 of the page size DAX offsets are aligned to.
        w.u16(mapAlignment)
        w.u32(UInt32(truncatingIfNeeded: negotiated >> 32))  // flags2
        let passthrough = negotiated & FUSEInitFlag.passthrough != 0
        w.u32(passthrough ? backingFiles?.maxStackDepth ?? 0 : 0)  // max_stack_depth
        w.zeros(24)
        return w.bytes
    }
}

/// The negotiated session in two atomic words, so that each request reads
/// it with two loads instead of taking a lock (the uncontended Mutex read
/// and its Optional copy measured 18-29 instructions per request). `state`
/// holds a present bit, the minor and max_write; `flags` the negotiated
/// flags. A store writes `flags` before `state` (release) and a clear
/// zeroes `state` first; a load reads `state` (acquire), then `flags`. Only
/// INIT racing INIT or DESTROY (a misbehaving client: the kernel sends INIT
/// once and waits for its reply) can pair one session's flags with
/// another's minor; both were negotiated by this server, so either
/// combination is one it would have agreed to.
final class SessionWords: Sendable {
    private let state = Atomic<UInt64>(0)
    private let flags = Atomic<UInt64>(0)
    private static let present: UInt64 = 1 << 63

    func load() -> FUSESession? {
        let st = state.load(ordering: .acquiring)
        guard st & Self.present != 0 else { return nil }
        return FUSESession(minor: UInt32(truncatingIfNeeded: st >> 32) & 0x7fff_ffff,
                           flags: flags.load(ordering: .relaxed),
                           maxWrite: UInt32(truncatingIfNeeded: st))
    }

    func store(_ s: FUSESession?) {
        guard let s else { state.store(0, ordering: .releasing); return }
        precondition(s.minor < 1 << 31, "a FUSE minor is at most FUSEProtocol.minor")
        state.store(0, ordering: .releasing)
        flags.store(s.flags, ordering: .relaxed)
        state.store(Self.present | UInt64(s.minor) << 32 | UInt64(s.maxWrite), ordering: .releasing)
    }
}
