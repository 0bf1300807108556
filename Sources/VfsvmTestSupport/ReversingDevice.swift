import VfsvmMemory
import VfsvmSys
import VfsvmVirtio

/// A small device for tests of whatever carries devices (transports, the
/// vhost-user backend, the activation contract): it answers each request
/// with the request bytes reversed, cut to the writable space.
public final class ReversingDevice: QueueRunnerDevice {
    public static let config: [UInt8] = [0x76, 0x66, 0x73, 0x76, 0x6d, 0, 1, 0]
    public let deviceQueues: DeviceQueues
    public let queueMaxSizes: [UInt16]

    public init(queues: Int = 1, queueSize: UInt16 = 16) {
        queueMaxSizes = Array(repeating: queueSize, count: queues)
        deviceQueues = DeviceQueues(queueCount: queues) { q, memory, interrupt, onFatal throws(SystemError) in
            try QueueRunner(index: q.index, queue: q.queue, memory: memory, kick: q.kick, interrupt: interrupt,
                            handler: ReversingDevice.reverse, onFatal: onFatal)
        }
    }

    public var deviceType: UInt32 { 0xFFFF }
    public var offeredFeatures: VirtioFeatures { [.version1, .ringPacked, .eventIndex, .indirectDescriptors] }

    public func readConfig(offset: Int, into: UnsafeMutableRawBufferPointer) {
        readConfigBytes(Self.config, offset: offset, into: into)
    }
    public func writeConfig(offset: Int, bytes: UnsafeRawBufferPointer) {}

    /// Reverses the readable bytes into the writable buffers.
    public static let reverse: ChainHandler = { chain, memory in
        guard let input = try? chain.readableBuffers(memory), let output = try? chain.writableBuffers(memory),
              let bytes = try? input.bytes(at: 0, count: input.byteCount)
        else { return 0 }
        let reply = Array(bytes.reversed().prefix(output.byteCount))
        guard (try? output.write(reply, at: 0)) != nil else { return 0 }
        return UInt32(reply.count)
    }
}
