// Copies between a scatter-gather list and a span, for code outside this
// target that keeps its bytes in safe storage (an InlineArray on the stack,
// an Array) rather than behind a raw pointer.

extension ScatterGatherList {
    /// Copies bytes starting at `offset` out of the list into
    /// `destination[at...]`, as many as fit there; returns how many were
    /// copied (fewer at the end of the list).
    @discardableResult
    public func copy(from offset: Int, into destination: inout MutableRawSpan, at destinationOffset: Int = 0) -> Int {
        precondition(destinationOffset >= 0 && destinationOffset <= destination.byteCount)
        // Safe: the span's memory is writable for its byteCount and only
        // lent to the copy, which stays inside [destinationOffset, byteCount).
        return destination.withUnsafeMutableBytes { all in
            copy(from: offset, into: UnsafeMutableRawBufferPointer(rebasing: all[destinationOffset...]))
        }
    }
}
