// Reverse mapping and page migration: rmap_walk over every mm (anon pages through their
// anon_vma and the VMAs chained to it, file pages through their file), the remap step the
// allocator's migration calls back into (`remapMigratedPage`), and the migration entry
// points for move_pages / migrate_pages / mbind(MPOL_MF_MOVE) / NUMA balancing.
//
// Invariants: after a page is migrated no PTE/PMD and no page-cache slot refers to the old
// frame, and every TLB that could have cached it was flushed; the new frame holds the
// source's contents under the source's KeyID (allocPageForMigration keeps it).
import KeyMMBase

/// What move_pages(2) reports for one page.
public enum MigrateStatus: Equatable, Sendable {
    /// The page is (now) on this node.
    case node(NodeID)
    /// A negative status: EFAULT (nothing mapped / zero page), EACCES (shared without
    /// MPOL_MF_MOVE_ALL), EBUSY (pinned or not movable), ENOMEM.
    case error(Errno)
}

extension Kernel {
    /// Installs `remapMigratedPage` as the allocator's migration callback (compaction and
    /// `allocator.migrate` then move mapped pages correctly). Call once after `allocator` exists.
    public func installMigrationCallback() {
        allocator.migratePage = { [unowned self] old, new in self.remapMigratedPage(old, to: new) }
    }

    // MARK: rmap

    /// rmap_walk(): calls `body(mm, vma, address)` for every place in every mm where the
    /// frame `page` may be mapped (anon: VMAs linked to its anon_vma; file: VMAs of its file).
    func rmapWalk(_ page: PFN, _ body: (MM, VMA, VirtAddr) -> Void) {
        let mapping = allocator.mapping(page)
        guard mapping != 0 else { return }
        let head = allocator.compoundHead(page)
        let index = allocator.index(head)
        let file = mapping & PageCache.fileMappingBit != 0 ? pageCache.mapping(id: mapping)?.file : nil
        for (_, mm) in distinctMMs {
            for vma in mm.vmas {
                if let file {
                    guard vma.vmFile === file else { continue }
                } else {
                    guard vma.anonVMA?.id == mapping || vma.anonVMAChain.contains(where: { $0.id == mapping }) else { continue }
                }
                guard index >= vma.vmPgoff, index - vma.vmPgoff < vma.pages else { continue }
                body(mm, vma, vma.vmStart.advanced(by: (index - vma.vmPgoff) << pageShift))
            }
        }
    }

    /// The allocator's migratePage callback: points every mapping of `old` (PTEs, a huge PMD,
    /// the page-cache slot) at `new`, flushing the TLBs. False (nothing changed) for pinned pages.
    public func remapMigratedPage(_ old: PFN, to new: PFN) -> Bool {
        let f = allocator.flags(old)
        if f.contains(.pinned) || f.contains(.reserved) || f.contains(.zeroPage) { return false }
        var remapped: Int32 = 0
        let replace: (MM, VirtAddr) -> Void = { mm, addr in
            let pt = mm.pageTable
            switch pt.walk(addr) {
            case .pte(_, let slot):
                let e = pt[slot]
                if e.mapsFrame && !e.isSpecial && e.pfn(self.layout) == old {
                    pt.set(slot, e.with(pfn: new, layout: self.layout))
                    self.machine.clock.charge(.pteUpdate)
                    self.flushTLBRange(mm, addr.pageDown, addr.pageDown.advanced(by: UInt64(pageSize)))
                    remapped += 1
                }
            case .huge(let ps):
                let e = pt[ps]
                if !e.isSpecial && e.hugePFN(self.layout) == old {
                    let keep = e.raw & ~(self.layout.pfnMask & ~PTEFlags.patLarge.rawValue)
                    pt.set(ps, PTE(raw: keep | ((new.rawValue << pageShift) & self.layout.pfnMask)))
                    self.machine.clock.charge(.pteUpdate)
                    let h = VirtAddr(addr.rawValue & ~pmdMask)
                    self.flushTLBRange(mm, h, h.advanced(by: pmdSize))
                    remapped += 1
                }
            case .none:
                break
            }
        }
        rmapWalk(old) { mm, _, addr in replace(mm, addr) }
        if remapped < allocator.mapcount(old) {
            // Mappings the rmap could not reach (e.g. KSM pages): search every page table.
            for (_, mm) in distinctMMs {
                for vma in mm.vmas {
                    var hits: [VirtAddr] = []
                    PageWalk.forEachEntry(of: vma, in: mm) { e in
                        if e.pte.pfn(self.layout) == old || (e.pte.isHuge && e.pte.hugePFN(self.layout) == old) { hits.append(e.address) }
                    }
                    for addr in hits { replace(mm, addr) }
                }
            }
        }
        // A page in the swap cache (swapped in while other PTEs still name its slot) moves
        // there too, as folio_migrate_mapping() replaces the swap-cache entry: otherwise the
        // cache would keep the freed source frame and a later swap-in would map it.
        swapCacheReplace(old, with: new)
        let mapping = allocator.mapping(old)
        if mapping & PageCache.fileMappingBit != 0, let space = pageCache.mapping(id: mapping) {
            let idx = allocator.index(old)
            if space.pages[idx] == old { space.pages[idx] = new }
        }
        pgtable.migrated &+= 1
        return true
    }

    // MARK: entry points

    /// Migrates the page mapped at `addr` to `node` (move_pages for one page; also the
    /// NUMA-balancing step). A huge PMD migrates as a whole. `moveShared`: MPOL_MF_MOVE_ALL.
    public func migrateMappedPage(_ mm: MM, _ addr: VirtAddr, to node: NodeID, moveShared: Bool) -> MigrateStatus {
        let pt = mm.pageTable
        var page: PFN
        switch pt.walk(addr) {
        case .none: return .error(.EFAULT)
        case .huge(let ps):
            let e = pt[ps]
            guard e.mapsFrame else { return .error(.EFAULT) }
            page = e.hugePFN(layout)
        case .pte(_, let slot):
            let e = pt[slot]
            guard e.mapsFrame else { return .error(.EFAULT) }
            page = e.pfn(layout)
        }
        if isZeroPFN(page) || isHugeZeroPFN(page) { return .error(.EFAULT) }
        // A raw PFN (vmf_insert_pfn: vvar, an SGX EPC page) has no struct page to migrate:
        // vm_normal_page() returns NULL for it.
        if case .pte(_, let slot) = pt.walk(addr), pt[slot].isSpecial { return .error(.EFAULT) }
        let f = allocator.flags(page)
        if f.contains(.reserved) { return .error(.EFAULT) }
        let head = allocator.compoundHead(page)
        if allocator.node(of: head) == node { return .node(node) }
        if allocator.mapcount(head) > 1 && !moveShared { return .error(.EACCES) }
        if f.contains(.pinned) { return .error(.EBUSY) }
        guard let newHead = allocator.migrate(head, to: node) else {
            pgtable.migrateFailed &+= 1
            return .error(allocator.flags(head).contains(.pinned) ? .EBUSY : .ENOMEM)
        }
        return .node(allocator.node(of: newHead))
    }

    /// migrate_pages / mbind(MPOL_MF_MOVE) over [start, end) of one VMA: moves every mapped
    /// page that is not on `node`. Returns the number of pages (4 KiB units) that could not move.
    @discardableResult
    public func migratePages(_ mm: MM, _ vma: VMA, _ start: VirtAddr, _ end: VirtAddr, to node: NodeID,
                             moveShared: Bool) -> Int {
        var failed = 0
        var addrs: [(VirtAddr, Bool)] = []
        PageWalk.forEachEntry(of: vma, in: mm, from: start, to: end) { e in addrs.append((e.address, e.isHuge)) }
        for (a, huge) in addrs {
            switch migrateMappedPage(mm, a, to: node, moveShared: moveShared) {
            case .node: break
            case .error(.EFAULT): break
            case .error: failed += huge ? hpagePMDNr : 1
            }
        }
        return failed
    }

    /// numa_balance(): one pass of NUMA balancing: every mapped page of every mm that is not
    /// on the node its VMA's policy wants (mpol_misplaced) is migrated there. Returns pages moved.
    @discardableResult
    public func numaBalance() -> Int {
        guard machine.config.nodes > 1 else { return 0 }
        var moved = 0
        for (_, mm) in distinctMMs {
            for vma in mm.allVMAs {
                var addrs: [(VirtAddr, Bool)] = []
                PageWalk.forEachEntry(of: vma, in: mm) { e in addrs.append((e.address, e.isHuge)) }
                for (a, huge) in addrs {
                    let want = targetNode(vma, a, order: huge ? .pmd : .base)
                    let before = virtToPhys(mm, a)
                    guard let pa = before, allocator.node(of: pa.pfn) != want else { continue }
                    if case .node(let n) = migrateMappedPage(mm, a, to: want, moveShared: true), n == want {
                        moved += huge ? hpagePMDNr : 1
                    }
                }
            }
        }
        return moved
    }
}
