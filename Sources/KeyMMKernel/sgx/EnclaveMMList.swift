// The two ways of tracking the mms that map an enclave (seed 004), selected by `sgx-mm-tracking`.
// docs/sources.md, seed 004 and "SGX driver (arch/x86/kernel/cpu/sgx)"; docs/sgx.md compares them.
//
// notifier (as merged): sgx_mmap and vm_ops->open (fork, split) call sgx_encl_mm_add, which puts the
// mm on mm_list once (an SRCU walk finds it already there otherwise), takes an enclave reference,
// registers an mmu_notifier on the mm and bumps mm_list_version. The entry stays until the mm exits
// (.release: list_del_rcu, synchronize_srcu, mmu_notifier_put, then .free_notifier drops the
// enclave reference and frees it) or the file is released (sgx_release drains the list with
// mmu_notifier_unregister). No vm_ops->close, so VMAs may merge; an mm that unmapped the enclave
// keeps a stale entry.
//
// vma-refcount (the 2019 RFC): every VMA holds a reference on its mm's encl_mm (sgx_mmap for a new
// VMA, vm_ops->open for a copy, vm_ops->close drops it); the entry goes when the mm's last enclave
// VMA closes. vm_ops->close keeps those VMAs from merging (is_mergeable_vma / can_merge_remove_vma,
// per `vm-close-merge`). Walkers pin the entry they stand on with a reference (the 2019 walker's
// kref_get_unless_zero) instead of SRCU.
//
// Walks (aging, blocking, the IPI mask, `sgx_walk_begin`) go through `walkMMList`, which checks
// every entry it reaches: reaching a freed encl_mm is the use after free SRCU exists to prevent.
//
// Invariants: under notifier an mm is on an enclave's list at most once and an encl_mm is freed only
// after every walker that could see it has left (an SRCU grace period); under vma-refcount an
// entry's refcount equals its mm's enclave VMAs plus the walkers standing on it, and it is on the
// list exactly while that is positive.
import KeyMMBase
import KeyMMHardware

/// A walker preempted inside its mm_list walk (`sgx_walk_begin`): ksgxd between two entries.
struct SGXHeldWalk {
    let enclave: SGXEnclave
    let reader: SRCUStruct.Reader?
    var position: SGXEnclMM?
    var visited: Int
}

extension SGXDriver {
    // MARK: lookups

    /// The listed entry for `mm`, walking the list as sgx_encl_find_mm does (under SRCU).
    func findEnclMM(_ encl: SGXEnclave, _ mm: MM) -> SGXEnclMM? {
        var found: SGXEnclMM?
        walkMMList(encl, charge: false, skipDead: false) { e in
            if e.mm === mm && e.listed && (tracking == .notifier || e.refcount > 0) { found = e; return false }
            return true
        }
        return found
    }

    /// Walks mm_list the way the driver's walkers do: under SRCU (notifier design), following the
    /// RCU links, checking each entry reached; `skipDead`: entries whose mm fails mmget_not_zero are
    /// skipped. `body` returns false to stop.
    func walkMMList(_ encl: SGXEnclave, charge: Bool = true, skipDead: Bool = true, _ body: (SGXEnclMM) -> Bool) {
        let reader = tracking == .notifier ? encl.srcu.readLock() : nil
        var cur = encl.mmHead
        var steps = 0
        while let e = cur, steps < 1 << 20 {
            steps += 1
            touch(e, by: "a walk of mm_list")
            if e.freed { break }   // the walker went off into freed memory: stop (the violation is recorded)
            if skipDead && (e.mm.tornDown || e.mm.users <= 0) { cur = e.next; continue }
            if charge { clock.charge(.sgxMMWalk) }
            if !body(e) { break }
            cur = e.next
        }
        if let reader { encl.srcu.readUnlock(reader) }
    }

    /// A walker reads `e`: a freed encl_mm here is a use after free.
    func touch(_ e: SGXEnclMM, by who: String) {
        if e.freed {
            anomaly(.srcuUseAfterFree, "\(who) of the enclave of description \(e.enclave.openID) reached an encl_mm that was already freed (mm of \(describe(e.mm)))")
        }
    }

    func describe(_ mm: MM) -> String {
        if let pid = kernel.tasks.keys.sorted().first(where: { kernel.tasks[$0]?.mm === mm }) { return "pid \(pid)" }
        return "an exited process"
    }

    // MARK: list primitives

    func listAdd(_ encl: SGXEnclave, _ e: SGXEnclMM) {
        changed()
        e.next = encl.mmHead
        encl.mmHead = e
        e.listed = true
        encl.mmListVersion &+= 1
        e.bornAt = now
        clock.count(.sgxEnclMMAllocs)
    }

    /// list_del_rcu(): unlinks `e`, which keeps its own link for readers standing on it.
    func listDel(_ encl: SGXEnclave, _ e: SGXEnclMM) {
        changed()
        guard e.listed else { return }
        e.listed = false
        if encl.mmHead === e { encl.mmHead = e.next; return }
        var cur = encl.mmHead
        while let c = cur {
            if c.next === e { c.next = e.next; return }
            cur = c.next
        }
    }

    /// kfree(encl_mm).
    func freeEnclMM(_ e: SGXEnclMM) {
        changed()
        if e.freed { anomaly(.mmList, "encl_mm of \(describe(e.mm)) freed twice"); return }
        e.freed = true
        unfreedEnclMMs[ObjectIdentifier(e)] = nil
        clock.count(.sgxEnclMMFrees)
        enclMMLifetimes.append(now &- e.bornAt)
    }

    // MARK: notifier design

    /// sgx_encl_mm_add() (mmap_lock held for write, so an mm is added at most once).
    func enclMMAdd(_ encl: SGXEnclave, _ mm: MM) -> Errno? {
        changed()
        if !kernel.config.bugs.contains(.sgxEnclMMAddedTwice), findEnclMM(encl, mm) != nil { return nil }   // seeded bug
        let e = SGXEnclMM(driver: self, enclave: encl, mm: mm)
        unfreedEnclMMs[ObjectIdentifier(e)] = e
        encl.refcount += 1                                   // the encl_mm's enclave reference
        let n = MMUNotifier(ops: e)
        e.notifier = n
        if let err = kernel.mmuNotifierRegister(n, mm) {
            encl.refcount -= 1
            return err
        }
        listAdd(encl, e)
        return nil
    }

    /// sgx_mmu_notifier_release(): the mm exits. The entry leaves the list (if sgx_release has not
    /// taken it already); it is put once no walker can still be standing on it.
    func notifierRelease(_ e: SGXEnclMM) {
        changed()
        let encl = e.enclave
        guard e.listed else { return }
        listDel(encl, e)
        guard let n = e.notifier else { return }
        if kernel.config.bugs.contains(.sgxReleaseWithoutSRCUSync) {   // seeded bug
            kernel.mmuNotifierPut(n)
        } else {
            encl.srcu.synchronize { [weak kernel] in kernel?.mmuNotifierPut(n) }
        }
    }

    /// sgx_mmu_notifier_free(): the enclave reference goes, the encl_mm is freed.
    func notifierFree(_ e: SGXEnclMM) {
        changed()
        freeEnclMM(e)
        enclPut(e.enclave)
    }

    /// sgx_release()'s drain: each remaining entry leaves the list, and after a grace period its
    /// notifier is unregistered, it is freed and its enclave reference goes.
    func drainMMList(_ encl: SGXEnclave) {
        changed()
        while let e = encl.mmHead.flatMap({ head -> SGXEnclMM? in
            var c: SGXEnclMM? = head
            while let x = c, !x.listed { c = x.next }
            return c
        }) {
            listDel(encl, e)
            encl.srcu.synchronize { [weak self] in
                guard let self else { return }
                if let n = e.notifier { self.kernel.mmuNotifierUnregister(n, e.mm) }
                self.freeEnclMM(e)
                self.enclPut(encl)
            }
        }
    }

    // MARK: vma-refcount design

    /// A new or copied enclave VMA in `mm` takes a reference on the mm's encl_mm (made if needed).
    func vmaReference(_ encl: SGXEnclave, _ mm: MM) {
        changed()
        if !kernel.config.bugs.contains(.sgxEnclMMAddedTwice), let e = findEnclMM(encl, mm) {   // seeded bug
            e.refcount += 1
            return
        }
        let e = SGXEnclMM(driver: self, enclave: encl, mm: mm)
        unfreedEnclMMs[ObjectIdentifier(e)] = e
        e.refcount = 1
        listAdd(encl, e)
    }

    /// sgx_vma_close(): the VMA's reference goes; the last one frees the entry.
    func vmaUnreference(_ encl: SGXEnclave, _ mm: MM) {
        changed()
        guard let e = findEnclMM(encl, mm) else { return }
        if kernel.config.bugs.contains(.sgxCloseSkipsPut) { return }   // seeded bug
        enclMMPut(e)
    }

    /// kref_put(&encl_mm->refcount, sgx_encl_mm_release) of the 2019 driver.
    func enclMMPut(_ e: SGXEnclMM) {
        changed()
        e.refcount -= 1
        if e.refcount == 0 {
            listDel(e.enclave, e)
            freeEnclMM(e)
        }
    }

    // MARK: the held walker (sgx_walk_begin / sgx_walk_end)

    /// Starts a walk of the enclave's mm_list and stops at its first entry, as ksgxd preempted inside
    /// its read-side section (notifier: srcu_read_lock held; vma-refcount: a reference on the entry).
    func walkBegin(_ encl: SGXEnclave, handle: Int32?) -> Int32 {
        changed()
        encl.refcount += 1                                   // the reclaimer's kref_get_unless_zero
        let reader = tracking == .notifier ? encl.srcu.readLock() : nil
        var pos = encl.mmHead
        if tracking == .vmaRefcount {
            while let p = pos, p.refcount <= 0 { pos = p.next }
        }
        if let p = pos {
            touch(p, by: "a held walk")
            clock.charge(.sgxMMWalk)
            if tracking == .vmaRefcount { p.refcount += 1; p.walkerRefs += 1 }
        }
        var h = nextWalk
        if let want = handle, want > 0, walks[want] == nil { h = want } else { nextWalk &+= 1 }
        if h >= nextWalk { nextWalk = h &+ 1 }
        walks[h] = SGXHeldWalk(enclave: encl, reader: reader, position: pos, visited: pos == nil ? 0 : 1)
        return h
    }

    /// Resumes a held walk: it reads the entry it stood on, follows the links to the end, leaves its
    /// read-side section (which may end a grace period) and drops its enclave reference. Returns the
    /// entries visited in all.
    func walkEnd(_ h: Int32) -> Int? {
        changed()
        guard let w = walks.removeValue(forKey: h) else { return nil }
        var visited = w.visited
        if let p = w.position {
            touch(p, by: "a held walk")
            var cur = p.freed ? nil : p.next
            if tracking == .vmaRefcount {
                p.walkerRefs -= 1
                enclMMPut(p)
            }
            var steps = 0
            while let e = cur, steps < 1 << 20 {
                steps += 1
                touch(e, by: "a held walk")
                if e.freed { break }
                clock.charge(.sgxMMWalk)
                visited += 1
                cur = e.next
            }
        }
        if let r = w.reader { w.enclave.srcu.readUnlock(r) }
        enclPut(w.enclave)
        return visited
    }
}

extension Kernel {
    /// sgx_walk_begin(FD): a walk of the enclave's mm_list that stops at its first entry and stays
    /// inside its read-side section until `sgxWalkEnd` (model only). Returns the handle.
    package func sgxWalkBegin(_ task: TaskStruct, fd: Int32, handle: Int32? = nil) -> Result<Int32, Errno> {
        guard let d = sgx else { return .failure(.EBADF) }
        return d.enclave(task, fd: fd).map { d.walkBegin($0, handle: handle) }
    }

    /// sgx_walk_end(HANDLE): finishes a held walk; the entries visited, or EINVAL for an unknown handle.
    package func sgxWalkEnd(_ handle: Int32) -> Result<Int, Errno> {
        guard let d = sgx, let n = d.walkEnd(handle) else { return .failure(.EINVAL) }
        return .success(n)
    }
}
