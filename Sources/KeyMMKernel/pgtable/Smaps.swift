// The page walk behind /proc/PID/smaps (smaps_pte_range / smaps_account): per-VMA Rss,
// Pss, shared/private clean/dirty, Referenced, Anonymous, AnonHugePages, Swap, Locked.
//
// Invariants: special entries (the zero pages, raw PFNs) count nowhere, as vm_normal_page()
// returns no page for them; a page with one reference is private; otherwise a page mapped
// more than once is shared and its Pss is divided by its mapcount (with the kernel's
// PSS_SHIFT fixed point, rounded down once at the end).
import KeyMMBase

extension Kernel {
    /// smaps counters for one VMA.
    public func vmaPageStats(_ mm: MM, _ vma: VMA) -> VMAPageStats {
        var st = VMAPageStats()
        let pssShift: UInt64 = 12
        var pss: UInt64 = 0, pssDirty: UInt64 = 0, pssAnon: UInt64 = 0, pssFile: UInt64 = 0, pssLocked: UInt64 = 0
        let locked = !vma.vmFlags.isDisjoint(with: .lockedMask)
        let pt = mm.pageTable
        func account(_ e: PTE, _ size: UInt64) {
            if e.isSwap { if !e.isMarker { st.swap &+= size }; return }
            guard e.mapsFrame, !e.isSpecial else { return }
            let page = size == pmdSize ? e.hugePFN(layout) : e.pfn(layout)
            if isZeroPFN(page) || isHugeZeroPFN(page) { return }
            let f = allocator.flags(page)
            let anon = f.contains(.anon)
            let dirty = e.isDirty || f.contains(.dirty)
            st.rss &+= size
            if anon {
                st.anonymous &+= size
                if size == pmdSize { st.anonHuge &+= size }
            }
            if e.isAccessed || f.contains(.referenced) { st.referenced &+= size }
            let mapcount = max(allocator.mapcount(page), 1)
            let exclusive = allocator.refcount(page) == 1 || mapcount < 2
            let p = exclusive ? size << pssShift : (size << pssShift) / UInt64(mapcount)
            pss &+= p
            if anon { pssAnon &+= p } else { pssFile &+= p }
            if dirty { pssDirty &+= p }
            if locked { pssLocked &+= p }
            if exclusive {
                if dirty { st.privateDirty &+= size } else { st.privateClean &+= size }
            } else {
                if dirty { st.sharedDirty &+= size } else { st.sharedClean &+= size }
            }
        }
        pt.forEachPMD(vma.vmStart, vma.vmEnd) { ps, a, next in
            let pmd = pt.raw(ps)
            if pmd == 0 { return }
            if pmd & PTEFlags.pse.rawValue != 0 {
                account(PTE(raw: pmd), pmdSize)
            } else if PageTable.isTable(pmd) {
                let base = pt.pteTableBase(pmd)
                var v = a
                while v < next {
                    let e = pt[base | PageTable.pteIndex(v)]
                    if !e.isNone { account(e, UInt64(pageSize)) }
                    v &+= UInt64(pageSize)
                }
            }
        }
        st.pss = pss >> pssShift
        st.pssDirty = pssDirty >> pssShift
        st.pssAnon = pssAnon >> pssShift
        st.pssFile = pssFile >> pssShift
        st.locked = pssLocked >> pssShift
        return st
    }
}
