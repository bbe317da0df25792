// "Everything else the series touched" (issue 4 items 5 and 6), at the level of kernel state:
// KSM by KeyID, swap holding plaintext, migration keeping the KeyID, the per-KeyID direct map
// and its boot-time limit, SME's C-bit, per-PTE encryption bits against the pre-fix
// pgprot_modify, and the hugetlb refusal.
import Testing
import KeyMMBase
import KeyMMHardware
import KeyMMKeys
@testable import KeyMMKernel

@Suite struct MKTMEFeatureTests {
    let base: UInt64 = 0x7f00_0000_0000

    func encryptedRegion(_ k: Kernel, _ t: TaskStruct, _ key: KeySerial, _ addr: UInt64, pages: Int) {
        k.anonMap(addr, UInt64(pages) * 4096, [])
        #expect(k.encryptMprotect(t.pid, addr: VirtAddr(addr), length: UInt64(pages) * 4096, prot: rw, serial: key) == .success(()))
    }

    @Test func ksmMergesOnlyWithinOneKeyID() throws {
        let (k, t) = try makeMKTMEKernel()
        let a = k.mktmeKey("a"), b = k.mktmeKey("b")
        encryptedRegion(k, t, a, base, pages: 2)
        encryptedRegion(k, t, b, base + 0x10000, pages: 2)
        // Over the hole between the regions madvise reports ENOMEM after advising both (Linux).
        #expect(k.madvise(t.pid, addr: VirtAddr(base), length: 0x12000, advice: .mergeable) == .failure(.ENOMEM))
        #expect(t.mm.allVMAs.allSatisfy { $0.vmFlags.contains(.mergeable) })
        for addr in [base, base + 4096, base + 0x10000, base + 0x11000] { k.write(t, addr, "same contents") }
        #expect(k.ksmScan() == 2)                          // one merge per KeyID
        #expect(k.frame(t, base) == k.frame(t, base + 4096))
        #expect(k.frame(t, base + 0x10000) == k.frame(t, base + 0x11000))
        #expect(k.frame(t, base) != k.frame(t, base + 0x10000))
        #expect(k.mktme.ksmKeyIDMismatches >= 1)
        let ksmPage = try #require(k.frame(t, base))
        #expect(k.allocator.flags(ksmPage).contains(.ksm))
        #expect(k.allocator.pageKeyID(ksmPage) == k.keyid(of: a))
        #expect(k.leaf(t, base)?.isWritable == false)
        // KeyID references: the freed duplicate's page reference went.
        #expect(k.keys.references.count(k.keyid(of: a)) == 1 + 1 + 1)
        k.write(t, base, "diverged")
        #expect(k.frame(t, base) != ksmPage)
        #expect(k.read(t, base + 4096, 13) == Array("same contents".utf8))
        #expect(k.keys.references.anomalies.isEmpty && k.allocator.anomalies.isEmpty)
    }

    @Test func swapHoldsPlaintextAndSwapInUsesTheVMAKeyID() throws {
        let (k, t) = try makeMKTMEKernel()
        let key = k.mktmeKey("a")
        let id = k.keyid(of: key)
        encryptedRegion(k, t, key, base, pages: 1)
        k.write(t, base, "to swap")
        #expect(k.keys.references.count(id) == 3)
        #expect(k.reclaim(1) == 1)
        #expect(k.keys.references.count(id) == 2)          // the page (and its reference) went
        let offset = try #require(k.swapOffset(t, VirtAddr(base)))
        let stored = try #require(k.mktme.swapContents(offset: offset))
        #expect(Array(stored.prefix(7)) == Array("to swap".utf8))   // plaintext on the swap device
        let smaps = try #require(k.procSmaps(t.pid))
        #expect(smaps.contains("Swap:           " + "       4" + " kB"))
        #expect(k.read(t, base, 7) == Array("to swap".utf8))
        let f = try #require(k.frame(t, base))
        #expect(k.allocator.pageKeyID(f) == id)
        #expect(k.keys.references.count(id) == 3)
        #expect(k.mktme.swapSlotsInUse == 0)
        #expect(k.mktme.pswpout == 1 && k.mktme.pswpin == 1)
        // Pinned pages are never reclaimed.
        let h = try k.gupPin(t, VirtAddr(base), 1).get()
        #expect(k.reclaim(1) == 0)
        #expect(k.gupUnpin(h) == .success(()))
    }

    @Test func migrationKeepsTheKeyIDAndBalancesReferences() throws {
        let (k, t) = try makeMKTMEKernel(memory: .mib(128), nodes: 2)
        let key = k.mktmeKey("a")
        let id = k.keyid(of: key)
        encryptedRegion(k, t, key, base, pages: 2)
        k.write(t, base, "numa page")
        let before = try #require(k.frame(t, base))
        #expect(k.allocator.node(of: before) == NodeID(0))
        let r = try k.movePages(t.pid, target: 0, pages: [VirtAddr(base)], nodes: [1], flags: 2).get()
        #expect(r.0 == 0 && r.1 == [.node(1)])
        let after = try #require(k.frame(t, base))
        #expect(k.allocator.node(of: after) == NodeID(1))
        #expect(k.allocator.pageKeyID(after) == id)
        #expect(k.read(t, base, 9) == Array("numa page".utf8))
        #expect(k.keys.references.count(id) == 3)
        let stat = try k.movePages(t.pid, target: 0, pages: [VirtAddr(base), VirtAddr(base + 4096), VirtAddr(0x1000)],
                                   nodes: nil, flags: 0).get()
        #expect(stat.1 == [.node(1), .error(.ENOENT), .error(.EFAULT)])
    }

    @Test func directMapLayoutAndTheBootDecision() throws {
        // 63 KeyIDs: 64 aliases of 1 TiB fill 64 TiB exactly.
        let fits = DirectMapLayout(memory: 256 << 20, keyids: 63)
        #expect(fits.mktmeEnabled && fits.directMappingSize == 1 << 40 && fits.directMappingMask == (1 << 40) - 1)
        let expectedVA: UInt64 = 0xffff_8880_0000_0000 + (UInt64(5) << 40) + 0x10000
        #expect(fits.virtualAddress(PFN(0x10), keyid: KeyID(5)) == expectedVA)
        let back = try #require(fits.translate(fits.virtualAddress(PFN(0x10), keyid: KeyID(5), offset: 12)))
        #expect(back.0 == PhysAddr(0x1000c) && back.1 == KeyID(5))
        // 127 KeyIDs do not fit with 4-level paging...
        let tooMany = DirectMapLayout(memory: 256 << 20, keyids: 127)
        #expect(!tooMany.mktmeEnabled && tooMany.nrKeyIDs == 0)
        #expect(tooMany.disabledReason?.contains("Not enough virtual address space") == true)
        // ...but do with 5-level paging; and 2 TiB of RAM with 63 KeyIDs would not fit 4-level.
        #expect(DirectMapLayout(memory: 256 << 20, keyids: 127, pagingLevels: 5).mktmeEnabled)
        #expect(!DirectMapLayout(memory: 2 << 40, keyids: 63).mktmeEnabled)
        #expect(DirectMapLayout(memory: 2 << 40, keyids: 31).mktmeEnabled)
        // The kernel with keyid-bits 7 boots with MKTME disabled.
        let (k, _) = try makeMKTMEKernel(keyidBits: 7)
        #expect(!k.mktme.directMap.mktmeEnabled && !k.keys.mktmeAvailable)
    }

    @Test func kernelReadsEncryptedPagesThroughTheirKeyIDsAlias() throws {
        let (k, t) = try makeMKTMEKernel()
        let key = k.mktmeKey("a")
        encryptedRegion(k, t, key, base, pages: 1)
        k.write(t, base, "kernel view")
        let f = try #require(k.frame(t, base))
        #expect(k.kernelRead(f, count: 11) == Array("kernel view".utf8))
        // The KeyID 0 alias of the same frame (page_to_virt with the wrong KeyID) sees garbage.
        k.machine.wbinvd()
        let wrong = k.machine.read(f.physAddr, keyid: .tme, count: 11)
        #expect(wrong != Array("kernel view".utf8))
    }

    @Test func smeEncryptsUserPagesWithTheCBitButNotTheZeroPage() throws {
        let (k, t) = try makeMKTMEKernel(encryption: .sme)
        #expect(k.smeActive && !k.keys.mktmeAvailable)
        k.anonMap(base, 2 * 4096)
        #expect(k.read(t, base + 4096, 4) == [0, 0, 0, 0])
        let zero = try #require(k.leaf(t, base + 4096))
        #expect(zero.raw & k.layout.encryptionMask == 0)                     // zero page: no C-bit
        k.write(t, base, "sme data")
        let pte = try #require(k.leaf(t, base))
        #expect(pte.raw & k.layout.encryptionMask != 0)                      // user page: C-bit
        #expect(pte.keyid(k.layout) == KeyID(1))
        #expect(t.mm.allVMAs.allSatisfy { $0.keyid == .tme })                // vma_keyid() stays 0
        k.machine.wbinvd()
        let f = try #require(k.frame(t, base))
        #expect(k.machine.physRead(f.physAddr, count: 8) != Array("sme data".utf8))
        #expect(k.mprotect(t.pid, addr: VirtAddr(base), length: 8192, prot: .read) == .success(()))
        #expect(((k.leaf(t, base)?.raw ?? 0) & k.layout.encryptionMask) != 0)
        #expect(k.read(t, base, 8) == Array("sme data".utf8))
        #expect(k.keys.references.anomalies.isEmpty && k.allocator.anomalies.isEmpty)
    }

    @Test(arguments: [false, true])
    func mprotectKeepsPerPTEEncryptionUnlessThePreFixBugIsInjected(_ injectBug: Bool) throws {
        let bugs: InjectedBugs = injectBug ? .mprotectDropsKeyID : []
        let (k, t) = try makeMKTMEKernel(encryption: .sme, bugs: bugs)
        _ = try k.vvarMap(t, addr: VirtAddr(base), npages: 3, decryptedIndex: 1).get()
        for i in 0..<3 { #expect(k.read(t, base + UInt64(i) * 4096, 11) == Array("vvar page \(i)".utf8)) }
        #expect(k.mprotect(t.pid, addr: VirtAddr(base), length: 3 * 4096, prot: []) == .success(()))
        #expect(k.mprotect(t.pid, addr: VirtAddr(base), length: 3 * 4096, prot: .read) == .success(()))
        let page0 = k.read(t, base, 11), page1 = k.read(t, base + 4096, 11)
        if injectBug {
            // vm_page_prot has no C-bit: the encrypted pages are read decrypted-wrong.
            #expect(page0 != Array("vvar page 0".utf8))
            #expect(page1 == Array("vvar page 1".utf8))
        } else {
            #expect(page0 == Array("vvar page 0".utf8))
            #expect(page1 == Array("vvar page 1".utf8))
            #expect(k.leaf(t, base)?.keyid(k.layout) == KeyID(1))
            #expect(k.leaf(t, base + 4096)?.keyid(k.layout) == .tme)
        }
    }

    /// Issue 15 item 2: the fault handler of a special mapping indexes pages by vmf->pgoff, the
    /// offset in the whole mapping: on a VMA that is a piece of it (here pages 2-3 of a 4-page
    /// mapping, vm_pgoff 2) the first page is page 2, not page 0 — and special mappings refuse
    /// the split that would make such a piece (special_mapping_split, Linux 5.11+).
    @Test func specialMappingFaultIndexesTheWholeMappingAndRefusesSplits() throws {
        let pages: [(pfn: PFN, keyid: KeyID)] = (0..<4).map { (PFN(100 + UInt64($0)), KeyID(UInt16($0 % 2))) }
        let ops = MixedEncryptionMapping(pages: pages)
        let flags: VMFlags = [.read, .mayRead, .io, .pfnMap, .dontExpand]
        let piece = VMA(start: VirtAddr(base + 0x2000), end: VirtAddr(base + 0x4000), pgoff: 2, flags: flags,
                        pageProt: PageProt(vmFlags: flags))
        piece.vmOps = ops
        let first = ops.fault(piece, address: piece.vmStart, pageIndex: piece.pageIndex(of: piece.vmStart), write: false)
        #expect(first?.pfn == PFN(102))
        #expect(first?.prot.keyid == KeyID(0))
        let second = ops.fault(piece, address: piece.vmStart.advanced(by: 4096), pageIndex: piece.pageIndex(of: piece.vmStart.advanced(by: 4096)), write: false)
        #expect(second?.pfn == PFN(103))
        #expect(second?.prot.keyid == KeyID(1))
        #expect(ops.fault(piece, address: piece.vmStart, pageIndex: 4, write: false) == nil)   // beyond the mapping: SIGBUS
        #expect(ops.maySplit(piece, at: piece.vmStart.advanced(by: 4096)) == .EINVAL)

        let (k, t) = try makeMKTMEKernel()
        _ = try k.vvarMap(t, addr: VirtAddr(base), npages: 3, decryptedIndex: 1).get()
        #expect(k.mprotect(t.pid, addr: VirtAddr(base + 0x1000), length: 4096, prot: []) == .failure(.EINVAL))
        #expect(k.munmap(t.pid, addr: VirtAddr(base), length: 4096) == .failure(.EINVAL))
        #expect(t.mm.allVMAs.count == 1)
        for i in 0..<3 { #expect(k.read(t, base + UInt64(i) * 4096, 11) == Array("vvar page \(i)".utf8)) }
    }

    @Test func hugetlbVMAIsRefusedAndWarned() throws {
        let (k, t) = try makeMKTMEKernel()
        let key = k.mktmeKey("a")
        _ = try k.hugetlbMap(t, addr: VirtAddr(0x7f00_0020_0000), length: 2 << 20, prot: rw).get()
        #expect(k.encryptMprotect(t.pid, addr: VirtAddr(0x7f00_0020_0000), length: 2 << 20, prot: rw, serial: key) == .failure(.EINVAL))
        #expect(k.mktme.warnings["hugetlb-encrypt-refused"] == 1)
        #expect(t.mm.allVMAs.allSatisfy { $0.keyid == .tme })
        #expect(k.procMaps(t.pid)?.contains("anon_hugepage (deleted)") == true)
    }
}
