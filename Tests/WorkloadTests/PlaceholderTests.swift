import Testing
import KeyMM

@Suite struct LibraryProductTests {
    @Test func umbrellaReexportsUnits() {
        #expect(KeyID.tme.isDefault)
        #expect(PageOrder.pmd.pages == 512)
    }
}
