// The EPC reclaimer (arch/x86/kernel/cpu/sgx/main.c: sgx_reclaim_pages and ksgxd): a batch of up
// to SGX_NR_TO_SCAN pages from the head of the active list is aged (the PTE accessed bit in every
// mm on the enclave's mm_list: a young page goes back to the tail), given backing storage, blocked
// (its PTEs zapped in every mm, the walk repeated if mm_list_version changed meanwhile, then
// EBLOCK), and written back (EWB into a VA slot; on SGX_NOT_TRACKED ETRACK and retry, then IPIs to
// the CPUs of every mm on mm_list and a last try); a SECS follows its last child out. Costs come
// from the ENCLS leaves, the mm_list walks (sgx_mm_walk per encl_mm visited) and the zaps.
// docs/sources.md, "SGX driver"; docs/sgx.md.
//
// Invariants: after a batch, every page it wrote back has no PTE left in any mm (each mm on mm_list
// had it zapped, and only mms on mm_list can map it) and its contents are sealed in the backing
// storage with the version in its VA slot; pages the batch skipped are back on the active list's
// tail; the enclave references the batch took are dropped.
import KeyMMBase
import KeyMMHardware

extension SGXDriver {
    /// sgx_reclaim_pages(): one batch; returns the pages written back.
    @discardableResult
    func reclaimPages() -> Int {
        changed()
        reclaimBatches += 1
        var chunk: [(EPCPage, SGXEnclavePage)] = []
        while chunk.count < SGXReclaimConstants.nrToScan, epc.activeHead >= 0 {
            let p = EPCPage(Int(epc.activeHead))
            epc.activeRemove(p)                              // isolated: still tracked, off the list
            clock.charge(.lruScan)
            guard case .page(let owner) = epc.owner[p.rawValue] else {
                anomaly(.epcAccounting, "\(p) on the active list is not an enclave page")
                epc.tracked[p.rawValue] = false
                continue
            }
            if owner.enclave.refcount > 0 && !owner.enclave.freed {
                owner.enclave.refcount += 1                 // kref_get_unless_zero
                chunk.append((p, owner))
            } else {
                epc.tracked[p.rawValue] = false             // its owner is freeing it
            }
        }
        var selected: [(EPCPage, SGXEnclavePage)] = []
        for (p, owner) in chunk {
            if age(owner) && allocBacking(owner) {
                owner.beingReclaimed = true
                selected.append((p, owner))
            } else {
                epc.activeAppend(p)                          // young, or no backing: back to the tail
                enclPut(owner.enclave)
            }
        }
        for (_, owner) in selected { block(owner) }
        for (p, owner) in selected {
            write(owner)
            let encl = owner.enclave
            epc.tracked[p.rawValue] = false
            freeEPCPage(p)
            enclPut(encl)
        }
        pagesWrittenBack += selected.count
        return selected.count
    }

    /// sgx_reclaimer_age(): false if some mm accessed the page since the last scan (the accessed
    /// bits are cleared on the way).
    func age(_ page: SGXEnclavePage) -> Bool {
        var old = true
        walkMMList(page.enclave) { e in
            reclaimMMVisits += 1
            if testAndClearYoung(e.mm, page) { old = false; return false }
            return true
        }
        return old
    }

    /// sgx_encl_alloc_backing(): a page of ordinary memory for the sealed contents.
    func allocBacking(_ page: SGXEnclavePage) -> Bool {
        let encl = page.enclave
        let index = encl.backingIndex(page)
        if encl.backing[index] != nil { return true }
        guard let frame = kernel.allocator.allocPages(order: .base, keyid: .tme, gfp: []) else { return false }
        encl.backing[index] = SGXBackingPage(frame: frame, pcmd: PCMD(eid: EnclaveID(0), linear: 0, type: .reg, permissions: [], mac: [], sealedVersion: 0))
        return true
    }

    /// sgx_reclaimer_block(): zap the page's PTE in every mm on mm_list (again if an mm joined
    /// meanwhile), then EBLOCK.
    func block(_ page: SGXEnclavePage) {
        let encl = page.enclave
        var rounds = 0
        repeat {
            let version = encl.mmListVersion
            var mms: [MM] = []
            walkMMList(encl) { e in
                reclaimMMVisits += 1
                mms.append(e.mm)
                return true
            }
            // Seeded bug: the last mm on the list keeps its PTE.
            let zapped = kernel.config.bugs.contains(.sgxReclaimSkipsZap) && mms.count > 1 ? mms.dropLast() : mms[...]
            for mm in zapped { zapEnclavePTE(mm, page) }
            rounds += 1
            if encl.mmListVersion == version { break }
            clock.count(.sgxBlockRetries)
        } while rounds < 16
        if let p = page.epc {
            let r = unit.eblock(p)
            if case .fault = r { anomaly(.epcAccounting, "EBLOCK of \(p) faulted") }
        }
    }

    /// sgx_reclaimer_write(): EWB the page; when it was the SECS's last child, the SECS follows.
    func write(_ page: SGXEnclavePage) {
        let encl = page.enclave
        ewb(page)
        page.epc = nil
        encl.secsChildCount -= 1
        if encl.secsChildCount == 0 && encl.initialized, let s = encl.secs.epc {
            if allocBacking(encl.secs) {
                ewb(encl.secs)
                encl.secs.epc = nil
                enclFreeEPCPage(s)                          // EREMOVE of the now invalid page: a no-op
            }
        }
    }

    /// sgx_encl_ewb(): EWB into the first VA page's next slot; on SGX_NOT_TRACKED, ETRACK and retry;
    /// still not tracked, IPI the CPUs of every mm on mm_list and try once more. A final failure
    /// frees the slot and loses the page (the driver's ENCLS_WARN).
    func ewb(_ page: SGXEnclavePage) {
        let encl = page.enclave
        page.beingReclaimed = false
        guard let epcPage = page.epc, let va = encl.vaPages.first, let eid = encl.eid else {
            anomaly(.enclaveContents, "no VA page to write back the page at \(Fmt.hex(page.linear)) of description \(encl.openID)")
            return
        }
        let slot = va.allocSlot()
        if va.isFull {
            encl.vaPages.removeFirst()
            encl.vaPages.append(va)
        }
        var r = unit.ewb(epcPage, va: va.epc, slot: slot)
        if case .failure(.status(.notTracked)) = r {
            clock.count(.sgxNotTracked)
            _ = unit.etrack(eid)
            r = unit.ewb(epcPage, va: va.epc, slot: slot)
            if case .failure(.status(.notTracked)) = r {
                clock.count(.sgxNotTracked)
                ipi(encl, eid)
                r = unit.ewb(epcPage, va: va.epc, slot: slot)
            }
        }
        switch r {
        case .success(let sealed):
            let index = encl.backingIndex(page)
            if let b = encl.backing[index] {
                kernel.kernelWrite(b.frame, sealed.blob)
                encl.backing[index]!.pcmd = sealed.pcmd
            }
            if let prev = encl.lastSealed[index] { encl.olderSealed[index] = prev }
            encl.lastSealed[index] = sealed
            page.va = va
            page.vaSlot = slot
        case .failure(let why):
            va.freeSlot(slot)
            anomaly(.enclaveContents, "EWB of the page at \(Fmt.hex(page.linear)) of description \(encl.openID) failed (\(why)): its contents are lost")
        }
    }

    /// on_each_cpu_mask(sgx_encl_ewb_cpumask(encl)): every CPU running an mm on mm_list leaves the
    /// enclave (an asynchronous exit). Threads of mms missing from the list are not reached.
    func ipi(_ encl: SGXEnclave, _ eid: EnclaveID) {
        var mms: [ObjectIdentifier] = []
        walkMMList(encl) { e in mms.append(ObjectIdentifier(e.mm)); return true }
        var kicked = 0
        for t in unit.threadsInside(eid) {
            guard let task = kernel.tasks[ProcessID(Int32(truncatingIfNeeded: t))], mms.contains(ObjectIdentifier(task.mm)) else { continue }
            unit.exit(thread: t)
            kicked += 1
        }
        clock.charge(.sgxIPI, max(kicked, 1))
    }
}
