import Testing
import KeyMMBase

@Suite struct ProtTests {
    @Test func printsLikeStrace() {
        #expect(Prot.none.description == "PROT_NONE")
        #expect(Prot([.read, .write]).description == "PROT_READ|PROT_WRITE")
        #expect(Prot(rawValue: 0x5).description == "PROT_READ|PROT_EXEC")
        #expect(VirtAddr(0x7f00_0000_1234).pageDown == VirtAddr(0x7f00_0000_1000))
    }
}
