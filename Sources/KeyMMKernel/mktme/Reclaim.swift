// Reclaim of anonymous memory to a modeled swap device, and swap-in (do_swap_page), with
// encrypted pages (docs/sources.md, seed 002: the in-MM approach keeps "swap/reclaim" that a driver would lose).
//
// reclaim(n): one kswapd-like pass: scan every mm (pid order), every private anonymous VMA that
// is not VM_LOCKED, every mapped 4 KiB page (huge PMDs are split first, as swap-out splits THPs),
// in address order — the model's LRU order. A page whose PTE is young gets a second chance (the
// accessed bit is cleared and the TLB entry flushed, as folio_referenced() does); an old page
// that is anonymous, not pinned, not KSM, not mlocked and whose only references are its mappings
// is swapped out: the kernel reads it through its KeyID's direct-map alias (the CPU decrypts it),
// writes the bytes to a swap slot, replaces every PTE mapping it (found through the rmap) by a
// swap entry, and the page is freed (free_encrypted_page: its KeyID references go). A second
// pass runs if the first (which ages pages) reclaimed fewer than n. Returns pages reclaimed.
//
// Swap-in (a fault on a swap PTE): the page is allocated for the VMA with its KeyID
// (alloc_page_vma; the C-bit under SME), the swapped bytes are written through that KeyID (the
// CPU encrypts them), and mapped read-only (a later write reuses it in do_wp_page when it is the
// only mapping). Another PTE naming the same swap slot (after fork) finds the page in the swap
// cache. As in the series, the swap device holds PLAINTEXT: MKTME protects DRAM only; swap must
// be encrypted separately (dm-crypt) — `swapContents(offset:)` shows what a disk thief reads.
//
// Invariants: a slot's count is the number of swap PTEs naming it; it is freed when the count
// reaches zero (zap, exit, swap-in of the last PTE); the swap cache holds one page reference.
import KeyMMBase

extension Kernel {
    /// reclaim(NPAGES): see the file comment. Returns the number of pages swapped out.
    @discardableResult
    public func reclaim(_ npages: Int) -> Int {
        installSwapHooks()
        guard npages > 0 else { return 0 }
        var reclaimed = 0
        for pass in 0..<2 where reclaimed < npages {
            for (_, mm) in distinctMMs {
                for vma in mm.allVMAs where reclaimed < npages {
                    guard vma.isAnonymous, !vma.vmFlags.contains(.shared),
                          vma.vmFlags.isDisjoint(with: VMFlags.lockedMask.union(.special)) else { continue }
                    reclaimed += reclaimVMA(mm, vma, want: npages - reclaimed, age: pass == 0)
                }
                if reclaimed >= npages { break }
            }
        }
        return reclaimed
    }

    /// shrink_folio_list over one VMA's pages. `age`: young pages get a second chance.
    func reclaimVMA(_ mm: MM, _ vma: VMA, want: Int, age: Bool) -> Int {
        var hugeAt: [VirtAddr] = []
        PageWalk.forEachEntry(of: vma, in: mm) { e in if e.isHuge { hugeAt.append(e.address) } }
        for h in hugeAt { splitHugePMD(mm, vma, at: h) }
        var addrs: [VirtAddr] = []
        PageWalk.forEachEntry(of: vma, in: mm) { e in if e.isPresent && !e.isSpecial { addrs.append(e.address) } }
        var done = 0
        let pt = mm.pageTable
        for a in addrs where done < want {
            guard let slot = pt.pteSlot(a) else { continue }
            let e = pt[slot]
            guard e.isPresent, !e.isSpecial else { continue }
            machine.clock.charge(.lruScan)
            let page = e.pfn(layout)
            let f = allocator.flags(page)
            guard f.contains(.anon), f.isDisjoint(with: [.pinned, .ksm, .mlocked, .reserved, .zeroPage]),
                  allocator.compoundOrder(allocator.compoundHead(page)) == .base,
                  allocator.refcount(page) == allocator.mapcount(page) else { continue }
            if age && e.isAccessed {
                // folio_referenced(): clear young, flush, keep the page this time.
                pt.clearBits(slot, PTEFlags.accessed.rawValue)
                flushTLBRange(mm, a, a.advanced(by: UInt64(pageSize)))
                continue
            }
            if swapOutPage(page) { done += 1 }
        }
        return done
    }

    /// pageout() + try_to_unmap() of one anonymous page: false if some mapping could not be found.
    func swapOutPage(_ page: PFN) -> Bool {
        // Every PTE mapping the page: the rmap walk (try_to_unmap), or — for mappings it cannot
        // reach — a search of every page table.
        var places: [(MM, VirtAddr, Int)] = []
        rmapWalk(page) { mm, _, a in
            if let s = mm.pageTable.pteSlot(a), mm.pageTable[s].mapsFrame, !mm.pageTable[s].isSpecial,
               mm.pageTable[s].pfn(self.layout) == page, !places.contains(where: { $0.0 === mm && $0.2 == s }) {
                places.append((mm, a, s))
            }
        }
        if places.count != Int(allocator.mapcount(page)) {
            places = []
            for (_, mm) in distinctMMs {
                for vma in mm.vmas where vma.isAnonymous {
                    PageWalk.forEachEntry(of: vma, in: mm) { e in
                        if !e.isHuge, !e.isSpecial, e.pfn == page, let s = mm.pageTable.pteSlot(e.address) {
                            places.append((mm, e.address, s))
                        }
                    }
                }
            }
        }
        guard !places.isEmpty, places.count == Int(allocator.mapcount(page)) else { return false }
        // The CPU reads the page through its KeyID: the swap device receives plaintext.
        let bytes = kernelRead(page, count: pageSize)
        machine.clock.charge(.copyPage)
        let offset = mktme.nextSwapOffset
        mktme.nextSwapOffset &+= 1
        mktme.swapSlots[offset] = SwapSlot(bytes: bytes, count: places.count)
        let swp = SwapEntry(type: 0, offset: offset).pte
        for (mm, a, s) in places {
            mm.pageTable.set(s, swp)
            machine.clock.charge(.pteUpdate)
            flushTLBRange(mm, a, a.advanced(by: UInt64(pageSize)))
            allocator.decMapcount(page)
            allocator.putPage(page)
        }
        mktme.pswpout &+= 1
        return true
    }

    /// Installs do_swap_page and the swap-count hooks of the page-table layer (once).
    func installSwapHooks() {
        guard !mktme.swapHooksInstalled else { return }
        mktme.swapHooksInstalled = true
        pgtable.swapIn = { [unowned self] mm, vma, addr, slot in self.doSwapPage(mm, vma, addr, slot) }
        pgtable.swapEntryFreed = { [unowned self] e in self.swapFree(e.offset) }
        pgtable.swapEntryDuplicated = { [unowned self] e in self.mktme.swapSlots[e.offset]?.count += 1 }
    }

    /// do_swap_page(): resolves a fault on the swap entry in PTE slot `slot`.
    func doSwapPage(_ mm: MM, _ vma: VMA, _ addr: VirtAddr, _ slot: Int) -> FaultResult {
        let pt = mm.pageTable
        guard let swp = SwapEntry(pt[slot]), let stored = mktme.swapSlots[swp.offset] else { return .sigbus }
        let page: PFN
        if let cached = mktme.swapCache[swp.offset] {
            page = cached
            allocator.getPage(page)
        } else {
            guard let anon = anonVMA(for: vma, in: mm),
                  let new = allocUserPages(vma, addr.pageDown, order: .base, zero: false) else { return .oom }
            // The swapped bytes are written through the new page's KeyID (encrypted in DRAM).
            kernelWrite(new, stored.bytes)
            machine.clock.charge(.copyPage)
            allocator.setMapping(new, mapping: anon, index: vma.pageIndex(of: addr))
            allocator.setFlags(new, [.anon, .swapBacked, .uptodate])
            page = new
            if stored.count > 1 {
                // Other PTEs still name the slot: keep the page in the swap cache.
                allocator.getPage(page)
                mktme.swapCache[swp.offset] = page
            }
            mktme.pswpin &+= 1
        }
        allocator.incMapcount(page)
        let flags = vma.vmPageProt.flags.rawValue | PTEFlags.accessed.rawValue
        pt.set(slot, PTE(pfn: page, prot: PageProt(flags: PTEFlags(rawValue: flags), keyid: allocator.pageKeyID(page)), layout: layout))
        machine.clock.charge(.pteUpdate)
        swapFree(swp.offset)
        return .ok
    }

    /// Migration of a swap-cache page: the cache names the new frame (its reference moved
    /// with the page's metadata).
    func swapCacheReplace(_ old: PFN, with new: PFN) {
        for (offset, page) in mktme.swapCache where page == old { mktme.swapCache[offset] = new }
    }

    /// swap_free(): one swap PTE fewer; the slot (and its swap-cache page) go at zero.
    func swapFree(_ offset: UInt64) {
        guard var s = mktme.swapSlots[offset] else { return }
        s.count -= 1
        if s.count > 0 {
            mktme.swapSlots[offset] = s
            return
        }
        mktme.swapSlots[offset] = nil
        if let cached = mktme.swapCache.removeValue(forKey: offset) { allocator.putPage(cached) }
    }

    /// The swap slot a swapped-out address's PTE names (nil if the address is not swapped out).
    public func swapOffset(_ task: TaskStruct, _ addr: VirtAddr) -> UInt64? {
        guard let slot = task.mm.pageTable.pteSlot(addr), let swp = SwapEntry(task.mm.pageTable[slot]) else { return nil }
        return swp.offset
    }
}
