// PTE encoding and the bare PageTable/TLB: bit positions, KeyID field, SME C-bit, pkey
// bits, pte_modify keeping _PAGE_CHG_MASK, split entries copying the source PMD's
// encryption bits, swap entries, walks and lazily allocated levels.
import Testing
import KeyMMBase
import KeyMMHardware
@testable import KeyMMKernel

@Suite struct PageTableEncodingTests {
    let mktme = PTELayout(physBits: 52, keyidBits: 6)
    let sme = PTELayout(physBits: 52, keyidBits: 0, smeCBit: 47)

    @Test func keyidSitsInBits51to46WithDefaults() {
        let prot = PageProt(flags: [.present, .rw, .user], keyid: KeyID(5))
        let pte = PTE(pfn: PFN(0x12345), prot: prot, layout: mktme)
        #expect(mktme.keyidShift == 46)
        #expect(pte.raw >> 46 & 0x3F == 5)
        #expect(pte.raw & 0xFFF == 0x7)
        #expect(pte.pfn(mktme) == PFN(0x12345))
        #expect(pte.keyid(mktme) == KeyID(5))
        // KeyID 63 fills bits 51:46 exactly and nothing above.
        let top = PTE(pfn: PFN(1), prot: PageProt(flags: [.present], keyid: KeyID(63)), layout: mktme)
        #expect(top.raw & (UInt64(0x3F) << 46) == UInt64(0x3F) << 46)
        #expect(top.raw >> 52 == 0)
        // A frame number too large for 46 bits never leaks into the KeyID field.
        let big = PTE(pfn: PFN(UInt64(1) << 34), prot: PageProt(flags: [.present]), layout: mktme)
        #expect(big.keyid(mktme) == .tme)
    }

    @Test func smeUsesOneCBit() {
        let enc = PTE(pfn: PFN(0x42), prot: PageProt(flags: [.present, .user], keyid: KeyID(1)), layout: sme)
        #expect(enc.raw & (UInt64(1) << 47) != 0)
        #expect(enc.keyid(sme) == KeyID(1))
        #expect(enc.pfn(sme) == PFN(0x42))
        let plain = PTE(pfn: PFN(0x42), prot: PageProt(flags: [.present, .user]), layout: sme)
        #expect(plain.raw & (UInt64(1) << 47) == 0)
    }

    @Test func pkeyBitsAndNX() {
        let flags = VMFlags([.read, .write]).with(pkey: 11)
        let prot = PageProt(vmFlags: flags)
        let pte = PTE(pfn: PFN(7), prot: prot, layout: mktme)
        #expect(pte.pkey == 11)
        #expect(pte.raw >> 59 & 0xF == 11)
        #expect(pte.raw & (UInt64(1) << 63) != 0)          // not VM_EXEC: NX
        #expect(!pte.isWritable)                             // private: write-protected until COW
        let shared = PageProt(vmFlags: [.read, .write, .shared, .exec])
        #expect(shared.flags.contains(.rw))
        #expect(!shared.flags.contains(.nx))
        let none = PageProt(vmFlags: [])
        #expect(!none.flags.contains(.present))
        #expect(PTE(pfn: PFN(3), prot: none, layout: mktme).isProtNone)
    }

    @Test func pteModifyKeepsKeyIDAndChangeMask() {
        let vmProt = PageProt(vmFlags: [.read, .write, .shared], keyid: KeyID(3))
        // A PTE whose KeyID differs from vm_page_prot (docs/sources.md, seed 003: vvar's decrypted page).
        var pte = PTE(pfn: PFN(0x999), prot: PageProt(flags: vmProt.flags, keyid: KeyID(9)), layout: mktme)
        pte = PTE(raw: pte.raw | PTEFlags([.dirty, .accessed, .pcd]).rawValue)
        let ro = PageProt(vmFlags: [.read, .shared], keyid: KeyID(3))
        let m = pte.modified(ro, layout: mktme)
        #expect(m.keyid(mktme) == KeyID(9))
        #expect(m.pfn(mktme) == PFN(0x999))
        #expect(!m.isWritable)
        #expect(m.flags.contains([.dirty, .accessed, .pcd]))
        // The pre-fix behaviour loses the per-PTE KeyID (what the test above guards against).
        #expect(pte.modifiedDroppingEncryption(ro, layout: mktme).keyid(mktme) == KeyID(3))
        // PROT_NONE keeps the frame.
        let n = pte.modified(PageProt(vmFlags: []), layout: mktme)
        #expect(n.isProtNone && n.pfn(mktme) == PFN(0x999) && n.keyid(mktme) == KeyID(9))
    }

    @Test func zeroPageEntryHasNoKeyID() {
        let prot = PageProt(vmFlags: [.read, .write], keyid: KeyID(17))
        let z = PTE.zeroPage(PFN(0x100), prot: prot, layout: mktme)
        #expect(z.keyid(mktme) == .tme)
        #expect(z.raw & mktme.encryptionMask == 0)
        #expect(z.isSpecial && !z.isWritable && z.isPresent)
        let zs = PTE.zeroPage(PFN(0x100), prot: prot, layout: sme)
        #expect(zs.raw & sme.encryptionMask == 0)
    }

    @Test func splitEntryCopiesEncryptionFromSourcePMD() {
        // vm_page_prot says KeyID 2, the PMD was installed with KeyID 7 and PCD (uncached).
        let vmProt = PageProt(vmFlags: [.read, .write], keyid: KeyID(2))
        var pmd = PTE(hugePFN: PFN(0x200), prot: PageProt(flags: vmProt.flags.union(.pcd), keyid: KeyID(7)), layout: mktme)
        pmd = PTE(raw: pmd.raw | PTEFlags([.rw, .dirty]).rawValue)
        #expect(pmd.isHuge && pmd.hugePFN(mktme) == PFN(0x200))
        for i in [0, 1, 255, 511] {
            let e = pmd.splitEntry(index: i, vmPageProt: vmProt, layout: mktme)
            #expect(e.pfn(mktme) == PFN(0x200 + UInt64(i)))
            #expect(e.keyid(mktme) == KeyID(7))
            #expect(e.flags.contains([.pcd, .rw, .dirty, .present, .user, .nx]))
            #expect(!e.flags.contains(.pse))
        }
        // What the seed says the old code did: take them from vm_page_prot.
        let old = pmd.splitEntryFromVMAProt(index: 3, vmPageProt: vmProt, layout: mktme)
        #expect(old.keyid(mktme) == KeyID(2))
        #expect(!old.flags.contains(.pcd))
        // SME: the C-bit is copied too.
        let smePMD = PTE(hugePFN: PFN(0x400), prot: PageProt(flags: [.present, .user], keyid: KeyID(1)), layout: sme)
        #expect(smePMD.splitEntry(index: 5, vmPageProt: PageProt(flags: [.present, .user]), layout: sme).keyid(sme) == KeyID(1))
    }

    @Test func hugePATMovesBetweenBit7And12() {
        let pmd = PTE(raw: PTE(hugePFN: PFN(0x200), prot: PageProt(flags: [.present]), layout: mktme).raw | PTEFlags.patLarge.rawValue)
        #expect(pmd.hugePFN(mktme) == PFN(0x200))
        let e = pmd.splitEntry(index: 1, vmPageProt: PageProt(flags: [.present]), layout: mktme)
        #expect(e.raw & (1 << 7) != 0)            // PAT in a 4 KiB entry
        #expect(e.pfn(mktme) == PFN(0x201))
    }

    @Test func swapEntriesRoundTripAndDifferFromProtNone() {
        let s = SwapEntry(type: 3, offset: 0x12345)
        let pte = s.pte
        #expect(!pte.isPresent && !pte.isProtNone && pte.isSwap)
        #expect(SwapEntry(pte) == s)
        #expect(SwapEntry(PTE.none) == nil)
    }
}

@Suite struct PageTableWalkTests {
    let layout = PTELayout(physBits: 52, keyidBits: 6)

    @Test func lazilyAllocatesLevelsAndWalks() {
        let pt = PageTable(layout: layout)
        #expect(pt.tableCount == 1)
        let va = VirtAddr(0x7f12_3456_7000)
        #expect(pt.walk(va) == .none)
        guard let slot = pt.allocPTESlot(va) else { Issue.record("no slot"); return }
        #expect(pt.tableCount == 4)                           // PGD + PUD + PMD + PTE
        let pte = PTE(pfn: PFN(42), prot: PageProt(flags: [.present, .user], keyid: KeyID(4)), layout: layout)
        pt.set(slot, pte)
        #expect(pt.pteSlot(va) == slot)
        #expect(pt[slot] == pte)
        // A neighbour in the same 2 MiB shares the PTE table.
        _ = pt.allocPTESlot(va.advanced(by: 4096))
        #expect(pt.tableCount == 4)
        // Far away: new PUD/PMD/PTE tables.
        _ = pt.allocPTESlot(VirtAddr(0x1000))
        #expect(pt.tableCount == 7)
        // Clearing and freeing empty tables releases them.
        pt.set(slot, .none)
        pt.freeEmptyTables(va.pageDown, va.advanced(by: 8192))
        // PTE, PMD and PUD tables of that 512 GiB region are empty now: all freed.
        #expect(pt.tableCount == 4)
        #expect(pt.walk(va) == .none)
        #expect(pt.walk(VirtAddr(0x1000)) != .none)
    }

    @Test func freeEmptyTablesReleasesOnlyEmptyOnes() {
        let pt = PageTable(layout: layout)
        let a = VirtAddr(0x4000_0000)
        let b = VirtAddr(0x4000_0000 + (4 << 20))
        let sa = pt.allocPTESlot(a)!, sb = pt.allocPTESlot(b)!
        pt.set(sa, PTE(pfn: PFN(1), prot: PageProt(flags: [.present]), layout: layout))
        pt.set(sb, PTE(pfn: PFN(2), prot: PageProt(flags: [.present]), layout: layout))
        #expect(pt.tableCount == 5)
        pt.set(sa, .none)
        pt.freeEmptyTables(a, a.advanced(by: pmdSize))
        #expect(pt.tableCount == 4)
        #expect(pt.walk(a) == .none)
        #expect(pt.pteSlot(b) == sb)
        pt.set(sb, .none)
        pt.freeEmptyTables(VirtAddr(0), VirtAddr(1 << 40))
        #expect(pt.tableCount == 1)
    }

    @Test func hugePMDWalk() {
        let pt = PageTable(layout: layout)
        let va = VirtAddr(0x20_0000)
        let ps = pt.allocPMDSlot(va)
        pt.set(ps, PTE(hugePFN: PFN(0x400), prot: PageProt(flags: [.present, .user]), layout: layout))
        #expect(pt.walk(va.advanced(by: 0x1234)) == .huge(pmdSlot: ps))
        #expect(pt.allocPTESlot(va) == nil)
    }

    @Test func poolGrowsKeepingEntries() {
        let pt = PageTable(layout: layout)
        var slots: [(VirtAddr, Int)] = []
        for i in 0..<100 {
            let va = VirtAddr(UInt64(i) << 21)
            let s = pt.allocPTESlot(va)!
            pt.set(s, PTE(pfn: PFN(UInt64(i + 1)), prot: PageProt(flags: [.present]), layout: layout))
            slots.append((va, s))
        }
        for (i, (va, s)) in slots.enumerated() {
            #expect(pt.pteSlot(va) == s)
            #expect(pt[s].pfn(layout) == PFN(UInt64(i + 1)))
        }
    }

    @Test func tlbCachesUntilFlushedAndCountsShootdowns() {
        let tlb = TLB()
        tlb.fill(vpn: 5, entry: 0xAB)
        #expect(tlb.lookup(vpn: 5) == 0xAB)
        #expect(tlb.lookup(vpn: 5 + UInt64(TLB.entries)) == nil)   // same set, other tag
        tlb.flush(VirtAddr(5 << 12), VirtAddr(6 << 12))
        #expect(tlb.lookup(vpn: 5) == nil)
        #expect(tlb.flushes == 1 && tlb.shootdowns == 0)
        tlb.cpus = 2
        tlb.fill(vpn: 9, entry: 1)
        tlb.flushAll()
        #expect(tlb.lookup(vpn: 9) == nil)
        #expect(tlb.flushes == 2 && tlb.shootdowns == 1)
    }
}
