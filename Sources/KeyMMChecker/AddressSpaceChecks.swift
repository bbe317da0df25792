// Per-call checks of address spaces: merged-across-keyids (an address keeps its KeyID from one
// call to the next unless the call may legitimately change it: encrypt_mprotect over that
// range, mmap over that range, the caller's mremap/execve/brk; and a fresh mmap range is
// KeyID 0), and mprotect-changed-encryption (an mprotect-family call keeps the KeyID of every
// entry that still maps the same frame afterwards).
//
// Invariants: the layout snapshot holds the mms it describes alive (so an mm freed during a
// call is never confused with a new one at the same address); the comparison is a merge walk
// of two sorted range lists (O(VMAs) per mm per call).
import KeyMMBase
import KeyMMKernel

/// One VMA's range and KeyID.
struct VMAKeyRange {
    var start: UInt64
    var end: UInt64
    var keyid: UInt16
}

extension InvariantChecker {
    func currentLayout() -> [ObjectIdentifier: [VMAKeyRange]] {
        var out: [ObjectIdentifier: [VMAKeyRange]] = [:]
        for (_, mm) in kernel.distinctMMs {
            out[ObjectIdentifier(mm)] = mm.vmas.map { VMAKeyRange(start: $0.vmStart.rawValue, end: $0.vmEnd.rawValue, keyid: $0.keyid.rawValue) }
        }
        layoutOwners = kernel.distinctMMs.map(\.mm)
        return out
    }

    func checkLayout(_ call: CheckedCall) {
        guard options.enabled.contains(.mergedAcrossKeyIDs) else {
            return
        }
        let previous = lastLayout
        let previousOwners = layoutOwners
        let now = currentLayout()
        defer { lastLayout = now; _ = previousOwners }
        let caller = kernel.task(call.pid).map { ObjectIdentifier($0.mm) }
        var exemptLo: UInt64 = 0, exemptHi: UInt64 = 0
        if call.kind == .keyIDChange || call.kind == .map, let a = call.address, let l = call.length {
            exemptLo = a.rawValue & ~UInt64(pageSize - 1)
            let (e, o) = a.rawValue.addingReportingOverflow(l)
            exemptHi = o ? UInt64.max : e
        }
        for (pid, mm) in kernel.distinctMMs {
            let id = ObjectIdentifier(mm)
            guard let old = previous[id], let new = now[id] else { continue }
            let isCaller = id == caller
            if isCaller && call.kind == .remap { continue }
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
