// gup_pin / gup_unpin: a driver pinning user pages with pin_user_pages(FOLL_PIN | FOLL_LONGTERM)
// and releasing them with unpin_user_pages (docs/sources.md, seed 000: "the page may live longer than VMA it is
// mapped into (i.e. in get_user_pages() case) and having refcounting per-VMA is not enough").
//
// gup_pin(task, addr, npages): addr is rounded down to its page; each page is faulted in as GUP
// does (a write fault when the VMA is writable, breaking COW so the pinned page is the task's
// own; a read fault otherwise), then pinned: one page reference (the pin), PG_pinned, the pin
// count, and mm->pinned_vm. A huge PMD is split first (model simplification: pins are kept per
// 4 KiB page; the KeyID references are per 4 KiB anyway). The pin holds the pages — and through
// them their per-page KeyID references — after munmap, exit, and the key's destruction; the
// KeyID is released (CLEAR_KEY) only when the last pinned page is unpinned and freed.
// Errors: EINVAL for npages <= 0; EFAULT when a page cannot be pinned (no VMA, VM_IO/VM_PFNMAP,
// no permission incl. pkeys, a special entry, a fault that signals); nothing stays pinned then
// (the model's gup_pin is all-or-nothing; pin_user_pages may return a short count).
//
// Invariants: see MKTMEState (pin counts and PG_pinned agree; one page reference per pin).
import KeyMMBase

extension Kernel {
    /// gup_pin(addr, npages): pins the pages; returns the pin handle. `handle` is the id a trace
    /// recorded (honoured when free).
    public func gupPin(_ task: TaskStruct, _ addr: VirtAddr, _ npages: Int, handle: Int32? = nil) -> Result<Int32, Errno> {
        guard npages > 0, npages <= 1 << 24 else { return .failure(.EINVAL) }
        let mm = task.mm
        var frames: [PFN] = []
        frames.reserveCapacity(npages)
        var a = addr.pageDown
        for _ in 0..<npages {
            guard let pfn = gupFaultInPage(task, a) else {
                for f in frames { unpinFrame(f) }
                mm.pinnedVM &-= UInt64(frames.count)
                return .failure(.EFAULT)
            }
            pinFrame(pfn)
            mm.pinnedVM &+= 1
            frames.append(pfn)
            a = a.advanced(by: UInt64(pageSize))
        }
        var h: Int32
        if let want = handle, want > 0, mktme.pins[want] == nil {
            h = want
        } else {
            h = mktme.nextPinHandle
            while mktme.pins[h] != nil { h &+= 1 }
        }
        if h >= mktme.nextPinHandle { mktme.nextPinHandle = h &+ 1 }
        mktme.pins[h] = PinRecord(mm: mm, frames: frames)
        return .success(h)
    }

    /// gup_unpin(handle): unpin_user_pages() of everything the pin holds. EINVAL for an unknown handle.
    public func gupUnpin(_ handle: Int32) -> Result<Void, Errno> {
        guard let pin = mktme.pins.removeValue(forKey: handle) else { return .failure(.EINVAL) }
        for f in pin.frames { unpinFrame(f) }
        pin.mm.pinnedVM = pin.mm.pinnedVM >= UInt64(pin.frames.count) ? pin.mm.pinnedVM - UInt64(pin.frames.count) : 0
        return .success(())
    }

    /// Faults in the page at `addr` as GUP does and returns its frame (nil: EFAULT).
    func gupFaultInPage(_ task: TaskStruct, _ addr: VirtAddr) -> PFN? {
        guard let vma = task.mm.vma(containing: addr) else { return nil }
        let writable = vma.vmFlags.contains(.write)
        guard let e = gupFaultIn(task, addr, write: writable), !e.isSpecial else { return nil }
        return e.pfn(layout)
    }

    /// follow_page + the fault loop of __get_user_pages for one page: the 4 KiB entry that maps
    /// `addr` with the rights asked for (a huge PMD is split first), nil when it cannot be had.
    func gupFaultIn(_ task: TaskStruct, _ addr: VirtAddr, write: Bool) -> PTE? {
        let mm = task.mm
        guard let vma = mm.vma(containing: addr), gupCheckVMAFlags(task, vma, write: write) else { return nil }
        let pt = mm.pageTable
        for _ in 0..<3 {
            switch pt.walk(addr) {
            case .huge:
                splitHugePMD(mm, vma, at: addr)
                continue
            case .pte(_, let slot):
                let e = pt[slot]
                if e.isPresent && (!write || e.isWritable) { return e }
            case .none:
                break
            }
            guard handleMMFault(mm, vma, addr, write ? .write : .read) == .ok else { return nil }
        }
        return nil
    }

    /// One FOLL_PIN reference on a 4 KiB frame.
    func pinFrame(_ pfn: PFN) {
        allocator.getPage(pfn)
        allocator.setFlags(pfn, .pinned)
        mktme.pinCount[pfn, default: 0] += 1
    }

    /// unpin_user_page(): the pin's reference goes (the page is freed if it was the last one).
    func unpinFrame(_ pfn: PFN) {
        let n = (mktme.pinCount[pfn] ?? 0) - 1
        if n <= 0 {
            mktme.pinCount[pfn] = nil
            allocator.clearFlags(pfn, .pinned)
        } else {
            mktme.pinCount[pfn] = n
        }
        allocator.putPage(pfn)
    }
}
