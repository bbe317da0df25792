// The page walk behind /proc/PID/smaps (smaps_pte_range / smaps_account, through PageWalk): per-VMA Rss,
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
        // smaps_pte_entry / smaps_pmd_entry: every non-none entry of the VMA.
        PageWalk.forEachEntry(of: vma, in: mm, visit: .nonNone) { e in
            let size = e.size
            if e.isSwap { if !e.isMarker { st.swap &+= size }; return }   // guard markers are not swap
            guard e.mapsFrame, !e.isSpecial else { return }
            let page = e.pfn
            if isZeroPFN(page) || isHugeZeroPFN(page) { return }
            let f = allocator.flags(page)
            let anon = f.contains(.anon)
            let dirty = e.isDirty || f.contains(.dirty)
            st.rss &+= size
            if anon {
                st.anonymous &+= size
                if e.isHuge { st.anonHuge &+= size }
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
        st.pss = pss >> pssShift
        st.pssDirty = pssDirty >> pssShift
        st.pssAnon = pssAnon >> pssShift
        st.pssFile = pssFile >> pssShift
        st.locked = pssLocked >> pssShift
        return st
    }
}
