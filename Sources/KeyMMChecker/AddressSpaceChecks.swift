// Per-call checks of address spaces: merged-across-keyids (an address keeps its KeyID from one
// call to the next unless the call may legitimately change it: encrypt_mprotect over that
// range, mmap over that range, the caller's mremap/execve/brk; and a fresh mmap range is
// KeyID 0), and mprotect-changed-encryption (an mprotect-family call keeps the KeyID of every
// entry that still maps the same frame afterwards).
//
// Invariants: the layout kept in the shadow holds the mms it describes alive (so an mm freed
// during a call is never confused with a new one at the same address); the comparison is a merge
// walk of two sorted range lists over the ranges whose VMAs may have changed (the touch log's
// VMA ranges; every mm's whole range after a full sweep).
import KeyMMBase
import KeyMMHardware
import KeyMMKernel

/// One VMA as the layout check compares it: its range, KeyID, and whether it is "normal" for
/// the entry rules (no vm_ops, not VM_PFNMAP/MIXEDMAP/IO).
struct VMAKeyRange: Equatable {
    var start: UInt64
    var end: UInt64
    var keyid: UInt16
    var normal: Bool

    init(_ v: VMA) {
        start = v.vmStart.rawValue
        end = v.vmEnd.rawValue
        keyid = v.keyid.rawValue
        normal = v.vmOps == nil && v.vmFlags.rawValue & InvariantChecker.driverFlags == 0
    }
}

extension InvariantChecker {
    /// merged-across-keyids over the address ranges whose VMAs may have changed (every mm's whole
    /// range after a full sweep; the ranges the touch log names otherwise), and the layout kept in
    /// the shadow (with the VMA counts per KeyID) brought up to date. In incremental mode a range
    /// whose VMAs changed in a way the entry rules see (range, KeyID, normal) has its entries
    /// re-checked. `call` nil: update only (no report).
    func checkLayout(_ call: CheckedCall?, full: Bool) {
        let everything = TouchRange(owner: 0, start: 0, end: userAddressLimit &+ UInt64(pageSize))
        var perSlot: [Int: [TouchRange]] = [:]
        if full {
            for slot in model.order { perSlot[slot] = [everything] }
        } else {
            for r in model.layoutRanges { perSlot[Int(r.owner), default: []].append(r) }
        }
        guard !perSlot.isEmpty else { return }
        let caller = call.flatMap { kernel.task($0.pid) }.map { ObjectIdentifier($0.mm) }
        var exemptLo: UInt64 = 0, exemptHi: UInt64 = 0
        if let call, call.kind == .keyIDChange || call.kind == .map, let a = call.address, let l = call.length {
            exemptLo = a.rawValue & ~UInt64(pageSize - 1)
            let (e, o) = a.rawValue.addingReportingOverflow(l)
            exemptHi = o ? UInt64.max : e
        }
        // Mms in pid order (the order the full sweep reports in), ranges in address order.
        for slot in model.order {
            guard var ranges = perSlot[slot], let mm = model.mms[slot].mm else { continue }
            ranges.sort { $0.start < $1.start }
            var merged: [TouchRange] = []
            for r in ranges {
                if let last = merged.last, r.start <= last.end { merged[merged.count - 1].end = max(last.end, r.end) } else { merged.append(r) }
            }
            let pid = model.mms[slot].pid
            let isCaller = ObjectIdentifier(mm) == caller
            let report = call != nil && !(isCaller && call?.kind == .remap)
            for r in merged {
                var layout = model.mms[slot].layout
                // The kept VMAs overlapping the range (a changed VMA lies wholly inside the ranges
                // the log names: its old and new extents are both recorded).
                var lo = 0, hi = layout.count
                while lo < hi { let m = (lo + hi) / 2; if layout[m].end <= r.start { lo = m + 1 } else { hi = m } }
                var upTo = lo
                while upTo < layout.count && layout[upTo].start < r.end { upTo += 1 }
                let old = Array(layout[lo..<upTo])
                let new = mm.vmas.vmas(in: VirtAddr(min(r.start, userAddressLimit)), VirtAddr(min(r.end, userAddressLimit &+ UInt64(pageSize)))).map(VMAKeyRange.init)
                guard old != new else { continue }
                if full && crossChecking { checkLayoutLogged(slot, old, new) }
                if report { compareLayouts(pid, old, new, isCaller: isCaller, exemptLo, exemptHi) }
                for v in old where v.keyid != 0 && Int(v.keyid) < model.vmasPerKeyID.count { model.vmasPerKeyID[Int(v.keyid)] -= 1 }
                for v in new where v.keyid != 0 && Int(v.keyid) < model.vmasPerKeyID.count { model.vmasPerKeyID[Int(v.keyid)] += 1 }
                layout.replaceSubrange(lo..<upTo, with: new)
                model.mms[slot].layout = layout
                if !full {
                    // The entries under the VMAs that changed are re-checked against them.
                    let a = min(old.first?.start ?? UInt64.max, new.first?.start ?? UInt64.max)
                    let b = max(old.last?.end ?? 0, new.last?.end ?? 0)
                    if a < b { for k in model.entries(slot, a, b) { model.recheck.append((Int32(slot), k >> 1)) } }
                }
            }
        }
    }

    /// Cross-check (a full sweep of an incremental checker): every VMA that changed since the last
    /// call lies inside a VA range the touch log named for its mm.
    func checkLayoutLogged(_ slot: Int, _ old: [VMAKeyRange], _ new: [VMAKeyRange]) {
        let logged = model.layoutRanges.filter { Int($0.owner) == slot }
        let changed = old.filter { !new.contains($0) } + new.filter { !old.contains($0) }
        for v in changed where !logged.contains(where: { $0.start <= v.start && v.end <= $0.end }) {
            let at = currentSite.map { " after call \($0.index) (\($0.call))" } ?? ""
            if shadowMismatches.count < 100 {
                shadowMismatches.append("VMA \(Fmt.hex(v.start))-\(Fmt.hex(v.end)) of pid \(model.mms[slot].pid) changed outside the logged ranges\(at)")
            }
        }
    }

    /// The merge walk of two sorted VMA lists: every address whose VMA KeyID changed, outside the
    /// caller's exempt range (encrypt_mprotect or mmap over it).
    func compareLayouts(_ pid: ProcessID, _ old: [VMAKeyRange], _ new: [VMAKeyRange], isCaller: Bool,
                        _ exemptLo: UInt64, _ exemptHi: UInt64) {
        var i = 0, j = 0
        while i < old.count && j < new.count {
            let o = old[i], n = new[j]
            let lo = max(o.start, n.start), hi = min(o.end, n.end)
            if lo < hi && o.keyid != n.keyid {
                // The part outside the exempt range (if any) changed KeyID.
                let inside = isCaller && lo >= exemptLo && hi <= exemptHi
                if !inside {
                    let at = isCaller && lo >= exemptLo && lo < exemptHi ? exemptHi : lo
                    report(.mergedAcrossKeyIDs, key: "\(pid):\(at):\(n.keyid)",
                           "pid \(pid): \(Fmt.hex(at)) was in a KeyID \(o.keyid) VMA \(Fmt.hex(o.start))-\(Fmt.hex(o.end)) and is now in a KeyID \(n.keyid) VMA \(Fmt.hex(n.start))-\(Fmt.hex(n.end)) (only encrypt_mprotect may change an address's KeyID)")
                }
            }
            if o.end <= n.end { i += 1 } else { j += 1 }
        }
    }

    /// A successful mmap's range is a fresh mapping with the KeyID new mappings get: 0, or under
    /// `encrypt-anon` the boot key's KeyID for anonymous private ones (mmap never takes another).
    func checkNewMapping(_ call: CheckedCall, _ outcome: CheckedOutcome) {
        guard options.enabled.contains(.mergedAcrossKeyIDs), !kernel.smeActive,
              case .success(let v) = outcome, let start = v, let len = call.length, len > 0,
              let task = kernel.task(call.pid) else { return }
        let (end, o) = start.addingReportingOverflow((len + UInt64(pageSize - 1)) & ~UInt64(pageSize - 1))
        guard !o else { return }
        for vma in task.mm.vmas.vmas(in: VirtAddr(start), VirtAddr(end)) {
            let expected = vma.isAnonymous && !vma.vmFlags.contains(.shared) ? kernel.encryptAnonKeyID : KeyID.tme
            guard vma.keyid != expected else { continue }
            report(.mergedAcrossKeyIDs, key: "\(call.pid):\(start):mmap",
                   "pid \(call.pid): mmap returned \(Fmt.hex(start))-\(Fmt.hex(end)) but it lies in a \(vma.keyid) \(Fmt.vma(vma.vmStart, vma.vmEnd)): the new \(expected) range was merged with a neighbour of another KeyID")
            break
        }
    }

    func snapshotProtection(_ call: CheckedCall) {
        guard let task = kernel.task(call.pid), let a = call.address, let l = call.length else { return }
        let start = VirtAddr(a.rawValue & ~UInt64(pageSize - 1))
        let (e, o) = a.rawValue.addingReportingOverflow(l)
        let end = VirtAddr(o || e > userAddressLimit ? userAddressLimit : e)
        protSnapshotPid = call.pid
        // Each entry as its 4 KiB pages (a huge leaf gives one record per covered page).
        PageWalk.forEachEntry(in: task.mm, from: start, to: end) { e in
            var v = max(e.address, start)
            let hi = min(e.end, end)
            while v < hi {
                if protSnapshot.count < 1 << 20 { protSnapshot.append((v, e.pfn(at: v), e.keyid)) }
                v = v.advanced(by: UInt64(pageSize))
            }
        }
    }

    func checkProtectionSnapshot() {
        guard let pid = protSnapshotPid, let task = kernel.task(pid) else { return }
        let zero = kernel.pgtable.zeroPFN, hugeZero = kernel.pgtable.hugeZeroPFN
        func isZero(_ f: PFN) -> Bool {
            f == zero || (hugeZero.map { f >= $0 && f.rawValue < $0.rawValue &+ UInt64(PageOrder.pmd.pages) } ?? false)
        }
        for (va, pfn, k) in protSnapshot {
            // Same frame, or the zero page both times (a huge zero PMD split into zero PTEs).
            guard let now = PageWalk.entry(in: task.mm, at: va), now.mapsFrame,
                  now.pfn(at: va) == pfn || (isZero(now.pfn(at: va)) && isZero(pfn)), now.keyid != k else { continue }
            report(.mprotectChangedEncryption, key: "\(pid):\(va.rawValue)",
                   "pid \(pid) VA \(Fmt.va(va)): the entry of \(Fmt.pfn(pfn)) had \(k) before the call and has \(now.keyid) after it")
        }
    }
}
