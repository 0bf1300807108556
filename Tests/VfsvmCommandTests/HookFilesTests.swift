import Testing
@testable import vfsvm

@Suite struct QEMUConfUserTests {
    @Test func theLastUncommentedUserSettingCounts() {
        let conf = """
            #       user = "qemu"   # A user named "qemu"
            #user = "libvirt-qemu"
            group = "kvm"
            user_namespace = "x"
              user  =  "libvirt-qemu"
            """
        #expect(LibvirtHook.qemuUser(inConf: conf) == "libvirt-qemu")
        #expect(LibvirtHook.qemuUser(inConf: "#user = \"libvirt-qemu\"\n") == nil)
        #expect(LibvirtHook.qemuUser(inConf: "user = \"+0\"\nuser = \"nobody\"") == "nobody")
    }

    @Test func accountsAsLibvirtReadsThem() {
        #expect(LibvirtHook.account("+0")?.uid == 0)
        #expect(LibvirtHook.account("root").map { [$0.uid, $0.gid] } == [0, 0])
        #expect(LibvirtHook.account("no-such-user-vfsvm") == nil)
    }
}
