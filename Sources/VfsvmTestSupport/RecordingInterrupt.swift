import Synchronization
import VfsvmVirtio

/// An interrupt sink that counts what a device signalled.
public final class RecordingInterrupt: VirtioInterrupt {
    private struct Counts {
        var queues: [Int: Int] = [:]
        var config = 0
    }
    private let counts = Mutex(Counts())

    public init() {}

    public func signalQueue(_ index: Int) throws {
        counts.withLock { $0.queues[index, default: 0] += 1 }
    }

    public func signalConfigChange() throws {
        counts.withLock { $0.config += 1 }
    }

    /// Used buffer notifications sent for queue `index`.
    public func queueSignals(_ index: Int) -> Int {
        counts.withLock { $0.queues[index, default: 0] }
    }

    /// Configuration change notifications sent.
    public var configSignals: Int { counts.withLock { $0.config } }

    public func clear() {
        counts.withLock { $0 = Counts() }
    }
}
