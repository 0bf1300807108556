import Glibc
import Synchronization
import Testing
import VfsvmSys

/// review4: the wake-up signal of an interrupted lock waiter can come in
/// the moment after the waiter checked its mark and before its blocking
/// call began; the signal's handler runs then and the call blocks anyway.
/// FUSEServer answered such an INTERRUPT EAGAIN so that the kernel would
/// send it again - but on `vfsvm mount` the EAGAIN goes out on whichever
/// cloned /dev/fuse fd read the INTERRUPT, and the kernel looks the request
/// up only among those read through that fd: the write fails with ENOENT
/// and nothing is sent again (strace of a 4-thread mount: write(11,
/// "\20\0\0\0\365\377\377\377\t\0...", 16) = -1 ENOENT). So `interrupt`
/// itself must get the thread out of that window.
@Suite(.serialized) struct Review4InterruptionTests {
    @Test(.timeLimit(.minutes(1)))
    func aWakeUpThatComesJustBeforeTheBlockingCallIsNotLost() throws {
        let wait = Interruption()
        let pipe = try makePipe()
        let inWindow = Atomic(false)
        let result = Mutex<Int32?>(nil)
        let thread = try OSThread(name: "r4-waiter") {
            wait.enter()
            do throws(SystemError) {
                _ = try interruptibleCall("read(pipe)") { () -> Int in
                    // The window: the mark was checked, the call has not
                    // started. No system call here, so the signal is lost.
                    inWindow.store(true, ordering: .releasing)
                    var now = timespec(), start = timespec()
                    clock_gettime(CLOCK_MONOTONIC, &start)
                    repeat { clock_gettime(CLOCK_MONOTONIC, &now) } while (now.tv_sec - start.tv_sec) * 1_000_000_000 + (now.tv_nsec - start.tv_nsec) < 30_000_000
                    var byte: UInt8 = 0
                    return Glibc.read(pipe.read.rawValue, &byte, 1)
                }
                result.withLock { $0 = 0 }
            } catch {
                result.withLock { $0 = error.errno.rawValue }
            }
            wait.leave()
        }
        while !inWindow.load(ordering: .acquiring) { usleep(100) }
        usleep(5_000)
        wait.interrupt()
        var waited = 0
        while result.withLock({ $0 }) == nil && waited < 200 { usleep(10_000); waited += 1 }
        let got = result.withLock { $0 }
        // Release a waiter that is still blocked before the test ends.
        var byte: UInt8 = 1
        if got == nil { _ = Glibc.write(pipe.write.rawValue, &byte, 1) }
        thread.join()
        #expect(got == EINTR, "the waiter's call: \(got.map { "errno \($0)" } ?? "still blocked 2 s after the interrupt")")
    }
}
