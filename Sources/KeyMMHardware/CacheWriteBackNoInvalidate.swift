// Two cache operations of the confidential-VM host paths. WBNOINVD: every dirty line is written
// back (encrypted with its own KeyID) and stays valid and clean. KVM issues it on the CPUs that ran an SEV guest before releasing the
// guest's pages (docs/sources.md, "SEV / SEV-SNP host"); the clean lines it leaves tagged with the
// guest's ASID are why recycling an ASID needs a WBINVD (which invalidates) before DF_FLUSH.
// Coherent invalidation: the hardware drops a frame's lines under one tag (writing dirty ones
// back) as a side effect of an RMPUPDATE on CPUs with COHERENCY_SFW_NO — no CLFLUSH is charged.
//
// Invariant: like every public cache operation, it ends with the write-back buffer drained; it
// changes no LRU stamp (a write-back is not a use).
import KeyMMBase

extension Cache {
    /// Writes back every dirty line and keeps it cached, clean (set order, then way order).
    package func writeBackAllKeepingLines() {
        guard validLines > 0 else { return }
        for set in 0..<sets {
            for w in 0..<ways {
                let s = slot(set, w)
                let t = tags[s]
                guard t & Cache.validBit != 0, t & Cache.dirtyBit != 0 else { continue }
                writeBack(s, t)
                tags[s] = t & ~Cache.dirtyBit
            }
        }
        drainWriteBacks()
    }

    /// Writes back (if dirty) and invalidates every line of `pfn` cached under `keyid`, without
    /// charging CLFLUSH (a hardware coherency action; write-backs are charged as usual).
    public func invalidateCoherently(_ pfn: PFN, keyid: KeyID) {
        let first = pfn.rawValue << 6
        for l in 0..<UInt64(linesPerPage) {
            let w = findWay(first + l, keyid.rawValue)
            if w >= 0 { invalidate(setIndex(first + l), w) }
        }
        drainWriteBacks()
    }
}
