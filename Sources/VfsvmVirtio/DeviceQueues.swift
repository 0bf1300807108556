import Synchronization
import VfsvmMemory
import VfsvmSys

/// The activation contract (`VirtioDevice`) carried out for a device whose
/// queues each run on a `QueueRunner`: the explicit inactive/active state,
/// activation with a context, one queue stopped or (re)started at a time,
/// new memory for running queues, and reset. A device supplies how to build
/// the runner for a queue (its chain handler) and conforms to
/// `QueueRunnerDevice` to get the protocol's methods from here.
///
/// A fatal queue error stops only that queue; it is recorded
/// (`firstFailure`) and reported through the context's `queueFailed`.
public final class DeviceQueues: Sendable {
    /// Builds (without starting) the runner for `queue`; `onFatal` must be
    /// passed on as the runner's `onFatal`.
    public typealias MakeRunner = @Sendable (
        _ queue: ActivatedQueue, _ memory: GuestMemory, _ interrupt: any VirtioInterrupt,
        _ onFatal: @escaping @Sendable (VirtqueueError) -> Void
    ) throws(SystemError) -> QueueRunner

    private struct Active {
        var memory: GuestMemory
        var features: VirtioFeatures
        var interrupt: any VirtioInterrupt
        var queueFailed: QueueFailureHandler
        var runners: [Int: QueueRunner] = [:]
    }

    public let queueCount: Int
    private let makeRunner: MakeRunner
    private let active = Mutex<Active?>(nil)
    /// Held across each control operation, which may join queue threads;
    /// `active` is only held for quick reads and updates (a queue thread
    /// reporting a failure never waits for a control operation).
    private let control = Mutex(())
    private let failure = Mutex<VirtqueueError?>(nil)

    public init(queueCount: Int, makeRunner: @escaping MakeRunner) {
        self.queueCount = queueCount
        self.makeRunner = makeRunner
    }

    public var state: DeviceState { active.withLock { $0 == nil ? .inactive : .active } }

    /// The features the device was activated with, nil while inactive.
    public var features: VirtioFeatures? { active.withLock { $0?.features } }

    /// The indices of the queues running now.
    public var runningQueues: [Int] { active.withLock { $0.map { $0.runners.keys.sorted() } ?? [] } }

    /// The first fatal queue error since the last activation, if any.
    public var firstFailure: VirtqueueError? { failure.withLock { $0 } }

    public func activate(_ context: ActivationContext) throws(DeviceActivationError) {
        try control.withLock { _ throws(DeviceActivationError) in
            let fresh: Bool = active.withLock { a in
                guard a == nil else { return false }
                a = Active(memory: context.memory, features: context.features, interrupt: context.interrupt,
                           queueFailed: context.queueFailed)
                return true
            }
            guard fresh else { throw .alreadyActive }
            failure.withLock { $0 = nil }
            do throws(DeviceActivationError) {
                for q in context.queues { try start(q) }
            } catch {
                stopAll()
                active.withLock { $0 = nil }
                throw error
            }
        }
    }

    public func stopQueue(_ index: Int) -> Virtqueue? {
        control.withLock { _ in stop(index) }
    }

    public func startQueue(_ queue: ActivatedQueue) throws(DeviceActivationError) {
        try control.withLock { _ throws(DeviceActivationError) in
            guard active.withLock({ $0 != nil }) else { throw .notActive }
            _ = stop(queue.index)
            try start(queue)
        }
    }

    public func replaceMemory(_ memory: GuestMemory) {
        control.withLock { _ in
            let running: [Int: QueueRunner] = active.withLock { a in
                a?.memory = memory
                return a?.runners ?? [:]
            }
            for (index, runner) in running.sorted(by: { $0.key < $1.key }) {
                guard let q = stop(index) else { continue }
                do throws(DeviceActivationError) {
                    try start(ActivatedQueue(index: index, queue: q, kick: runner.kick))
                } catch {
                    logLine("vfsvm: queue \(index) could not restart on the new guest memory: \(error)")
                }
            }
        }
    }

    public func reset() {
        control.withLock { _ in
            stopAll()
            active.withLock { $0 = nil }
            failure.withLock { $0 = nil }
        }
    }

    // MARK: - Under `control`

    private func start(_ queue: ActivatedQueue) throws(DeviceActivationError) {
        guard (0..<queueCount).contains(queue.index) else { throw .noSuchQueue(queue.index) }
        guard let a = active.withLock({ $0 }) else { throw .notActive }
        let index = queue.index
        let queueFailed = a.queueFailed
        let onFatal: @Sendable (VirtqueueError) -> Void = { [weak self] error in
            self?.failure.withLock { if $0 == nil { $0 = error } }
            queueFailed(index, error)
        }
        let runner: QueueRunner
        do {
            runner = try makeRunner(queue, a.memory, a.interrupt, onFatal)
            try runner.start()
        } catch {
            throw .system(error)
        }
        active.withLock { $0?.runners[index] = runner }
    }

    private func stop(_ index: Int) -> Virtqueue? {
        let runner = active.withLock { $0?.runners.removeValue(forKey: index) }
        return runner?.stop()
    }

    private func stopAll() {
        let all = active.withLock { a in
            defer { a?.runners = [:] }
            return a?.runners ?? [:]
        }
        for (_, runner) in all { runner.stop() }
    }
}

/// A device whose queues run on `QueueRunner`s: conforming gives it the
/// activation contract's methods, carried out by `deviceQueues`.
public protocol QueueRunnerDevice: VirtioDevice {
    var deviceQueues: DeviceQueues { get }
}

extension QueueRunnerDevice {
    public var state: DeviceState { deviceQueues.state }
    public func activate(_ context: ActivationContext) throws(DeviceActivationError) { try deviceQueues.activate(context) }
    public func stopQueue(_ index: Int) -> Virtqueue? { deviceQueues.stopQueue(index) }
    public func startQueue(_ queue: ActivatedQueue) throws(DeviceActivationError) { try deviceQueues.startQueue(queue) }
    public func replaceMemory(_ memory: GuestMemory) { deviceQueues.replaceMemory(memory) }
    public func reset() { deviceQueues.reset() }
}
