// Transparent huge pages: the PMD fault per thp mode, the huge zero page, splitting when
// mprotect/munmap cut a huge PMD (data kept, encryption bits copied from the source PMD,
// or from vm_page_prot with the pre-fix behaviour), khugepaged and MADV_COLLAPSE
// (KeyID applied after a KeyID-0 allocation), fork of a THP.
import Testing
import KeyMMBase
import KeyMMHardware
@testable import KeyMMKernel

@Suite struct THPTests {
    let huge = testBase                                  // 2 MiB aligned

    @Test func faultMapsHugePMDPerMode() throws {
        for (mode, flags, expectHuge) in [(THPMode.always, VMFlags([.read, .write]), true),
                                          (.madvise, [.read, .write], false),
                                          (.madvise, [.read, .write, .hugePage], true),
                                          (.always, [.read, .write, .noHugePage], false),
                                          (.never, [.read, .write, .hugePage], false)] {
            let k = try makeFaultKernel(thp: mode)
            let t = k.spawn()
            addVMA(t, huge, 4 << 20, flags, keyid: KeyID(4))
            #expect(k.memWrite(t, VirtAddr(huge + 5000), [1, 2, 3]) == .ok(3))
            let e = try #require(k.entryForTest(t, huge + 5000))
            #expect(e.isHuge == expectHuge, "thp=\(mode) flags=\(flags)")
            #expect(e.keyid(k.layout) == KeyID(4))
            if expectHuge {
                let head = e.hugePFN(k.layout)
                #expect(k.allocator.compoundOrder(head) == .pmd)
                #expect(k.allocator.pageKeyID(head.advanced(by: 511)) == KeyID(4))
                #expect(k.vmaPageStats(t.mm, t.mm.findVMA(VirtAddr(huge))!).anonHuge == 2 << 20)
            }
            #expect(k.readForTest(t, huge + 5000, 3) == [1, 2, 3])
        }
    }

    @Test func unalignedOrTooSmallVMAsGetBasePages() throws {
        let k = try makeFaultKernel(thp: .always)
        let t = k.spawn()
        addVMA(t, huge + 4096, 2 << 20, [.read, .write])      // covers no whole aligned 2 MiB
        #expect(k.memWrite(t, VirtAddr(huge + 8192), [1]) == .ok(1))
        #expect(k.entryForTest(t, huge + 8192)?.isHuge == false)
    }

    @Test func writeToHugeZeroPageAllocatesATHP() throws {
        let k = try makeFaultKernel(thp: .always)
        let t = k.spawn()
        let vma = addVMA(t, huge, 2 << 20, [.read, .write], keyid: KeyID(2))
        #expect(k.readForTest(t, huge + 123, 2) == [0, 0])
        let e = try #require(k.entryForTest(t, huge))
        #expect(e.isHuge && e.isSpecial && e.keyid(k.layout) == .tme)
        #expect(e.hugePFN(k.layout) == k.pgtable.hugeZeroPFN)
        #expect(vma.anonVMA != nil)                               // vmf_anon_prepare on a read
        // do_huge_zero_wp_pmd (Linux 6.13+): the write replaces the huge zero PMD by a THP.
        #expect(k.memWrite(t, VirtAddr(huge + 4096), [9]) == .ok(1))
        let w = try #require(k.entryForTest(t, huge))
        #expect(w.isHuge && !w.isSpecial && w.isWritable && w.keyid(k.layout) == KeyID(2))
        #expect(k.readForTest(t, huge + 4096, 2) == [9, 0])
        #expect(k.readForTest(t, huge + 123, 2) == [0, 0])
        #expect(k.pgtable.thpSplitPMD == 0)
    }

    @Test func writeToHugeZeroPageSplitsWhenNoTHPCanBeAllocated() throws {
        let k = try makeFaultKernel(thp: .always)
        let t = k.spawn()
        addVMA(t, huge, 2 << 20, [.read, .write], keyid: KeyID(2))
        #expect(k.readForTest(t, huge + 123, 2) == [0, 0])
        #expect(k.entryForTest(t, huge)?.isSpecial == true)
        // Take every free frame (unmovable: compaction cannot help), then give two back.
        var held: [PFN] = []
        while let p = k.allocator.allocPages(order: .base, keyid: .tme, gfp: []) { held.append(p) }
        k.allocator.putPage(held.removeLast())
        k.allocator.putPage(held.removeLast())
        #expect(k.memWrite(t, VirtAddr(huge + 4096), [9]) == .ok(1))
        #expect(k.pgtable.thpFaultFallback == 1)
        #expect(k.pgtable.thpSplitPMD == 1)
        let w = try #require(k.entryForTest(t, huge + 4096))
        #expect(!w.isHuge && !w.isSpecial && w.keyid(k.layout) == KeyID(2))
        #expect(k.entryForTest(t, huge)?.pfn(k.layout) == k.pgtable.zeroPFN)
        #expect(k.readForTest(t, huge + 4096, 2) == [9, 0])
        for p in held { k.allocator.putPage(p) }
    }

    @Test func readFaultMapsHugeZeroPageThenWriteSplitsTo4K() throws {
        let k = try makeFaultKernel(thp: .always)
        let t = k.spawn()
        let vma = addVMA(t, huge, 2 << 20, [.read, .write], keyid: KeyID(2))
        #expect(k.readForTest(t, huge + 123, 2) == [0, 0])
        // The THP setting changes before the write (no longer eligible): split, 4 KiB COW.
        vma.vmFlags.insert(.noHugePage)
        #expect(k.memWrite(t, VirtAddr(huge + 4096), [9]) == .ok(1))
        // The huge zero PMD was split: the written page is a real page, the rest the 4K zero page.
        let w = try #require(k.entryForTest(t, huge + 4096))
        #expect(!w.isHuge && !w.isSpecial && w.keyid(k.layout) == KeyID(2))
        let other = try #require(k.entryForTest(t, huge))
        #expect(other.isSpecial && other.pfn(k.layout) == k.pgtable.zeroPFN)
        #expect(k.readForTest(t, huge + 4096, 1) == [9])
    }

    @Test func mprotectSplitKeepsDataAndPerPageState() throws {
        let k = try makeFaultKernel(thp: .always)
        let t = k.spawn()
        let vma = addVMA(t, huge, 2 << 20, [.read, .write], keyid: KeyID(5))
        let pattern = (0..<64).map { UInt8($0) }
        for i in stride(from: 0, to: 512, by: 37) {
            #expect(k.memWrite(t, VirtAddr(huge + UInt64(i) << 12), pattern + [UInt8(i & 0xFF)]) == .ok(65))
        }
        let head = try #require(k.entryForTest(t, huge)).hugePFN(k.layout)
        let flushes = k.machine.clock.count(of: .tlbFlush)
        // mprotect the middle page read-only: the PMD is cut, split into 512 PTEs.
        let mid = VirtAddr(huge + (100 << 12))
        k.changeProtection(t.mm, vma, mid, mid.advanced(by: 4096), PageProt(vmFlags: [.read], keyid: KeyID(5)))
        #expect(k.pgtable.thpSplitPMD == 1)
        #expect(k.machine.clock.count(of: .tlbFlush) > flushes)
        for i in stride(from: 0, to: 512, by: 37) {
            let e = try #require(k.entryForTest(t, huge + UInt64(i) << 12))
            #expect(!e.isHuge)
            #expect(e.pfn(k.layout) == head.advanced(by: i))
            #expect(e.keyid(k.layout) == KeyID(5))
            #expect(k.allocator.mapcount(e.pfn(k.layout)) == 1)
            #expect(k.allocator.refcount(e.pfn(k.layout)) == 1)
            #expect(k.readForTest(t, huge + UInt64(i) << 12, 65) == pattern + [UInt8(i & 0xFF)])
        }
        #expect(k.entryForTest(t, mid.rawValue)?.isWritable == false)
        #expect(k.entryForTest(t, huge)?.isWritable == true)
        #expect(k.allocator.compoundOrder(head) == .base)                // the folio was split too
        // Unmapping the rest frees the pages one by one.
        let free = k.allocator.freeFrames
        k.zapPageRange(t.mm, vma, vma.vmStart, vma.vmEnd)
        #expect(k.allocator.freeFrames == free + 512)
    }

    @Test func splitCopiesEncryptionFromTheSourcePMDNotVMProt() throws {
        for preFix in [false, true] {
            let k = try makeFaultKernel(thp: .always, bugs: preFix ? .splitFromVMPageProt : [])
            let t = k.spawn()
            let vma = addVMA(t, huge, 2 << 20, [.read, .write], keyid: KeyID(3))
            #expect(k.memWrite(t, VirtAddr(huge), Array("huge".utf8)) == .ok(4))
            // The PMD's KeyID (3) differs from what vm_page_prot says from now on (1), as a
            // vvar-like mapping's entries may (docs/sources.md, seed 003).
            vma.vmPageProt = PageProt(vmFlags: vma.vmFlags, keyid: KeyID(1))
            k.splitHugePMD(t.mm, vma, at: VirtAddr(huge + 4096))
            let e = try #require(k.entryForTest(t, huge))
            #expect(!e.isHuge)
            if preFix {
                #expect(e.keyid(k.layout) == KeyID(1))
                #expect(k.readForTest(t, huge, 4) != Array("huge".utf8))   // wrong key: garbage
            } else {
                #expect(e.keyid(k.layout) == KeyID(3))
                #expect(k.readForTest(t, huge, 4) == Array("huge".utf8))
            }
        }
    }

    @Test func munmapOfPartOfAHugePageSplitsIt() throws {
        let k = try makeFaultKernel(thp: .always)
        let t = k.spawn()
        let vma = addVMA(t, huge, 4 << 20, [.read, .write])
        #expect(k.memWrite(t, VirtAddr(huge + (2 << 20) - 1), [1, 2]) == .ok(2))   // both PMDs
        let free = k.allocator.freeFrames
        k.zapPageRange(t.mm, vma, VirtAddr(huge + (1 << 20)), VirtAddr(huge + (3 << 20)))
        #expect(k.allocator.freeFrames == free + 512)
        #expect(k.entryForTest(t, huge)?.isHuge == false)
        #expect(k.entryForTest(t, huge + (1 << 20)) == nil)
        #expect(k.readForTest(t, huge + (2 << 20) + (1 << 20) - 4096 + 1, 1) == [0])
        #expect(k.pgtable.thpSplitPMD == 2)
        // Whole PMDs inside the range are dropped without splitting.
        let k2 = try makeFaultKernel(thp: .always)
        let t2 = k2.spawn()
        let v2 = addVMA(t2, huge, 4 << 20, [.read, .write])
        _ = k2.memWrite(t2, VirtAddr(huge), [1])
        k2.zapPageRange(t2.mm, v2, v2.vmStart, v2.vmEnd)
        #expect(k2.pgtable.thpSplitPMD == 0)
        #expect(k2.entryForTest(t2, huge) == nil)
    }

    @Test func khugepagedCollapsesWithVMAKeyID() throws {
        let k = try makeFaultKernel(thp: .madvise)
        let t = k.spawn()
        let vma = addVMA(t, huge, 2 << 20, [.read, .write], keyid: KeyID(7))
        for i in [0, 10, 300, 511] {
            #expect(k.memWrite(t, VirtAddr(huge + UInt64(i) << 12 + 1), [UInt8(i & 0xFF), 0xEE]) == .ok(2))
        }
        #expect(k.entryForTest(t, huge)?.isHuge == false)
        #expect(k.khugepagedScan() == 0)                             // madvise mode, no VM_HUGEPAGE
        vma.vmFlags.insert(.hugePage)
        let used = k.allocator.freeFrames
        #expect(k.khugepagedScan() == 1)
        let e = try #require(k.entryForTest(t, huge))
        #expect(e.isHuge && e.keyid(k.layout) == KeyID(7))
        let head = e.hugePFN(k.layout)
        #expect(k.allocator.pageKeyID(head) == KeyID(7))
        #expect(k.allocator.pageKeyID(head.advanced(by: 200)) == KeyID(7))
        for i in [0, 10, 300, 511] {
            #expect(k.readForTest(t, huge + UInt64(i) << 12 + 1, 2) == [UInt8(i & 0xFF), 0xEE])
        }
        #expect(k.readForTest(t, huge + (5 << 12), 4) == [0, 0, 0, 0])
        #expect(k.allocator.freeFrames == used - 512 + 4)               // four 4 KiB pages freed
        #expect(k.pgtable.thpCollapseAlloc == 1)
    }

    @Test func khugepagedRespectsItsLimits() throws {
        let k = try makeFaultKernel(thp: .always)
        let t = k.spawn()
        let vma = addVMA(t, huge, 2 << 20, [.read, .write, .noHugePage])
        _ = k.memWrite(t, VirtAddr(huge), [1])
        vma.vmFlags.remove(.noHugePage)
        // Only zero-page entries: max_ptes_none exceeded (all 512 "none").
        let t2 = k.spawn()
        addVMA(t2, huge, 2 << 20, [.read, .write, .noHugePage])
        _ = k.readForTest(t2, huge, 1)
        t2.mm.findVMA(VirtAddr(huge))!.vmFlags.remove(.noHugePage)
        #expect(k.khugepagedScan() == 1)                               // t collapses, t2 does not
        #expect(k.entryForTest(t, huge)?.isHuge == true)
        #expect(k.entryForTest(t2, huge)?.isHuge == false)
        // A pinned page blocks the collapse; MADV_COLLAPSE reports EAGAIN.
        let t3 = k.spawn()
        let v3 = addVMA(t3, huge, 2 << 20, [.read, .write, .noHugePage])
        _ = k.memWrite(t3, VirtAddr(huge), [1])
        let p = try #require(k.entryForTest(t3, huge)).pfn(k.layout)
        k.allocator.getPage(p)
        k.allocator.setFlags(p, .pinned)
        v3.vmFlags.remove(.noHugePage)
        #expect(k.collapseHugePages(t3.mm, v3, v3.vmStart, v3.vmEnd) == .EAGAIN)
        #expect(k.entryForTest(t3, huge)?.isHuge == false)
    }

    @Test func madviseCollapseIgnoresModeAndNoneLimit() throws {
        let k = try makeFaultKernel(thp: .never)
        let t = k.spawn()
        let vma = addVMA(t, huge, 4 << 20, [.read, .write], keyid: KeyID(2))
        _ = k.memWrite(t, VirtAddr(huge + 4096), [4, 2])
        _ = k.memWrite(t, VirtAddr(huge + (2 << 20)), [1])
        #expect(k.collapseHugePages(t.mm, vma, vma.vmStart, vma.vmEnd) == nil)
        #expect(k.entryForTest(t, huge)?.isHuge == true)
        #expect(k.entryForTest(t, huge + (2 << 20))?.isHuge == true)
        #expect(k.readForTest(t, huge + 4096, 2) == [4, 2])
        // Range smaller than a huge page: nothing to do, success.
        #expect(k.collapseHugePages(t.mm, vma, vma.vmStart, vma.vmStart.advanced(by: 4096)) == nil)
        vma.vmFlags.insert(.noHugePage)
        #expect(k.collapseHugePages(t.mm, vma, vma.vmStart, vma.vmEnd) == .EINVAL)
    }

    @Test func forkOfATHPKeepsBothSidesCorrect() throws {
        let k = try makeFaultKernel(thp: .always)
        let parent = k.spawn()
        addVMA(parent, huge, 2 << 20, [.read, .write], keyid: KeyID(6))
        _ = k.memWrite(parent, VirtAddr(huge + 12345), Array("thp".utf8))
        let child = k.forkForTest(parent)
        #expect(k.readForTest(child, huge + 12345, 3) == Array("thp".utf8))
        _ = k.memWrite(child, VirtAddr(huge + 12345), Array("kid".utf8))
        #expect(k.readForTest(parent, huge + 12345, 3) == Array("thp".utf8))
        #expect(k.readForTest(child, huge + 12345, 3) == Array("kid".utf8))
        #expect(k.entryForTest(child, huge + 12345)?.keyid(k.layout) == KeyID(6))
    }

    @Test func hugeFaultCompactsAroundMappedPagesAndRemapsThem() throws {
        let k = try makeFaultKernel(memory: .mib(16), thp: .always)
        let t = k.spawn()
        // Fill memory with mapped 4 KiB pages, then free every other one: no free 2 MiB block.
        let n = UInt64(k.allocator.freeFrames - 8)
        let small = addVMA(t, testBase, n << 12, [.read, .write, .noHugePage])
        for i in 0..<n { _ = k.memWrite(t, VirtAddr(testBase + i << 12), [UInt8(truncatingIfNeeded: i), 0xA5]) }
        for i in stride(from: 0, to: n, by: 2) {
            k.zapPageRange(t.mm, small, VirtAddr(testBase + i << 12), VirtAddr(testBase + (i + 1) << 12))
        }
        #expect(k.allocator.freeBlocks(order: .pmd) == 0)
        // Without VM_HUGEPAGE (GFP_TRANSHUGE_LIGHT: no compaction) the fault falls back.
        let light = addVMA(t, testBase + (1 << 32), 2 << 20, [.read, .write])
        _ = k.memWrite(t, light.vmStart, [1])
        #expect(k.entryForTest(t, light.vmStart.rawValue)?.isHuge == false)
        #expect(k.pgtable.thpFaultFallback == 1)
        // With VM_HUGEPAGE the allocator compacts: mapped pages move, their PTEs follow.
        let hugeVMA = addVMA(t, testBase + (2 << 32), 2 << 20, [.read, .write, .hugePage], keyid: KeyID(3))
        _ = k.memWrite(t, hugeVMA.vmStart, [2])
        #expect(k.entryForTest(t, hugeVMA.vmStart.rawValue)?.isHuge == true)
        #expect(k.machine.clock.value(of: .migratedPages) > 0)
        for i in stride(from: 1, to: n, by: 2) {
            #expect(k.readForTest(t, testBase + i << 12, 2) == [UInt8(truncatingIfNeeded: i), 0xA5])
        }
        #expect(k.allocator.anomalies.isEmpty)
    }
}
