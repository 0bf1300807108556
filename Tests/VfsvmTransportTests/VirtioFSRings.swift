import Glibc
import VfsvmFUSE
import VfsvmFUSETestSupport
import VfsvmMemory
import VfsvmPassthroughFS
import VfsvmTestSupport
import VfsvmVirtio
import VfsvmVirtioFS

/// What the transport fixtures share: a virtio-fs device (hiprio + one
/// request queue of 64) serving a fresh temporary directory, 8 MiB of guest
/// memory and the mock driver's two split rings in it, and the transport a
/// fixture puts in front of the device.
class VirtioFSRings<Transport> {
    let dir: String
    let memory: GuestMemory
    let device: VirtioFSDevice
    let transport: Transport
    /// Builds FUSE request headers.
    let client: Client
    private(set) var hiprio: MockDriver
    private(set) var requests: MockDriver

    init(tag: String, transport make: (VirtioFSDevice, GuestMemory) throws -> Transport) throws {
        var template = Array("/tmp/vfsvm-\(tag)-XXXXXX".utf8CString)
        dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
        memory = try GuestMemory.anonymous(size: 8 << 20)
        let server = FUSEServer(fileSystem: try PassthroughFileSystem(root: dir), options: FUSEServerOptions())
        client = Client(server)
        device = try VirtioFSDevice(tag: tag, requestQueues: 1, queueSize: 64, server: server)
        transport = try make(device, memory)
        (hiprio, requests) = try Self.rings(memory)
    }

    private static func rings(_ memory: GuestMemory) throws -> (MockDriver, MockDriver) {
        (try MockDriver(memory: memory, layout: .split, queueSize: 16, features: [.version1, .eventIndex],
                        ringBase: GuestAddress(0x1000), arena: (1 << 20)..<(4 << 20)),
         try MockDriver(memory: memory, layout: .split, queueSize: 64, features: [.version1, .eventIndex],
                        ringBase: GuestAddress(0x8000), arena: (4 << 20)..<(8 << 20)))
    }

    /// Fresh, zeroed rings, as a driver lays them out again after a reset.
    func freshRings() throws { (hiprio, requests) = try Self.rings(memory) }

    deinit { _ = system("rm -rf '\(dir)'") }
}
