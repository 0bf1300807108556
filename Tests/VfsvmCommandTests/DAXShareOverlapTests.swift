import Testing
import VfsvmConfig
@testable import vfsvm

/// A dax= share and another share of the same directory tree: truncations
/// made through one would not reach the other's DAX window, so the pair is
/// refused before anything starts (the attacker review's finding 7).
@Suite struct DAXShareOverlapTests {
    func share(_ path: String, _ tag: String, dax: Bool = false) throws -> ShareSpec {
        ShareSpec(hostPath: path, tag: try VirtioFSTag(tag), dax: dax ? try DAXWindowSize(parsing: "2M") : nil)
    }

    @Test func overlappingTreesAreRefused() throws {
        for (a, b) in [("/srv/data", "/srv/data"), ("/srv/data", "/srv/data/sub"), ("/srv/data/sub", "/srv/data"),
                       ("/srv/data", "/srv/./data/"), ("/", "/srv")] {
            let line = Run.daxRefusal([try share(a, "a", dax: true), try share(b, "b")], path: .kvm, transport: nil)
            #expect(line?.contains("one directory tree") == true, "\(a) and \(b): \(String(describing: line))")
        }
    }

    @Test func separateTreesAndSharesWithoutDAXPass() throws {
        #expect(Run.daxRefusal([try share("/srv/data", "a", dax: true), try share("/srv/database", "b")], path: .kvm, transport: nil) == nil)
        #expect(Run.daxRefusal([try share("/srv/a", "a", dax: true), try share("/srv/b", "b", dax: true)], path: .kvm, transport: nil) == nil)
        #expect(Run.daxRefusal([try share("/srv/data", "a"), try share("/srv/data/sub", "b")], path: .kvm, transport: nil) == nil)
    }
}
