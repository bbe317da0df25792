// Fault paths: zero page (never encrypted), anonymous write faults with the VMA's KeyID,
// COW after fork (data and KeyIDs kept, reuse when exclusive), file private COW vs shared
// write-back, SIGBUS beyond EOF, SIGSEGV codes (maperr/accerr/pkuerr), populate, memTouch.
import Testing
import KeyMMBase
import KeyMMHardware
@testable import KeyMMKernel

@Suite struct FaultTests {
    @Test func anonymousReadMapsZeroPageWithoutKeyID() throws {
        let k = try makeFaultKernel()
        let t = k.spawn()
        addVMA(t, testBase, 16 << 12, [.read, .write], keyid: KeyID(5))
        #expect(k.readForTest(t, testBase + 100, 8) == [UInt8](repeating: 0, count: 8))
        let pte = try #require(k.entryForTest(t, testBase))
        #expect(pte.isSpecial && !pte.isWritable)
        #expect(pte.keyid(k.layout) == .tme)                        // mk_zero_pte strips the KeyID
        #expect(pte.raw & k.layout.encryptionMask == 0)
        let z = try #require(k.pgtable.zeroPFN)
        #expect(pte.pfn(k.layout) == z)
        #expect(k.allocator.pageKeyID(z) == .tme)
        #expect(k.virtToPhys(t, VirtAddr(testBase + 5)) == PhysAddr((z.rawValue << 12) + 5))
        // A second VMA with another KeyID shares the same zero page.
        addVMA(t, testBase + (1 << 30), 4096, [.read], keyid: KeyID(7))
        _ = k.readForTest(t, testBase + (1 << 30), 1)
        #expect(k.entryForTest(t, testBase + (1 << 30))?.pfn(k.layout) == z)
        #expect(k.allocator.mapcount(z) == 0)                      // special: no rmap accounting
    }

    @Test func writeFaultAllocatesWithVMAKeyIDAndEncrypts() throws {
        let k = try makeFaultKernel()
        let t = k.spawn()
        let vma = addVMA(t, testBase, 4 << 12, [.read, .write], keyid: KeyID(5))
        let data = Array("secret tenant data".utf8)
        #expect(k.memWrite(t, VirtAddr(testBase + 8), data) == .ok(data.count))
        let pte = try #require(k.entryForTest(t, testBase))
        let pfn = pte.pfn(k.layout)
        #expect(pte.keyid(k.layout) == KeyID(5))
        #expect(pte.raw >> 46 & 0x3F == 5)
        #expect(pte.isWritable && pte.isDirty && pte.isAccessed)
        #expect(k.allocator.pageKeyID(pfn) == KeyID(5))
        #expect(k.allocator.flags(pfn).contains(.anon))
        #expect(k.allocator.mapping(pfn) == vma.anonVMA?.id)
        #expect(k.allocator.index(pfn) == vma.pageIndex(of: VirtAddr(testBase)))
        #expect(k.allocator.mapcount(pfn) == 1)
        #expect(k.readForTest(t, testBase + 8, data.count) == data)
        // DRAM holds ciphertext; the same frame read through KeyID 0 is garbage.
        k.machine.wbinvd()
        let raw = k.machine.physRead(PhysAddr(pfn.physAddr.rawValue + 8), count: data.count)
        #expect(raw != data)
        #expect(k.machine.read(PhysAddr(pfn.physAddr.rawValue + 8), keyid: .tme, count: data.count) != data)
    }

    @Test func writeAfterReadBreaksZeroPageCOW() throws {
        let k = try makeFaultKernel()
        let t = k.spawn()
        addVMA(t, testBase, 4096, [.read, .write], keyid: KeyID(3))
        _ = k.readForTest(t, testBase, 4)
        let z = try #require(k.pgtable.zeroPFN)
        #expect(k.memWrite(t, VirtAddr(testBase), [1, 2, 3]) == .ok(3))
        let pte = try #require(k.entryForTest(t, testBase))
        #expect(pte.pfn(k.layout) != z)
        #expect(pte.keyid(k.layout) == KeyID(3))
        #expect(k.readForTest(t, testBase, 4) == [1, 2, 3, 0])
        // The zero page itself is still zero through KeyID 0.
        #expect(k.machine.read(z.physAddr, keyid: .tme, count: 16) == [UInt8](repeating: 0, count: 16))
    }

    @Test func cowAfterForkKeepsDataAndKeyIDs() throws {
        let k = try makeFaultKernel()
        let parent = k.spawn()
        addVMA(parent, testBase, 2 << 12, [.read, .write], keyid: KeyID(6))
        #expect(k.memWrite(parent, VirtAddr(testBase), Array("parent".utf8)) == .ok(6))
        let before = try #require(k.entryForTest(parent, testBase)).pfn(k.layout)
        let child = k.forkForTest(parent)
        // Both map the same frame, write-protected, mapcount 2.
        let pe = try #require(k.entryForTest(parent, testBase))
        let ce = try #require(k.entryForTest(child, testBase))
        #expect(pe.pfn(k.layout) == before && ce.pfn(k.layout) == before)
        #expect(!pe.isWritable && !ce.isWritable)
        #expect(ce.keyid(k.layout) == KeyID(6))
        #expect(k.allocator.mapcount(before) == 2)
        let cows = k.machine.clock.value(of: .cowBreaks)
        #expect(k.memWrite(child, VirtAddr(testBase), Array("child!".utf8)) == .ok(6))
        #expect(k.machine.clock.value(of: .cowBreaks) == cows + 1)
        let ce2 = try #require(k.entryForTest(child, testBase))
        #expect(ce2.pfn(k.layout) != before)
        #expect(ce2.keyid(k.layout) == KeyID(6))
        #expect(k.allocator.pageKeyID(ce2.pfn(k.layout)) == KeyID(6))
        #expect(k.readForTest(parent, testBase, 6) == Array("parent".utf8))
        #expect(k.readForTest(child, testBase, 6) == Array("child!".utf8))
        // The parent is now the only mapper: its write reuses the page (do_wp_page reuse).
        #expect(k.allocator.mapcount(before) == 1)
        #expect(k.memWrite(parent, VirtAddr(testBase), [0x50]) == .ok(1))
        #expect(k.entryForTest(parent, testBase)?.pfn(k.layout) == before)
        #expect(k.machine.clock.value(of: .cowBreaks) == cows + 1)
    }

    @Test func wipeOnForkAndSharedMappingsAtFork() throws {
        let k = try makeFaultKernel()
        let parent = k.spawn()
        addVMA(parent, testBase, 4096, [.read, .write, .wipeOnFork])
        #expect(k.memWrite(parent, VirtAddr(testBase), [9, 9]) == .ok(2))
        let child = k.forkForTest(parent)
        #expect(k.entryForTest(child, testBase) == nil)
        #expect(k.readForTest(child, testBase, 2) == [0, 0])
        #expect(k.readForTest(parent, testBase, 2) == [9, 9])
    }

    @Test func filePrivateCOWVersusSharedWriteBack() throws {
        let k = try makeFaultKernel()
        let t = k.spawn()
        let file = MappedFile(path: "/tmp/f", inode: 77, size: 3 * 4096)
        let shared = testBase, priv = testBase + (1 << 21)
        addVMA(t, shared, 3 << 12, [.read, .write, .shared], file: file)
        addVMA(t, priv, 3 << 12, [.read, .write], file: file)
        // A read of the private mapping maps the page-cache page read-only.
        #expect(k.readForTest(t, priv, 4) == [0, 0, 0, 0])
        let cachePage = try #require(k.pageCache.lookup(file, 0))
        #expect(k.entryForTest(t, priv)?.pfn(k.layout) == cachePage)
        #expect(k.entryForTest(t, priv)?.isWritable == false)
        // A shared write goes to the page-cache page and marks it dirty.
        #expect(k.memWrite(t, VirtAddr(shared), [7, 7]) == .ok(2))
        #expect(k.entryForTest(t, shared)?.pfn(k.layout) == cachePage)
        #expect(k.pageCache.mapping(for: file).dirty.contains(0))
        #expect(k.readForTest(t, priv, 2) == [7, 7])               // still the cache page
        // A private write copies into an anonymous page; the file does not see it.
        #expect(k.memWrite(t, VirtAddr(priv), [1]) == .ok(1))
        let anonPage = try #require(k.entryForTest(t, priv)).pfn(k.layout)
        #expect(anonPage != cachePage)
        #expect(k.allocator.flags(anonPage).contains(.anon))
        #expect(k.readForTest(t, priv, 2) == [1, 7])
        #expect(k.readForTest(t, shared, 2) == [7, 7])
        // Zapping the shared mapping keeps the data in the page cache (write-back target).
        k.zapPageRange(t.mm, t.mm.findVMA(VirtAddr(shared))!, VirtAddr(shared), VirtAddr(shared + 3 * 4096))
        #expect(k.pageCache.lookup(file, 0) == cachePage)
        #expect(k.machine.read(cachePage.physAddr, keyid: .tme, count: 2) == [7, 7])
    }

    @Test func sigbusBeyondEOF() throws {
        let k = try makeFaultKernel()
        let t = k.spawn()
        let file = MappedFile(path: "/tmp/g", inode: 78, size: 4096 + 10)
        addVMA(t, testBase, 4 << 12, [.read, .write, .shared], file: file)
        #expect(k.readForTest(t, testBase + 4096 + 9, 1) == [0])     // inside the last partial page
        #expect(k.memRead(t, VirtAddr(testBase + 2 * 4096), 1) == .signal(.sigbus))
        #expect(k.memWrite(t, VirtAddr(testBase + 3 * 4096), [1]) == .signal(.sigbus))
        #expect(k.memTouch(t, VirtAddr(testBase), 4 * 4096, .read) == 2)
    }

    @Test func segvCodes() throws {
        let k = try makeFaultKernel()
        let t = k.spawn()
        addVMA(t, testBase, 4096, [.read])
        addVMA(t, testBase + 4096, 4096, [])
        #expect(k.memRead(t, VirtAddr(testBase - 4096), 1) == .signal(.sigsegv(.mapErr)))
        #expect(k.memWrite(t, VirtAddr(testBase), [1]) == .signal(.sigsegv(.accErr)))
        #expect(k.memRead(t, VirtAddr(testBase + 4096), 1) == .signal(.sigsegv(.accErr)))
        #expect(k.handleMMFault(t, VirtAddr(testBase), .exec) == .sigsegv(.accErr))
        #expect(k.handleMMFault(t, VirtAddr(1 << 50), .read) == .sigsegv(.mapErr))
        // A write crossing into a read-only page writes the first part, then faults.
        let t2 = k.spawn()
        addVMA(t2, testBase, 4096, [.read, .write])
        addVMA(t2, testBase + 4096, 4096, [.read])
        #expect(k.memWrite(t2, VirtAddr(testBase + 4094), [1, 2, 3, 4]) == .signal(.sigsegv(.accErr)))
        #expect(k.readForTest(t2, testBase + 4094, 2) == [1, 2])
    }

    @Test func protectionKeysDenyThroughPKRU() throws {
        let k = try makeFaultKernel()
        let t = k.spawn()
        addVMA(t, testBase, 2 << 12, VMFlags([.read, .write]).with(pkey: 3))
        t.pkru = 0
        #expect(k.memWrite(t, VirtAddr(testBase), [1]) == .ok(1))
        #expect(k.entryForTest(t, testBase)?.pkey == 3)
        // WD for pkey 3 (bit 7): reads work, writes fail with SEGV_PKUERR, even with the
        // translation cached in the TLB.
        t.pkru = 1 << 7
        #expect(k.readForTest(t, testBase, 1) == [1])
        #expect(k.memWrite(t, VirtAddr(testBase), [2]) == .signal(.sigsegv(.pkuErr)))
        // AD for pkey 3 (bit 6): reads fail too; instruction fetches ignore pkeys.
        t.pkru = 1 << 6
        #expect(k.memRead(t, VirtAddr(testBase), 1) == .signal(.sigsegv(.pkuErr)))
        #expect(k.memRead(t, VirtAddr(testBase + 4096), 1) == .signal(.sigsegv(.pkuErr)))
        #expect(k.entryForTest(t, testBase + 4096) == nil)            // access_error before the fault
        // Another key's bits do not matter.
        t.pkru = 0xFFFF_FF00 & ~(UInt32(3) << 6)
        #expect(k.readForTest(t, testBase, 1) == [1])
    }

    @Test func memTouchCountsPagesBeforeTheSignal() throws {
        let k = try makeFaultKernel()
        let t = k.spawn()
        addVMA(t, testBase, 3 << 12, [.read, .write])
        #expect(k.memTouch(t, VirtAddr(testBase + 100), 5 << 12, [.read, .write]) == 3)
        #expect(k.memTouch(t, VirtAddr(testBase), 1, .read) == 1)
        #expect(k.memTouch(t, VirtAddr(testBase), 0, .read) == 0)
        for i in 0..<3 {
            let e = try #require(k.entryForTest(t, testBase + UInt64(i) << 12))
            #expect(e.isWritable && e.isDirty && !e.isSpecial)
        }
        #expect(k.virtToPhys(t, VirtAddr(testBase + (3 << 12))) == nil)
    }

    @Test func populateFaultsInAndBreaksCOWForPrivateWritable() throws {
        let k = try makeFaultKernel()
        let t = k.spawn()
        let rw = addVMA(t, testBase, 8 << 12, [.read, .write])
        let ro = addVMA(t, testBase + (1 << 21), 8 << 12, [.read])
        let none = addVMA(t, testBase + (2 << 21), 8 << 12, [])
        #expect(k.populate(t, rw, rw.vmStart, rw.vmEnd, write: false) == nil)
        #expect(k.populate(t, ro, ro.vmStart, ro.vmEnd, write: false) == nil)
        #expect(k.populate(t, none, none.vmStart, none.vmEnd, write: false) == nil)
        for i in 0..<8 {
            let e = try #require(k.entryForTest(t, testBase + UInt64(i) << 12))
            #expect(e.isWritable && !e.isSpecial)                   // private writable: real pages
            let r = try #require(k.entryForTest(t, testBase + (1 << 21) + UInt64(i) << 12))
            #expect(r.isSpecial)                                     // read-only: the zero page
        }
        #expect(k.entryForTest(t, testBase + (2 << 21)) == nil)
    }

    @Test func smeModeZeroPageHasNoCBitAndWritesDo() throws {
        let k = try makeFaultKernel(encryption: .sme)
        let t = k.spawn()
        addVMA(t, testBase, 2 << 12, [.read, .write], keyid: KeyID(1))
        _ = k.readForTest(t, testBase, 1)
        let z = try #require(k.entryForTest(t, testBase))
        #expect(z.raw & k.layout.encryptionMask == 0)
        #expect(k.memWrite(t, VirtAddr(testBase + 4096), [5, 6]) == .ok(2))
        let e = try #require(k.entryForTest(t, testBase + 4096))
        #expect(e.raw & (UInt64(1) << 51) != 0)                     // the C-bit (bit 51 with 52 phys bits)
        #expect(k.readForTest(t, testBase + 4096, 2) == [5, 6])
    }
}
