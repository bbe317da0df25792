// The entry rules: each entry that holds a frame, against its VMA, its page's page_keyid, the
// zero pages and KSM (encrypted-zero-page, ksm-cross-keyid, pte-keyid-mismatch, pte-outside-vma);
// after a full sweep every entry of every mm, otherwise the entries whose entry, frame or VMA the
// call changed (CheckerShadow.swift collects them). The census the frame and KeyID checks use is
// the shadow's.
//
// Rules: the zero page and the huge zero page are mapped only with KeyID 0; other special
// entries (raw PFNs: vmf_insert_pfn_prot, vvar) carry their own encryption bits and are exempt
// (their frames are exempt from the cache check too); every other entry's KeyID equals its
// page's page_keyid, and in a normal VMA (no vm_ops, not VM_PFNMAP/MIXEDMAP/IO) the VMA's KeyID
// — except under SME, where the C-bit is a per-page attribute and a VMA's KeyID stays 0. A KSM
// page is mapped only with its own KeyID from VMAs of that KeyID (so all its entries agree: the
// old "shared across KeyIDs" comparison between entries is implied and was dropped).
import KeyMMBase
import KeyMMHardware
import KeyMMKernel

extension InvariantChecker {
    /// Whether a VMA is "normal" for the KeyID rule (anonymous or file, no driver hooks).
    @inline(__always) func isNormalVMA(_ v: VMA) -> Bool {
        v.vmOps == nil && v.vmFlags.rawValue & InvariantChecker.driverFlags == 0
    }
    static let driverFlags = VMFlags([.pfnMap, .mixedMap, .io]).rawValue

    /// The entry rules: after a full sweep on every mapped entry of every mm (pid order, then
    /// address); otherwise on the entries whose entry, frame or VMA changed (same order).
    func checkEntries(full: Bool) {
        if full {
            for slot in model.order {
                guard let mm = model.mms[slot].mm else { continue }
                let pid = model.mms[slot].pid
                PageWalk.forEachEntry(in: mm, vmas: mm.allVMAs) { leaf, vma in checkEntry(pid, leaf, vma) }
            }
            return
        }
        var keys = model.recheck
        for slot in model.wholeSlots {
            for k in model.entries(slot, 0, userAddressLimit &+ UInt64(pageSize)) { keys.append((Int32(slot), k >> 1)) }
        }
        guard !keys.isEmpty else { return }
        let pids = keys.map { model.mms[Int($0.slot)].pid }
        var idx = Array(keys.indices)
        idx.sort { a, b in pids[a] != pids[b] ? pids[a] < pids[b] : keys[a].va < keys[b].va }
        var last: (Int32, UInt64)?
        for i in idx {
            let (slot, va) = keys[i]
            if let l = last, l.0 == slot && l.1 == va { continue }
            last = (slot, va)
            guard let mm = model.mms[Int(slot)].mm, let leaf = PageWalk.entry(in: mm, at: VirtAddr(va)),
                  leaf.address.rawValue == va, leaf.mapsFrame else { continue }
            checkEntry(pids[i], leaf, mm.vma(containing: VirtAddr(va)))
        }
    }

    /// The rules of one mapped entry with the VMA covering its first address (nil: none does).
    func checkEntry(_ pid: ProcessID, _ leaf: PageWalkEntry, _ vma: VMA?) {
        let alloc = kernel.allocator
        let va = leaf.address.rawValue
        var place: String { "pid \(pid) VA \(Fmt.hex(va))" }
        if let vma {
            if leaf.isHuge && leaf.end > vma.vmEnd {
                report(.pteOutsideVMA, key: "\(pid):\(va)",
                       "\(place): a huge PMD maps 2 MiB but its \(Fmt.vma(vma.vmStart, vma.vmEnd)) ends at \(Fmt.va(vma.vmEnd))")
            }
        } else {
            report(.pteOutsideVMA, key: "\(pid):\(va)",
                   "\(place): entry maps \(Fmt.pfn(leaf.pfn)) (\(leaf.keyid)) but no VMA covers the address")
        }
        // The zero pages.
        if model.isZeroFrame(leaf.pfn, huge: leaf.isHuge) {
            if !leaf.keyid.isDefault {
                report(.encryptedZeroPage, key: "\(pid):\(va)",
                       "\(place): the \(leaf.isHuge ? "huge " : "")zero page \(Fmt.pfn(leaf.pfn)) is mapped with \(leaf.keyid)"
                        + (vma.map { " (\(Fmt.vma($0.vmStart, $0.vmEnd)) has \($0.keyid))" } ?? ""))
            }
            return
        }
        // Special entries carry their own encryption bits (their frames are exempt).
        if leaf.isSpecial { return }
        let f = leaf.pfn.rawValue
        guard model.allocated.contains(f) else { return }   // reported by frame accounting
        let pageK = alloc.pageKeyID(leaf.pfn)
        let vmaK: KeyID? = (vma.map { isNormalVMA($0) } ?? false) && !kernel.smeActive ? vma?.keyid : nil
        var vmaText: String { vma.map { Fmt.vma($0.vmStart, $0.vmEnd) } ?? "no VMA" }
        if alloc.flags(leaf.pfn).contains(.ksm) {
            // Every entry of a KSM page must carry the page's own KeyID (so all of them agree).
            if leaf.keyid != pageK || (vmaK != nil && vmaK != pageK) {
                report(.ksmCrossKeyID, key: "\(f)",
                       "KSM page \(Fmt.pfn(leaf.pfn)) has page_keyid \(pageK.rawValue) but \(place) (\(vmaText)\(vmaK.map { ", \($0)" } ?? "")) maps it with \(leaf.keyid)")
            }
            return
        }
        if leaf.keyid != pageK {
            report(.pteKeyIDMismatch, key: "\(pid):\(va)",
                   "\(place) (\(vmaText)): the entry has \(leaf.keyid) but \(Fmt.pfn(leaf.pfn)) has page_keyid \(pageK.rawValue)")
        } else if let vk = vmaK, vk != leaf.keyid {
            report(.pteKeyIDMismatch, key: "\(pid):\(va)",
                   "\(place): the entry and \(Fmt.pfn(leaf.pfn)) have \(leaf.keyid) but their \(vmaText) has \(vk)")
        }
        if leaf.isHuge {
            // Every subpage of a THP carries the head's KeyID.
            for i in 1..<leaf.pages where alloc.pageKeyID(leaf.pfn.advanced(by: i)) != pageK {
                report(.pteKeyIDMismatch, key: "\(pid):\(va):sub",
                       "\(place): huge entry \(leaf.keyid) maps \(Fmt.pfn(leaf.pfn.advanced(by: i))) (subpage \(i)) whose page_keyid is \(alloc.pageKeyID(leaf.pfn.advanced(by: i)).rawValue)")
                break
            }
        }
    }
}
