// The seam between the VMA layer (mm/) and the page-table layer (pgtable/): every call the
// VMA code makes into page tables goes through one of these wrappers, so the contract is
// visible in one place. The callee side lives in Sources/KeyMMKernel/pgtable.
//
// Invariant: the VMA layer never edits PTEs itself.
import KeyMMBase

extension Kernel {
    /// Split a huge PMD mapping straddling `address` (vma_adjust_trans_huge).
    @inline(__always) func glueSplitHugePMD(_ mm: MM, _ vma: VMA, at address: VirtAddr) {
        splitHugePMD(mm, vma, at: address)
    }

    /// Unmap the pages of [start, end) of `vma` (munmap, MAP_FIXED over, exit: guard markers
    /// go too; MADV_DONTNEED and friends pass `keepMarkers`).
    @inline(__always) func glueZap(_ mm: MM, _ vma: VMA, _ start: VirtAddr, _ end: VirtAddr, keepMarkers: Bool = false) {
        guard start < end else { return }
        zapPageRange(mm, vma, start, end, dropMarkers: !keepMarkers)
    }

    /// Install guard markers on every page of [start, end) of `vma` (present pages zapped
    /// first, markers already there kept).
    @inline(__always) func glueInstallGuards(_ mm: MM, _ vma: VMA, _ start: VirtAddr, _ end: VirtAddr) -> Errno? {
        installGuardMarkers(mm, vma, start, end)
    }

    /// Remove the guard markers of [start, end) of `vma`.
    @inline(__always) func glueRemoveGuards(_ mm: MM, _ vma: VMA, _ start: VirtAddr, _ end: VirtAddr) {
        removeGuardMarkers(mm, vma, start, end)
    }

    /// Rewrite the PTEs of [start, end) with `vma`'s new vm_page_prot (mprotect).
    @inline(__always) func glueChangeProtection(_ mm: MM, _ vma: VMA, _ start: VirtAddr, _ end: VirtAddr) {
        changeProtection(mm, vma, start, end, vma.vmPageProt)
    }

    /// Move the PTEs of an mremap.
    @inline(__always) func glueMovePageTables(_ mm: MM, from: VMA, oldStart: VirtAddr, to: VMA,
                                              newStart: VirtAddr, length: UInt64) {
        guard length > 0 else { return }
        movePageTables(mm, from: from, oldStart: oldStart, to: to, newStart: newStart, length: length)
    }

    /// fork: copy (COW) the parent's PTEs of `srcVMA` into the child.
    @inline(__always) func glueCopyPageRange(dst: MM, src: MM, dstVMA: VMA, srcVMA: VMA) {
        copyPageRange(dst: dst, src: src, dstVMA: dstVMA, srcVMA: srcVMA)
    }

    /// exit/exec: free every page table of the mm.
    @inline(__always) func glueFreePageTables(_ mm: MM) {
        freePageTables(mm)
    }

    /// populate_vma_page_range(): fault in [start, end) of `vma` as get_user_pages does for
    /// mlock / MAP_POPULATE. VM_LOCKONFAULT VMAs are left alone; PROT_NONE fails with EFAULT;
    /// private writable mappings take write faults (breaking COW), the rest read faults.
    func populateVMAPageRange(_ task: TaskStruct, _ vma: VMA, _ start: VirtAddr, _ end: VirtAddr) -> Errno? {
        let f = vma.vmFlags
        if f.contains(.lockOnFault) { return nil }
        if f.isDisjoint(with: [.read, .write, .exec]) { return .EFAULT }
        let write = f.intersection([.write, .shared]) == .write
        if write { gupPrepareAnon(task, vma, start, end) }
        return populate(task, vma, start, end, write: write)
    }

    /// A get_user_pages write fault on a private file mapping prepares the anon_vma before the
    /// file page is looked up (do_cow_fault → vmf_anon_prepare), so even a range beyond EOF
    /// (which then fails with SIGBUS/EFAULT) leaves the VMA with an anon_vma. The host's CPU
    /// fault path does not (measured on 6.18), which is why this lives here and not in the
    /// shared fault handler.
    func gupPrepareAnon(_ task: TaskStruct, _ vma: VMA, _ start: VirtAddr, _ end: VirtAddr) {
        let f = vma.vmFlags
        guard vma.vmFile != nil, vma.anonVMA == nil, f.contains(.write), !f.contains(.shared),
              start < end, f.isDisjoint(with: [.io, .pfnMap]) else { return }
        anonVMAPrepare(vma, in: task.mm)
    }

    /// smaps counters of one VMA.
    @inline(__always) func glueVMAStats(_ mm: MM, _ vma: VMA) -> VMAPageStats {
        vmaPageStats(mm, vma)
    }

    /// MADV_COLLAPSE on [start, end) of one VMA.
    @inline(__always) func glueCollapse(_ mm: MM, _ vma: VMA, _ start: VirtAddr, _ end: VirtAddr) -> Errno? {
        collapseHugePages(mm, vma, start, end)
    }
}
