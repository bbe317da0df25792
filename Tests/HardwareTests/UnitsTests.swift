import Testing
import KeyMMBase

@Suite struct UnitsTests {
    @Test func byteCountParsesConfigSizes() {
        #expect(ByteCount(parsing: "4G") == .gib(4))
        #expect(ByteCount(parsing: "32M") == .mib(32))
        #expect(ByteCount(parsing: "512KiB") == .kib(512))
        #expect(ByteCount(parsing: "4096") == ByteCount(4096))
        #expect(ByteCount(parsing: "4X") == nil)
        #expect(ByteCount(parsing: "") == nil)
        #expect(ByteCount(parsing: "99999999999T") == nil)
        #expect(ByteCount.gib(64).description == "64G")
    }

    @Test func addressConversions() {
        let pa = PhysAddr(0x1234_5678)
        #expect(pa.pfn == PFN(0x12345))
        #expect(pa.pageOffset == 0x678)
        #expect(pa.lineAligned == PhysAddr(0x1234_5640))
        #expect(PFN(0x12345).physAddr == PhysAddr(0x1234_5000))
        #expect(pageAlignUp(1) == 4096)
        #expect(pageAlignUp(UInt64.max) == nil)
    }
}
