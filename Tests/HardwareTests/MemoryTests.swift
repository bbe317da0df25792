// DRAM: sparse host backing (untouched frames cost nothing, never-written DRAM reads zeros),
// determinism (same seed => same DRAM bytes), the cost clock and cost profiles.
import Foundation
import Testing
import KeyMMBase
@testable import KeyMMHardware

@Suite struct MemoryTests {
    @Test func sixtyFourGiBIsSparse() throws {
        var c = MachineConfig()
        c.memory = .gib(64)
        let m = try Machine(config: c)
        #expect(m.frameCount == 16 * 1024 * 1024)
        let pfns = [PFN(0), PFN(12_345), PFN(8_000_000), PFN(UInt64(m.frameCount - 1))]
        for p in pfns {
            m.clearPage(p, keyid: KeyID(0))
            m.write(p.physAddr.advanced(by: 100), keyid: KeyID(0), bytes: [9, 9, 9])
        }
        m.wbinvd()
        for p in pfns { #expect(m.read(p.physAddr.advanced(by: 99), keyid: KeyID(0), count: 5) == [0, 9, 9, 9, 0]) }
        #expect(m.physRead(PFN(4_000_000).physAddr, count: 64) == [UInt8](repeating: 0, count: 64))
        if let rss = m.dram.residentBytes() {
            // 4 written frames (+ the one read above): a few host pages, nowhere near 64 GiB.
            #expect(rss <= 64 * 4096, "DRAM resident bytes \(rss)")
            #expect(rss >= 4 * 4096)
        }
    }

    @Test func discardReturnsFramesToZero() throws {
        let m = try smallMachine()
        m.write(PhysAddr(0x3000), keyid: KeyID(0), bytes: [1])
        m.wbinvd()
        #expect(m.physRead(PhysAddr(0x3000), count: 64) != [UInt8](repeating: 0, count: 64))
        m.dram.discard(PFN(3)..<PFN(4))
        #expect(m.physRead(PhysAddr(0x3000), count: 64) == [UInt8](repeating: 0, count: 64))
    }

    static func workload(_ m: Machine) -> [UInt8] {
        _ = m.keyTable.program(KeyID(1), .setKeyRandom(dataEntropy: [7], tweakEntropy: []))
        _ = m.keyTable.program(KeyID(2), .setKeyRandom(dataEntropy: [], tweakEntropy: []))
        var g = SeededGenerator(seed: 3)
        for i in 0..<200 {
            let pfn = PFN(g.next() % 64)
            let k = KeyID(UInt16(i % 3))
            switch g.next() % 4 {
            case 0: m.clearPage(pfn, keyid: k)
            case 1: m.write(pfn.physAddr.advanced(by: Int(g.next() % 4000)), keyid: k, bytes: randomBytes(50, &g))
            case 2: m.copyPage(from: pfn, srcKeyID: k, to: PFN(g.next() % 64), dstKeyID: KeyID(UInt16((i + 1) % 3)))
            default: m.flushPage(pfn, keyid: k)
            }
        }
        m.wbinvd()
        return m.physRead(PhysAddr(0), count: 64 * pageSize)
    }

    @Test func sameSeedSameDRAMBytes() throws {
        let a = try smallMachine(cache: .kib(16), seed: 42)
        let b = try smallMachine(cache: .kib(16), seed: 42)
        let da = Self.workload(a), db = Self.workload(b)
        #expect(da == db)
        #expect(a.clock.cycles == b.clock.cycles)
        #expect(a.clock.snapshot == b.clock.snapshot)
        let c = try smallMachine(cache: .kib(16), seed: 43)
        #expect(Self.workload(c) != da)             // the TME and random keys come from the seed
        #expect(da.contains { $0 != 0 })
    }

    @Test func costClockChargesAndCounts() {
        var p = CostProfile.default
        p[.syscall] = 7
        let clock = CostClock(profile: p)
        clock.charge(.syscall, 3)
        clock.charge(.zeroPage)
        clock.count(.keyidSwitches, 2)
        #expect(clock.cycles == 21 + CostProfile.default[.zeroPage])
        let s = clock.snapshot
        #expect(s["syscalls"] == 3 && s["zeroed_pages"] == 1 && s["keyid_switches"] == 2 && s["flushed_lines"] == 0)
        for name in ["flushed_lines", "write_backs", "encryptions", "decryptions", "zeroed_pages", "keyid_switches", "tlb_shootdowns", "page_faults"] {
            #expect(s[name] != nil, "missing counter \(name)")
        }
        #expect(Set(s.keys).count == CostEvent.allCases.count + Counter.allCases.count)
        clock.reset()
        #expect(clock.cycles == 0 && clock.snapshot.values.allSatisfy { $0 == 0 })
    }

    @Test func costProfileJSONRoundTripAndErrors() throws {
        var p = CostProfile(name: "test", tscHz: 2.5e9)
        p[.clflushLine] = 123
        p.measuredNanoseconds = ["clflush_line": 49.2]
        let data = try p.jsonData()
        let q = try JSONDecoder().decode(CostProfile.self, from: data)
        #expect(q == p)
        let partial = #"{"schema": 1, "cycles": {"syscall": 9}}"#
        let r = try JSONDecoder().decode(CostProfile.self, from: Data(partial.utf8))
        #expect(r[.syscall] == 9 && r[.zeroPage] == CostProfile.default[.zeroPage])
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(CostProfile.self, from: Data(#"{"cycles": {"nope": 1}}"#.utf8)) }
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(CostProfile.self, from: Data(#"{"schema": 2}"#.utf8)) }
        #expect(throws: HardwareError.self) { try CostProfile.load(from: "/nonexistent/keymm-costs.json") }
        let names = CostEvent.allCases.map(\.name), counters = CostEvent.allCases.map(\.counterName) + Counter.allCases.map(\.name)
        #expect(Set(names).count == names.count && Set(counters).count == counters.count)
        #expect(CostEvent.allCases.enumerated().allSatisfy { $0.offset == $0.element.rawValue })
        #expect(Counter.allCases.enumerated().allSatisfy { $0.offset == $0.element.rawValue })
    }
}
