import Testing
@testable import VfsvmBoot

@Suite struct AMLTests {
    @Test func integersUseTheShortestEncoding() {
        #expect(AML.integer(0).encoded == [0x00])                                   // ZeroOp
        #expect(AML.integer(1).encoded == [0x01])                                   // OneOp
        #expect(AML.integer(5).encoded == [0x0A, 0x05])                             // BytePrefix
        #expect(AML.integer(0x3F8).encoded == [0x0B, 0xF8, 0x03])                   // WordPrefix
        #expect(AML.integer(0x0001_FFFF).encoded == [0x0C, 0xFF, 0xFF, 0x01, 0x00]) // DWordPrefix
        #expect(AML.integer(0x1_0000_0000).encoded == [0x0E, 0, 0, 0, 0, 1, 0, 0, 0])  // QWordPrefix
    }

    @Test func pkgLengthCountsItself() {
        // 62 bytes of body + 1 length byte = 63: still one byte.
        #expect(AML.package([UInt8](repeating: 0, count: 62)).prefix(1) == [63])
        // 63 bytes: two length bytes, total 65 = 0x41: lead 0x41 (1 more byte, nibble 1), then 0x04.
        #expect(AML.package([UInt8](repeating: 0, count: 63)).prefix(2) == [0x41, 0x04])
        // 4094 + 2 = 4096 = 0x1000 does not fit 12 bits: three bytes, total 4097 = 0x1001.
        #expect(AML.package([UInt8](repeating: 0, count: 4094)).prefix(3) == [0x81, 0x00, 0x01])
        #expect(AML.package([UInt8](repeating: 0, count: 4093)).prefix(2) == [0x4F, 0xFF])   // 4095 = 0xFFF
    }

    @Test func namesAndIDs() {
        #expect(AML.nameString("_HID") == Array("_HID".utf8))
        #expect(AML.nameString("_S5") == Array("_S5_".utf8))                       // padded with '_'
        #expect(AML.nameString("\\_SB") == [0x5C] + Array("_SB_".utf8))            // RootChar
        #expect(AML.nameString("\\_SB.PCI0") == [0x5C, 0x2E] + Array("_SB_PCI0".utf8))   // DualNamePrefix
        #expect(AML.nameString("\\_SB.PCI0.VR00") == [0x5C, 0x2F, 3] + Array("_SB_PCI0VR00".utf8))   // MultiNamePrefix
        #expect(AML.nameString("^^FOO") == [0x5E, 0x5E] + Array("FOO_".utf8))      // ParentPrefix
        #expect(AML.compressedEISAID("PNP0A03") == 0x030A_D041)
        #expect(AML.eisaID("PNP0501").encoded == [0x0C, 0x41, 0xD0, 0x05, 0x01])
        #expect(AML.string("LNRO0005").encoded == [0x0D] + Array("LNRO0005".utf8) + [0])
    }

    @Test func deviceMethodPackageBuffer() {
        let device = AML.device("VR00", [.name("_UID", .integer(0))])
        #expect(device.encoded == [
            0x5B, 0x82,                      // DeviceOp
            0x0B,                            // PkgLength: 11 = 1 + 4 (name) + 6 (Name term)
            0x56, 0x52, 0x30, 0x30,          // "VR00"
            0x08, 0x5F, 0x55, 0x49, 0x44,    // NameOp "_UID"
            0x00,                            // ZeroOp
        ])
        let method = AML.method("_STA", arguments: 0, serialized: false, [.return(.integer(0x0F))])
        #expect(method.encoded == [0x14, 0x09] + Array("_STA".utf8) + [0x00, 0xA4, 0x0A, 0x0F])   // MethodOp, flags 0, ReturnOp
        #expect(AML.method("_PIC", arguments: 1, serialized: true, []).encoded == [0x14, 0x06] + Array("_PIC".utf8) + [0x09])
        #expect(AML.package([.integer(5), .integer(0)]).encoded == [0x12, 0x05, 0x02, 0x0A, 0x05, 0x00])   // PackageOp, NumElements 2
        #expect(AML.buffer([0xAB, 0xCD]).encoded == [0x11, 0x05, 0x0A, 0x02, 0xAB, 0xCD])                 // BufferOp, BufferSize 2
    }

    @Test func resourceDescriptors() {
        #expect(ResourceDescriptor.io(minimum: 0x3F8, maximum: 0x3F8, alignment: 1, length: 8).encoded
            == [0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08])     // tag, Decode16, min, max, align, len
        #expect(ResourceDescriptor.memory32Fixed(base: 0xD000_0000, length: 0x200, writable: true).encoded
            == [0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xD0, 0x00, 0x02, 0x00, 0x00])
        #expect(ResourceDescriptor.interrupt(gsis: [5], edge: true, activeLow: false, shared: false).encoded
            == [0x89, 0x06, 0x00, 0x03, 0x01, 0x05, 0x00, 0x00, 0x00])  // consumer | edge, one GSI
        #expect(ResourceDescriptor.interrupt(gsis: [10, 11], edge: false, activeLow: true, shared: true).encoded
            == [0x89, 0x0A, 0x00, 0x0D, 0x02, 0x0A, 0, 0, 0, 0x0B, 0, 0, 0])
        #expect(ResourceDescriptor.wordBusNumber(minimum: 0, maximum: 0xFF).encoded == [
            0x88, 0x0D, 0x00,                // Word Address Space, length 13
            0x02, 0x0C, 0x00,                // bus number range; MinFixed | MaxFixed, producer; no flags
            0x00, 0x00, 0x00, 0x00, 0xFF, 0x00,   // _GRA, _MIN, _MAX
            0x00, 0x00, 0x00, 0x01,          // _TRA, _LEN 0x100
        ])
        let q = ResourceDescriptor.qwordMemory(minimum: 0x1_0000_0000, maximum: 0x10_FFFF_FFFF, prefetchable: true).encoded
        #expect(q.count == 46 && q[0] == 0x8A && q[3] == 0x00 && q[5] == 0x07)   // memory range, prefetchable | RW
        #expect(Array(q[38..<46]) == [0, 0, 0, 0, 0x10, 0, 0, 0])                // _LEN 64 GiB
    }

    /// iasl reads back what the builder wrote, including the pieces the
    /// board's DSDT does not use today (Method, Return, Buffer).
    @Test func iaslDecompilesBuilderOutput() throws {
        let body = AML.scope("\\_SB", [
            .device("TST0", [
                .name("_HID", .eisaID("PNP0C02")),
                .name("_STR", .string("vfsvm")),
                .name("BUF0", .buffer([1, 2, 3])),
                .method("_STA", arguments: 0, serialized: false, [.return(.integer(0x0F))]),
                .method("MTH1", arguments: 2, serialized: true, [.return(.integer(0x1_2345_6789))]),
            ]),
        ]).encoded
        let table = ACPITables.table("SSDT", revision: 2, body: body)
        guard let asl = IASL.decompile(table, name: "ssdt") else { return }
        for line in ["Device (TST0)", "Name (_HID, EisaId (\"PNP0C02\")", "Name (_STR, \"vfsvm\")",
                     "Name (BUF0, Buffer (0x03)", "0x01, 0x02, 0x03", "Method (_STA, 0, NotSerialized)",
                     "Return (0x0F)", "Method (MTH1, 2, Serialized)", "Return (0x0000000123456789)"] {
            #expect(asl.contains(line), "missing \(line) in\n\(asl)")
        }
    }
}
