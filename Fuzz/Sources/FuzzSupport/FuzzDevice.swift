import VfsvmMemory
import VfsvmVirtio

/// A device with two queues that pops and completes what it is handed
/// (the transport targets' device).
public final class FuzzDevice: VirtioDevice, @unchecked Sendable {
    // @unchecked: driven from the fuzzing thread only.
    public var active = false

    public init() {}
    public var config: [UInt8] = Array(0..<16)
    public var deviceType: UInt32 { 26 }
    public var offeredFeatures: VirtioFeatures { [.version1, .ringPacked, .eventIndex, .indirectDescriptors] }
    public var queueMaxSizes: [UInt16] { [64, 256] }

    public func readConfig(offset: Int, into: UnsafeMutableRawBufferPointer) { readConfigBytes(config, offset: offset, into: into) }

    public func writeConfig(offset: Int, bytes: UnsafeRawBufferPointer) {
        for (i, b) in bytes.enumerated() where offset >= 0 && offset + i < config.count { config[offset + i] = b }
    }

    public var state: DeviceState { active ? .active : .inactive }

    public func activate(_ context: ActivationContext) throws(DeviceActivationError) {
        invariant(!active, "activated twice without a reset")
        let memory = context.memory
        for var q in context.queues {
            invariant(q.queue.isActive, "queue \(q.index) handed over inactive")
            for _ in 0..<Int(q.queue.size) + 1 {
                do {
                    guard let chain = try q.queue.pop(memory) else { break }
                    try q.queue.pushUsed(id: chain.id, descriptorCount: chain.descriptorCount, length: 0, memory)
                } catch {
                    if error.isFatal { break }
                }
            }
            if (try? q.queue.needsInterrupt(memory)) == true { try? context.interrupt.signalQueue(q.index) }
        }
        active = true
    }

    public func stopQueue(_ index: Int) -> Virtqueue? { nil }
    public func startQueue(_ queue: ActivatedQueue) throws(DeviceActivationError) {
        guard active else { throw .notActive }
    }
    public func replaceMemory(_ memory: GuestMemory) {}

    public func reset() { active = false }
}
