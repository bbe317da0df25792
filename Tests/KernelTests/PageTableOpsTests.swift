// Range operations on page tables: mprotect keeping per-PTE KeyID bits (docs/sources.md, seed 003's vvar
// page), TLB flush/shootdown counting and stale-translation safety, mremap moving entries,
// migration keeping the KeyID, smaps counters, freeing everything at exit.
import Testing
import KeyMMBase
import KeyMMHardware
@testable import KeyMMKernel

final class NoFaultOps: VMOperations {}

@Suite struct PageTableOpsTests {
    func vvarSetup(bugs: InjectedBugs = [], extraPages: UInt64 = 0) throws -> (Kernel, TaskStruct, VMA) {
        let k = try makeFaultKernel(bugs: bugs)
        let t = k.spawn()
        var frames: [PFN] = []
        for i in 0..<3 {
            let keyid: KeyID = i == 1 ? .tme : KeyID(2)
            let p = try #require(k.allocator.allocPages(order: .base, keyid: keyid, gfp: [.zero]))
            k.machine.write(p.physAddr, keyid: keyid, bytes: Array("page\(i)".utf8))
            frames.append(p)
        }
        // Installed at pgoff 0, as _install_special_mapping() does (the fault indexes vmf->pgoff).
        let vma = addVMA(t, testBase, (3 + extraPages) << 12, [.read, .pfnMap, .io], keyid: KeyID(2), pgoff: 0)
        // vvar-like: page 1 is "decrypted" (KeyID 0) among pages with the VMA's KeyID 2.
        vma.vmOps = MixedEncryptionMapping(pages: frames.enumerated().map { ($0.element, $0.offset == 1 ? KeyID.tme : KeyID(2)) })
        for i in 0..<3 { #expect(k.readForTest(t, testBase + UInt64(i) << 12, 5) == Array("page\(i)".utf8)) }
        return (k, t, vma)
    }

    @Test func specialMappingBeyondItsPagesIsSIGBUS() throws {
        let (k, t, _) = try vvarSetup(extraPages: 1)
        #expect(k.memRead(t, VirtAddr(testBase + (3 << 12)), 1) == .signal(.sigbus))
        // A vm_ops without a fault hook and without a file cannot fill anything either.
        let other = addVMA(t, testBase + (1 << 30), 4096, [.read, .pfnMap])
        other.vmOps = NoFaultOps()
        #expect(k.memRead(t, other.vmStart, 1) == .signal(.sigbus))
    }

    @Test func mprotectKeepsEachPTEsKeyID() throws {
        let (k, t, vma) = try vvarSetup()
        #expect(k.entryForTest(t, testBase + 4096)?.keyid(k.layout) == .tme)
        #expect(k.entryForTest(t, testBase)?.keyid(k.layout) == KeyID(2))
        // mprotect(PROT_READ|PROT_EXEC): vm_page_prot (KeyID 2) is applied to every PTE.
        vma.vmFlags.insert(.exec)
        vma.vmPageProt = PageProt(vmFlags: vma.vmFlags, keyid: KeyID(2))
        k.changeProtection(t.mm, vma, vma.vmStart, vma.vmEnd, vma.vmPageProt)
        let e1 = try #require(k.entryForTest(t, testBase + 4096))
        #expect(e1.keyid(k.layout) == .tme)
        #expect(!e1.flags.contains(.nx))
        #expect(e1.isSpecial)
        #expect(k.entryForTest(t, testBase)?.keyid(k.layout) == KeyID(2))
        for i in 0..<3 { #expect(k.readForTest(t, testBase + UInt64(i) << 12, 5) == Array("page\(i)".utf8)) }
    }

    @Test func preFixMprotectLosesTheDecryptedPage() throws {
        let (k, t, vma) = try vvarSetup(bugs: .mprotectDropsKeyID)
        vma.vmFlags.insert(.exec)
        vma.vmPageProt = PageProt(vmFlags: vma.vmFlags, keyid: KeyID(2))
        k.changeProtection(t.mm, vma, vma.vmStart, vma.vmEnd, vma.vmPageProt)
        #expect(k.entryForTest(t, testBase + 4096)?.keyid(k.layout) == KeyID(2))
        #expect(k.readForTest(t, testBase + 4096, 5) != Array("page1".utf8))
    }

    @Test func mprotectOfAnonymousMemoryKeepsKeyIDAndData() throws {
        let k = try makeFaultKernel()
        let t = k.spawn()
        let vma = addVMA(t, testBase, 4 << 12, [.read, .write], keyid: KeyID(4))
        _ = k.memWrite(t, VirtAddr(testBase), [1, 2, 3])
        vma.vmFlags = vma.vmFlags.subtracting(.write)
        vma.vmPageProt = PageProt(vmFlags: vma.vmFlags, keyid: KeyID(4))
        k.changeProtection(t.mm, vma, vma.vmStart, vma.vmEnd, vma.vmPageProt)
        #expect(k.memWrite(t, VirtAddr(testBase), [9]) == .signal(.sigsegv(.accErr)))
        #expect(k.readForTest(t, testBase, 3) == [1, 2, 3])
        // PROT_NONE keeps the frame (and KeyID) in a non-present entry.
        vma.vmFlags = vma.vmFlags.subtracting(.read)
        vma.vmPageProt = PageProt(vmFlags: vma.vmFlags, keyid: KeyID(4))
        k.changeProtection(t.mm, vma, vma.vmStart, vma.vmEnd, vma.vmPageProt)
        let e = try #require(k.entryForTest(t, testBase))
        #expect(e.isProtNone && e.keyid(k.layout) == KeyID(4))
        #expect(k.memRead(t, VirtAddr(testBase), 1) == .signal(.sigsegv(.accErr)))
        #expect(k.virtToPhys(t, VirtAddr(testBase)) != nil)
        vma.vmFlags.insert([.read, .write])
        vma.vmPageProt = PageProt(vmFlags: vma.vmFlags, keyid: KeyID(4))
        k.changeProtection(t.mm, vma, vma.vmStart, vma.vmEnd, vma.vmPageProt)
        #expect(k.readForTest(t, testBase, 3) == [1, 2, 3])
        #expect(k.memWrite(t, VirtAddr(testBase), [7]) == .ok(1))
    }

    @Test func tlbFlushesAndShootdownsAreCounted() throws {
        let k = try makeFaultKernel()
        let t = k.spawn()
        t.mm.pageTable.tlb.cpus = 2
        let vma = addVMA(t, testBase, 8 << 12, [.read, .write])
        let clock = k.machine.clock
        let f0 = clock.count(of: .tlbFlush), s0 = clock.count(of: .tlbShootdown)
        _ = k.memWrite(t, VirtAddr(testBase), [1])                    // first touch: no flush
        #expect(clock.count(of: .tlbFlush) == f0)
        // mprotect reducing rights: one flush and one shootdown for the range.
        vma.vmFlags.remove(.write)
        vma.vmPageProt = PageProt(vmFlags: vma.vmFlags)
        k.changeProtection(t.mm, vma, vma.vmStart, vma.vmEnd, vma.vmPageProt)
        #expect(clock.count(of: .tlbFlush) == f0 + 1)
        #expect(clock.count(of: .tlbShootdown) == s0 + 1)
        // mprotect over pages with nothing present: no flush.
        k.changeProtection(t.mm, vma, VirtAddr(testBase + 4096), vma.vmEnd, vma.vmPageProt)
        #expect(clock.count(of: .tlbFlush) == f0 + 1)
        // munmap (zap) of a present page flushes; of an empty range does not.
        k.zapPageRange(t.mm, vma, VirtAddr(testBase + 4096), vma.vmEnd)
        #expect(clock.count(of: .tlbFlush) == f0 + 1)
        k.zapPageRange(t.mm, vma, vma.vmStart, vma.vmEnd)
        #expect(clock.count(of: .tlbFlush) == f0 + 2)
        #expect(clock.count(of: .tlbShootdown) == s0 + 2)
        // Single-CPU mm: flushes but no shootdowns.
        t.mm.pageTable.tlb.cpus = 1
        vma.vmFlags.insert(.write)
        _ = k.memWrite(t, VirtAddr(testBase), [1])
        k.zapPageRange(t.mm, vma, vma.vmStart, vma.vmEnd)
        #expect(clock.count(of: .tlbFlush) == f0 + 3)
        #expect(clock.count(of: .tlbShootdown) == s0 + 2)
    }

    @Test func noStaleTranslationAfterZapOrCOW() throws {
        let k = try makeFaultKernel()
        let t = k.spawn()
        let vma = addVMA(t, testBase, 4096, [.read, .write], keyid: KeyID(3))
        _ = k.memWrite(t, VirtAddr(testBase), Array("old!".utf8))
        #expect(k.readForTest(t, testBase, 4) == Array("old!".utf8))   // cached in the TLB now
        #expect(t.mm.pageTable.tlb.hits > 0)
        k.zapPageRange(t.mm, vma, vma.vmStart, vma.vmEnd)             // MADV_DONTNEED
        #expect(k.readForTest(t, testBase, 4) == [0, 0, 0, 0])
        // After fork the parent's cached writable translation must not survive.
        _ = k.memWrite(t, VirtAddr(testBase), Array("mine".utf8))
        let child = k.forkForTest(t)
        _ = k.memWrite(t, VirtAddr(testBase), Array("new!".utf8))
        #expect(k.readForTest(child, testBase, 4) == Array("mine".utf8))
        #expect(k.readForTest(t, testBase, 4) == Array("new!".utf8))
    }

    @Test func movePageTablesMovesEntriesAndData() throws {
        let k = try makeFaultKernel(thp: .always)
        let t = k.spawn()
        let old = addVMA(t, testBase, 4 << 20, [.read, .write], keyid: KeyID(5))
        _ = k.memWrite(t, VirtAddr(testBase + 10), [1, 2])              // huge PMD
        old.vmFlags.insert(.noHugePage)
        let dstBase = testBase + (64 << 20)
        let new = addVMA(t, dstBase, 4 << 20, old.vmFlags, keyid: KeyID(5))
        new.vmPgoff = old.vmPgoff
        // Aligned: the PMD moves whole.
        k.movePageTables(t.mm, from: old, oldStart: old.vmStart, to: new, newStart: new.vmStart, length: 4 << 20)
        #expect(k.entryForTest(t, dstBase)?.isHuge == true)
        #expect(k.entryForTest(t, testBase) == nil)
        #expect(k.readForTest(t, dstBase + 10, 2) == [1, 2])
        // Unaligned destination: the PMD is split and moved as PTEs.
        let dst2 = dstBase + (16 << 20) + 4096
        let new2 = addVMA(t, dst2, 2 << 20, old.vmFlags, keyid: KeyID(5))
        k.movePageTables(t.mm, from: new, oldStart: new.vmStart, to: new2, newStart: new2.vmStart, length: 2 << 20)
        #expect(k.entryForTest(t, dst2)?.isHuge == false)
        #expect(k.readForTest(t, dst2 + 10, 2) == [1, 2])
        #expect(k.entryForTest(t, dst2)?.keyid(k.layout) == KeyID(5))
        #expect(k.entryForTest(t, dstBase) == nil)
    }

    @Test func migrationKeepsKeyIDAndData() throws {
        let k = try makeFaultKernel(memory: .mib(64), nodes: 2)
        let t = k.spawn()
        addVMA(t, testBase, 4 << 12, [.read, .write], keyid: KeyID(6))
        _ = k.memWrite(t, VirtAddr(testBase), Array("numa".utf8))
        let pa0 = try #require(k.virtToPhys(t, VirtAddr(testBase)))
        #expect(k.allocator.node(of: pa0.pfn) == NodeID(0))
        let flushes = k.machine.clock.count(of: .tlbFlush)
        #expect(k.migrateMappedPage(t.mm, VirtAddr(testBase), to: NodeID(1), moveShared: false) == .node(NodeID(1)))
        let pa1 = try #require(k.virtToPhys(t, VirtAddr(testBase)))
        #expect(pa1 != pa0 && k.allocator.node(of: pa1.pfn) == NodeID(1))
        #expect(k.allocator.pageKeyID(pa1.pfn) == KeyID(6))
        #expect(k.entryForTest(t, testBase)?.keyid(k.layout) == KeyID(6))
        #expect(k.machine.clock.count(of: .tlbFlush) > flushes)
        #expect(k.readForTest(t, testBase, 4) == Array("numa".utf8))
        // Already there; nothing mapped; the zero page; a shared page without MOVE_ALL.
        #expect(k.migrateMappedPage(t.mm, VirtAddr(testBase), to: NodeID(1), moveShared: false) == .node(NodeID(1)))
        #expect(k.migrateMappedPage(t.mm, VirtAddr(testBase + 4096), to: NodeID(1), moveShared: false) == .error(.EFAULT))
        _ = k.readForTest(t, testBase + 8192, 1)
        #expect(k.migrateMappedPage(t.mm, VirtAddr(testBase + 8192), to: NodeID(1), moveShared: false) == .error(.EFAULT))
        let child = k.forkForTest(t)
        #expect(k.migrateMappedPage(t.mm, VirtAddr(testBase), to: NodeID(0), moveShared: false) == .error(.EACCES))
        #expect(k.migrateMappedPage(t.mm, VirtAddr(testBase), to: NodeID(0), moveShared: true) == .node(NodeID(0)))
        // Both processes follow the move (rmap walk over the shared anon_vma).
        #expect(k.virtToPhys(child, VirtAddr(testBase)) == k.virtToPhys(t, VirtAddr(testBase)))
        #expect(k.readForTest(child, testBase, 4) == Array("numa".utf8))
    }

    @Test func interleavePolicyPlacesPagesRoundRobin() throws {
        let k = try makeFaultKernel(memory: .mib(64), nodes: 2)
        let t = k.spawn()
        let vma = addVMA(t, testBase, 8 << 12, [.read, .write])
        vma.memoryPolicy = MemoryPolicy(mode: .interleave, nodes: [NodeID(0), NodeID(1)])
        _ = k.memTouch(t, VirtAddr(testBase), 8 << 12, .write)
        var nodes: [UInt8] = []
        for i in 0..<8 { nodes.append(k.allocator.node(of: k.virtToPhys(t, VirtAddr(testBase + UInt64(i) << 12))!.pfn).rawValue) }
        let first = Int(vma.vmPgoff % 2)
        #expect(nodes == (0..<8).map { UInt8(($0 + first) % 2) })
        // numa_balance moves misplaced pages to the policy's node.
        let bound = addVMA(t, testBase + (1 << 30), 4 << 12, [.read, .write])
        _ = k.memTouch(t, bound.vmStart, 4 << 12, .write)
        bound.memoryPolicy = MemoryPolicy(mode: .bind, nodes: [NodeID(1)])
        #expect(k.numaBalance() == 4)
        #expect(k.allocator.node(of: k.virtToPhys(t, bound.vmStart)!.pfn) == NodeID(1))
    }

    @Test func smapsCountersAfterFork() throws {
        let k = try makeFaultKernel()
        let t = k.spawn()
        let vma = addVMA(t, testBase, 4 << 12, [.read, .write])
        _ = k.memTouch(t, VirtAddr(testBase), 2 << 12, .write)
        _ = k.readForTest(t, testBase + (2 << 12), 1)                   // zero page: not counted
        var s = k.vmaPageStats(t.mm, vma)
        #expect(s.rss == 8192 && s.pss == 8192 && s.anonymous == 8192 && s.privateDirty == 8192)
        let child = k.forkForTest(t)
        s = k.vmaPageStats(t.mm, vma)
        #expect(s.rss == 8192 && s.pss == 4096 && s.sharedDirty == 8192 && s.privateDirty == 0)
        let cs = k.vmaPageStats(child.mm, child.mm.findVMA(vma.vmStart)!)
        #expect(cs.rss == 8192 && cs.pss == 4096)
        #expect(cs.referenced == 0)                                       // child entries start old
        vma.vmFlags.insert(.locked)
        #expect(k.vmaPageStats(t.mm, vma).locked == 4096)
    }

    @Test func freePageTablesReleasesEverything() throws {
        let k = try makeFaultKernel(thp: .always)
        let free0 = k.allocator.freeFrames
        let t = k.spawn()
        addVMA(t, testBase, 4 << 20, [.read, .write], keyid: KeyID(2))
        addVMA(t, testBase + (1 << 32), 16 << 12, [.read, .write], keyid: KeyID(3))
        _ = k.memWrite(t, VirtAddr(testBase + 77), [1])
        _ = k.memTouch(t, VirtAddr(testBase + (1 << 32)), 16 << 12, .write)
        let child = k.forkForTest(t)
        k.freePageTables(t.mm)
        #expect(t.mm.pageTable.tableCount == 1)
        #expect(k.readForTest(child, testBase + (1 << 32), 1) == [0])
        k.freePageTables(child.mm)
        // Everything back except the zero page(s) the kernel keeps.
        let kept = (k.pgtable.zeroPFN == nil ? 0 : 1) + (k.pgtable.hugeZeroPFN == nil ? 0 : 512)
        #expect(k.allocator.freeFrames == free0 - kept)
        #expect(k.allocator.anomalies.isEmpty)
    }
}
