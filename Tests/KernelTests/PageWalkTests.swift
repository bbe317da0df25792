// PageWalk (pgtable/PageWalk.swift): the one read-only walker. Entries come in address order with
// the right decoded fields; the visit filter, holes, early stop, VMA pairing (stray entries get
// nil) and the single lookup behave as documented; the walk changes nothing.
import Testing
import KeyMMBase
import KeyMMHardware
@testable import KeyMMKernel

@Suite struct PageWalkTests {
    /// An mm with: 3 PTEs at 0x40_0000 (present KeyID 3, PROT_NONE, swap), one none PTE in
    /// that table, a huge PMD at 0x80_0000 (KeyID 5), and a stray PTE at 0x1_0000_0000 that no
    /// VMA covers. VMAs: [0x40_0000, 0x60_0000) and [0x80_0000, 0xA0_0000).
    func fixture() throws -> (Kernel, TaskStruct, PTELayout) {
        let k = try makeFaultKernel()
        let t = k.spawn()
        let l = k.layout
        addVMA(t, 0x40_0000, 2 << 20, [.read, .write])
        addVMA(t, 0x80_0000, 2 << 20, [.read, .write])
        let pt = t.mm.pageTable
        pt.set(pt.allocPTESlot(VirtAddr(0x40_0000))!, PTE(pfn: PFN(0x100), prot: PageProt(flags: [.present, .user, .rw], keyid: KeyID(3)), layout: l))
        pt.set(pt.allocPTESlot(VirtAddr(0x40_2000))!, PTE(raw: PTE(pfn: PFN(0x101), prot: PageProt(flags: [.user]), layout: l).raw | PTEFlags.protNone.rawValue))
        pt.set(pt.allocPTESlot(VirtAddr(0x40_3000))!, SwapEntry(type: 0, offset: 7).pte)
        pt.set(pt.allocPMDSlot(VirtAddr(0x80_0000)), PTE(hugePFN: PFN(0x200), prot: PageProt(flags: [.present, .user], keyid: KeyID(5)), layout: l))
        pt.set(pt.allocPTESlot(VirtAddr(0x1_0000_0000))!, PTE(pfn: PFN(0x300), prot: PageProt(flags: [.present, .user]), layout: l))
        return (k, t, l)
    }

    @Test func mappedEntriesInOrderWithTheirVMA() throws {
        let (_, t, _) = try fixture()
        var seen: [(UInt64, UInt64, UInt16, Bool, Bool, UInt64?)] = []
        PageWalk.forEachEntry(in: t.mm, vmas: t.mm.allVMAs) { e, vma in
            seen.append((e.address.rawValue, e.pfn.rawValue, e.keyid.rawValue, e.isHuge, e.isPresent, vma?.vmStart.rawValue))
        }
        #expect(seen.map(\.0) == [0x40_0000, 0x40_2000, 0x80_0000, 0x1_0000_0000])   // the swap entry is not mapped
        #expect(seen.map(\.1) == [0x100, 0x101, 0x200, 0x300])
        #expect(seen.map(\.2) == [3, 0, 5, 0])
        #expect(seen.map(\.3) == [false, false, true, false])
        #expect(seen.map(\.4) == [true, false, true, true])                           // PROT_NONE maps a frame, not present
        #expect(seen.map(\.5) == [0x40_0000, 0x40_0000, 0x80_0000, nil])             // the stray entry has no VMA
    }

    @Test func visitFilterHolesAndStop() throws {
        let (_, t, _) = try fixture()
        let vma = try #require(t.mm.vma(containing: VirtAddr(0x40_0000)))
        var nonNone: [UInt64] = []
        PageWalk.forEachEntry(of: vma, in: t.mm, visit: .nonNone) { nonNone.append($0.address.rawValue) }
        #expect(nonNone == [0x40_0000, 0x40_2000, 0x40_3000])
        var all = 0, swap = 0
        PageWalk.forEachEntry(of: vma, in: t.mm, to: VirtAddr(0x40_8000), visit: .all) { e in
            all += 1
            if e.isSwap { swap += 1 }
        }
        #expect(all == 8 && swap == 1)                                                  // none entries of the table too
        // Holes: the second VMA's range above its huge PMD has no table at all.
        var holes: [(UInt64, UInt64)] = []
        PageWalk.walk(of: vma, in: t.mm, from: VirtAddr(0x40_0000), to: VirtAddr(0x60_0000),
                      hole: { s, e, _ in holes.append((s.rawValue, e.rawValue)); return .proceed }) { _, _ in .proceed }
        #expect(holes.isEmpty)                                                          // one PTE table covers it
        var bigHoles: [(UInt64, UInt64)] = []
        PageWalk.walkTables(t.mm, VirtAddr(0x60_0000), VirtAddr(0x80_0000), visit: .mapped,
                            hole: { s, e in bigHoles.append((s.rawValue, e.rawValue)); return .proceed }) { _ in .proceed }
        #expect(bigHoles.count == 1 && bigHoles[0] == (0x60_0000, 0x80_0000))
        // A callback's .stop ends the walk.
        var calls = 0
        let done = PageWalk.walk(of: vma, in: t.mm, visit: .all) { _, _ in calls += 1; return calls == 2 ? .stop : .proceed }
        #expect(!done && calls == 2)
    }

    @Test func rangeStartingInsideAHugeEntryReportsItOnce() throws {
        let (_, t, _) = try fixture()
        var got: [PageWalkEntry] = []
        PageWalk.forEachEntry(in: t.mm, from: VirtAddr(0x80_3000), to: VirtAddr(0x80_5000)) { got.append($0) }
        #expect(got.count == 1)
        #expect(got.first?.address == VirtAddr(0x80_0000) && got.first?.isHuge == true)
        #expect(got.first?.pfn(at: VirtAddr(0x80_3000)) == PFN(0x203))
        #expect(got.first?.pages == 512 && got.first?.end == VirtAddr(0xA0_0000))
    }

    @Test func singleLookup() throws {
        let (_, t, _) = try fixture()
        #expect(PageWalk.entry(in: t.mm, at: VirtAddr(0x40_0123))?.pfn == PFN(0x100))
        #expect(PageWalk.entry(in: t.mm, at: VirtAddr(0x40_1000)) == nil)             // a none PTE
        #expect(PageWalk.entry(in: t.mm, at: VirtAddr(0x40_3000))?.isSwap == true)
        #expect(PageWalk.entry(in: t.mm, at: VirtAddr(0x81_0000))?.pfn(at: VirtAddr(0x81_0000)) == PFN(0x210))
        #expect(PageWalk.entry(in: t.mm, at: VirtAddr(0x7000_0000)) == nil)
    }

    @Test func theWalkChangesNothing() throws {
        let (k, t, _) = try fixture()
        let before = k.machine.clock.cycles
        let tlb = (t.mm.pageTable.tlb.hits, t.mm.pageTable.tlb.misses)
        let tables = t.mm.pageTable.tableCount
        PageWalk.forEachEntry(in: t.mm, vmas: t.mm.allVMAs) { _, _ in }
        #expect(k.machine.clock.cycles == before)
        #expect(t.mm.pageTable.tlb.hits == tlb.0 && t.mm.pageTable.tlb.misses == tlb.1)
        #expect(t.mm.pageTable.tableCount == tables)
    }
}
