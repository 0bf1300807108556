import Testing
import VfsvmVirtio

@Suite struct FeaturesTests {
    @Test func bitPositions() {
        #expect(VirtioFeatures.version1.rawValue == 1 << 32)
    }
}
