import Glibc
import Synchronization
import Testing
import VfsvmMemory
import VfsvmSys
import VfsvmVirtio
import VfsvmVhostUserTestSupport
@testable import VfsvmVhostUser

/// A device that records every call the server makes.
final class RecordingDevice: VhostUserDevice {
    enum Call: Equatable {
        case start(VhostUserVring, features: VirtioFeatures, hasCall: Bool)
        case stop(Int)
        case callChanged(Int, hasCall: Bool)
        case memoryChanged
        case reset
    }

    struct Started {
        var memory: GuestMemory
        var kick: EventFD
        var call: EventFD?
    }

    private let offered: VirtioFeatures
    private let featureReads = Mutex(0)
    /// Counts GET_FEATURES (and the session's feature checks) so a test can
    /// see a real front-end got that far.
    var deviceFeatures: VirtioFeatures {
        featureReads.withLock { $0 += 1 }
        return offered
    }
    var featureReadCount: Int { featureReads.withLock { $0 } }
    let queueCount: Int
    let maxQueueSize: UInt16
    let config: [UInt8]
    /// What stopQueue returns.
    let stopValue: UInt32
    let refuseStart: Bool
    private let state = Mutex<(calls: [Call], started: [Int: Started], memory: GuestMemory?)>(([], [:], nil))

    init(features: VirtioFeatures = [.version1, .accessPlatform], queues: Int = 2, maxQueueSize: UInt16 = 1024,
         config: [UInt8] = Array("myfs".utf8) + [UInt8](repeating: 0, count: 32) + [1, 0, 0, 0],
         stopValue: UInt32 = 0x1234, refuseStart: Bool = false) {
        offered = features
        queueCount = queues
        self.maxQueueSize = maxQueueSize
        self.config = config
        self.stopValue = stopValue
        self.refuseStart = refuseStart
    }

    var calls: [Call] { state.withLock { $0.calls } }
    func started(_ i: Int) -> Started? { state.withLock { $0.started[i] } }
    var latestMemory: GuestMemory? { state.withLock { $0.memory } }

    func readConfig(offset: Int, count: Int) -> [UInt8] {
        guard offset < config.count else { return [] }
        return Array(config[offset..<min(config.count, offset + count)])
    }

    struct Refused: Error {}

    func startQueue(_ vring: VhostUserVring, features: VirtioFeatures, memory: GuestMemory, kick: EventFD, call: EventFD?,
                    error: EventFD?) throws {
        if refuseStart { throw Refused() }
        state.withLock {
            $0.calls.append(.start(vring, features: features, hasCall: call != nil))
            $0.started[vring.index] = Started(memory: memory, kick: kick, call: call)
            $0.memory = memory
        }
    }

    func stopQueue(_ index: Int) -> UInt32 {
        state.withLock {
            $0.calls.append(.stop(index))
            $0.started[index] = nil
        }
        return stopValue
    }

    func callChanged(_ index: Int, call: EventFD?) {
        state.withLock {
            $0.calls.append(.callChanged(index, hasCall: call != nil))
            $0.started[index]?.call = call
        }
    }

    func memoryChanged(_ memory: GuestMemory) {
        state.withLock {
            $0.calls.append(.memoryChanged)
            $0.memory = memory
        }
    }

    func reset() {
        state.withLock {
            $0.calls.append(.reset)
            $0.started = [:]
            $0.memory = nil
        }
    }
}

/// The front-end types live in VfsvmVhostUserTestSupport (shared with
/// Benchmarks/BenchBackend); this module's name for a reply.
typealias Reply = VhostUserReply

/// Runs a server on one end of a socketpair in its own thread, hands the
/// other end to `body` as a front-end, then closes it and returns how the
/// server saw the connection end.
func withServer(_ device: any VhostUserDevice, protocolFeatures: UInt64 = VhostUserProtocolFeature.supported,
                _ body: (MockFrontend) throws -> Void) throws -> VhostUserBackendServer.Disconnect? {
    let (ours, theirs) = try UnixSocket.pair()
    let server = try VhostUserBackendServer(device: device, listener: nil, protocolFeatures: protocolFeatures, log: { _ in })
    let result = Mutex<VhostUserBackendServer.Disconnect?>(nil)
    let thread = try OSThread {
        let end = server.serve(connection: theirs)
        result.withLock { $0 = end }
    }
    let frontend = MockFrontend(socket: ours)
    do {
        try body(frontend)
    } catch {
        frontend.close()
        thread.join()
        throw error
    }
    frontend.close()
    thread.join()
    return result.withLock { $0 }
}
