import Testing
import VfsvmConfig

struct DiskSpecTests {
    @Test func aFileIsReadWriteUnlessRO() throws {
        #expect(try DiskSpec(parsing: "/var/lib/disk.img") == DiskSpec(path: "/var/lib/disk.img", readOnly: false))
        #expect(try DiskSpec(parsing: "disk.img:ro") == DiskSpec(path: "disk.img", readOnly: true))
        #expect(try DiskSpec(parsing: "disk.img:rw") == DiskSpec(path: "disk.img", readOnly: false))
        // Other colons are part of the name.
        #expect(try DiskSpec(parsing: "a:b.img") == DiskSpec(path: "a:b.img", readOnly: false))
        #expect(try DiskSpec(parsing: "a:b.img:ro") == DiskSpec(path: "a:b.img", readOnly: true))
    }

    @Test func anEmptyFileNameIsOneSentence() {
        for text in ["", ":ro", ":rw"] {
            do {
                _ = try DiskSpec(parsing: text)
                Issue.record("'\(text)' was accepted")
            } catch {
                #expect(error.description == "invalid disk '\(text)': expected FILE or FILE:ro, and the file name is empty")
            }
        }
    }
}
