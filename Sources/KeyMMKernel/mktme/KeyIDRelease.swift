// The cache write-back that must precede the reprogramming of a released KeyID.
//
// Caches are not coherent across KeyIDs, and a line is encrypted with whatever key its KeyID
// holds when the line is written back, not when it was written. Under the lazy allocator
// policies (`integrated`, `per-keyid`) a freed page keeps its KeyID and its lines stay in the
// cache, dirty, with no reference left on the KeyID; when the key dies and the last reference
// goes, the KeyID is released (CLEAR_KEY) and may be handed to the next key (another tenant's,
// or type=no-encrypt). Without a write-back first, those lines reach DRAM encrypted with the
// wrong key, or in plaintext (found by `keymm fuzz`: keyid-release-dirty-lines, docs/fuzzing.md).
// x86 has no "write back every line of KeyID K" instruction, so the release work does what
// hardware KeyID/ASID recycling does elsewhere (SEV: WBINVD on all CPUs before DF_FLUSH when an
// ASID is recycled; TDX: TDH.PHYMEM.CACHE.WB before a KeyID is reused): WBINVD before PCONFIG
// CLEAR_KEY. The eager and wrapper policies flush every page at free, so no line of a
// KeyID can be cached when its count reaches zero, and they skip it (as the 2019 series,
// which flushes at free, programs CLEAR_KEY directly).
//
// Invariant (checked: keyid-reprogrammed-with-cached-lines): when a KeyID is programmed, no
// cache line is held under it. Cost: one `wbinvd` (and the write-backs it makes) per KeyID
// release under the lazy policies, counted as `keyid_release_flushes`.
import KeyMMBase
import KeyMMHardware

extension Kernel {
    /// Installs the release-time cache write-back on the key service's KeyID references
    /// (under the lazy policies only; see the file comment).
    func installKeyIDReleaseFlush() {
        guard !config.policy.poolIsKeyIDZero else { return }
        // Seeded bug (KeyMMChecker/SeededBugs.swift): the KeyID is cleared with its lines cached.
        guard !config.bugs.contains(.skipFlushOnKeyIDRelease) else { return }
        let machine = self.machine
        keys.references.beforeClearKey = { _ in
            machine.wbinvd()
            machine.clock.count(.keyidReleaseFlushes)
        }
    }
}
