import Glibc
import CVfsvmLinux

/// An eventfd(2): the doorbell between a driver and a device. KVM signals it
/// on a queue notify (ioeventfd) or waits on it to inject an interrupt
/// (irqfd); a vhost-user frontend passes one per queue for kick and call.
public final class EventFD: Sendable {
    public let fd: FileDescriptor

    public init(initial: UInt32 = 0, nonBlocking: Bool = false) throws(SystemError) {
        let flags = EFD_CLOEXEC | (nonBlocking ? EFD_NONBLOCK : 0)
        let raw = try sysCall("eventfd") { eventfd(initial, Int32(flags)) }
        fd = FileDescriptor(owning: raw)
    }

    /// Wraps an eventfd received from elsewhere (SCM_RIGHTS).
    public init(adopting fd: FileDescriptor) { self.fd = fd }

    /// Adds one to the counter, waking any waiter.
    public func signal() throws(SystemError) {
        var one: UInt64 = 1
        _ = try withUnsafeBytes(of: &one) { raw throws(SystemError) in try fd.write(raw) }
    }

    /// Reads and resets the counter. On a non-blocking eventfd whose counter
    /// is zero, returns 0 instead of failing with EAGAIN.
    @discardableResult
    public func drain() throws(SystemError) -> UInt64 {
        var value: UInt64 = 0
        do {
            _ = try withUnsafeMutableBytes(of: &value) { raw throws(SystemError) in try fd.read(into: raw) }
        } catch where error.errno == .EAGAIN {
            return 0
        }
        return value
    }
}
