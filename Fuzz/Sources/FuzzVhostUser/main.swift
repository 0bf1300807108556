// libFuzzer target: vhost-user message sequences with real fds (eventfds,
// memfds, pipes, /dev/null, sockets) fed to VhostUserBackendServer.serve(
// connection:) over a socketpair, driving a device that starts its rings
// for real (activates a Virtqueue on the mapped memory and pops from it).
//
// Invariants: no crash (a memfd smaller than the region it backs must be
// refused, not mapped and faulted on); every sequence ends, with the front-
// end's close or a refusal; the device is reset when the connection ends
// and then holds no queue; a started queue's memory is the one last set.
import FuzzSupport
import Glibc
import VfsvmMemory
import VfsvmSys
import VfsvmVhostUser
import VfsvmVirtio

@_cdecl("LLVMFuzzerInitialize")
public func fuzzVhostUserInitialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> Int32 {
    writeSeedsIfAsked(VhostUserSeeds.all)
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzVhostUser(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    runVhostUserCase(VhostUserFuzzMessage.decode(&input))
    return 0
}

let device = FuzzVhostDevice()
let server: VhostUserBackendServer = {
    do { return try VhostUserBackendServer(device: device, listener: nil, log: { _ in }) } catch {
        fatalError("fuzz setup: \(error)")
    }
}()

func runVhostUserCase(_ messages: [VhostUserFuzzMessage]) {
    let frontend: FileDescriptor, backend: FileDescriptor
    do { (frontend, backend) = try UnixSocket.pair() } catch { fatalError("fuzz setup: \(error)") }
    for m in messages {
        var w = FuzzInputWriter()
        w.u32(m.request)
        w.u32(m.flags)
        w.u32(m.rawSize ?? UInt32(m.payload.count))
        w.append(m.payload)
        let fds = m.fds.compactMap(makeFD)
        do { try frontend.send(w.bytes, fds: fds) } catch { break }
    }
    // The front-end is done: the server reads to the end, then sees it close.
    _ = shutdown(frontend.rawValue, Int32(SHUT_WR))
    let end = server.serve(connection: backend)
    invariant(end != .stopped, "serve ended as stopped without stop()")
    invariant(device.started.isEmpty, "the device still runs \(device.started.count) queues after the connection ended")
    _ = frontend
}

func makeFD(_ kind: VhostUserFuzzMessage.FD) -> FileDescriptor? {
    switch kind {
    case .eventfd:
        return try? EventFD(nonBlocking: true).fd
    case let .memfd(pages, content):
        guard let fd = try? MemFD.create(name: "fuzz-guest", size: Int(pages) * 4096) else { return nil }
        if !content.isEmpty { _ = content.withUnsafeBytes { try? fd.pwrite($0, at: 0) } }
        return fd
    case .pipeRead, .pipeWrite:
        guard let p = try? makePipe() else { return nil }
        return kind == .pipeRead ? p.read : p.write
    case .devNull:
        return try? FileDescriptor.open("/dev/null", O_RDWR)
    case .socket:
        return try? UnixSocket.pair().0
    }
}

/// A virtio device behind the server: three queues; a started queue is
/// activated on the memory the server mapped and drained once.
final class FuzzVhostDevice: VhostUserDevice, @unchecked Sendable {
    // @unchecked: the server calls one device method at a time, from the
    // connection thread, which here is the fuzzing thread.
    var started: [Int: Virtqueue] = [:]
    var memory: GuestMemory?

    var deviceFeatures: VirtioFeatures { [.version1, .ringPacked, .eventIndex, .indirectDescriptors] }
    var queueCount: Int { 3 }
    var maxQueueSize: UInt16 { 256 }

    func readConfig(offset: Int, count: Int) -> [UInt8] {
        (0..<max(0, min(count, 256))).map { UInt8(truncatingIfNeeded: offset &+ $0) }
    }

    func startQueue(_ vring: VhostUserVring, features: VirtioFeatures, memory: GuestMemory,
                    kick: EventFD, call: EventFD?, error: EventFD?) throws {
        invariant(vring.index >= 0 && vring.index < queueCount, "startQueue of queue \(vring.index)")
        invariant(started[vring.index] == nil, "queue \(vring.index) started twice")
        var q = Virtqueue(maxSize: maxQueueSize)
        q.size = vring.size
        q.descriptorTable = vring.descriptorTable
        q.driverArea = vring.driverArea
        q.deviceArea = vring.deviceArea
        q.ready = true
        q.availState = UInt16(truncatingIfNeeded: vring.base)
        q.usedState = UInt16(truncatingIfNeeded: vring.base >> 16)
        try q.activate(memory: memory, features: features)
        for _ in 0..<4 {
            do {
                guard let chain = try q.pop(memory) else { break }
                try q.pushUsed(id: chain.id, descriptorCount: chain.descriptorCount, length: 0, memory)
            } catch {
                if error.isFatal { break }
            }
        }
        started[vring.index] = q
        self.memory = memory
    }

    func stopQueue(_ index: Int) -> UInt32 {
        invariant(started[index] != nil, "stopQueue of queue \(index), which is not started")
        let q = started.removeValue(forKey: index)
        return UInt32(q?.availState ?? 0) | UInt32(q?.usedState ?? 0) << 16
    }

    func callChanged(_ index: Int, call: EventFD?) {
        invariant(started[index] != nil, "callChanged of queue \(index), which is not started")
    }

    func memoryChanged(_ memory: GuestMemory) { self.memory = memory }

    func reset() {
        started = [:]
        memory = nil
    }
}
