// The catalogue of seeded bugs: one-place mistakes a kernel developer could really make in the
// MKTME series, each switched on by name (`keymm fuzz --inject-bug NAME`, `#@ set
// inject-bug=NAME`) to prove the checker catches it. docs/invariants.md lists the same table
// with the place and the catching invariant.
//
// Invariant: every catalogue entry names exactly one kernel switch (`InjectedBugs`, tested in
// one place of the model) and every switch has exactly one entry, so with no bug injected the
// model is the unmodified one.
import KeyMMBase
import KeyMMKernel

/// A deliberate mistake the model can be built with.
public struct SeededBug: Sendable, Hashable {
    /// The catalogue name (`--inject-bug NAME`).
    public let name: String
    /// The kernel's switch for it (KernelConfig.bugs).
    public let bug: InjectedBugs
    /// Where it is injected (file, function).
    public let location: String
    /// The mistake, in one line.
    public let mistake: String
    /// The invariants expected to catch it, the first one first.
    public let caughtBy: [Invariant]
    /// Configurations where the mistake cannot show (the fuzzer skips them).
    public let notApplicable: String?
    /// The confidential-VM fuzz mode (`keymm fuzz --mode`) the mistake needs: "tdx" or "sev" (nil: none).
    package var cvmMode: String? = nil

    /// Whether the bug can show under this allocator policy, encryption mode and SGX design.
    public func applies(policy: String, encryption: String, sgxTracking: String = "notifier") -> Bool {
        // SGX bugs do not depend on the allocator or on MKTME; two belong to one design each.
        if bug == .sgxReleaseWithoutSRCUSync { return sgxTracking == "notifier" }
        if bug == .sgxCloseSkipsPut { return sgxTracking == "vma-refcount" }
        // Need MKTME KeyIDs (keys, encrypted VMAs): not under policy none or SME.
        let needKeyIDs: InjectedBugs = [.mprotectDropsKeyID, .splitFromVMPageProt, .encryptedZeroPage, .mergeAcrossKeyIDs,
                                        .ksmAcrossKeyIDs, .encryptMprotectKeepsPages, .khugepagedSkipsPrep,
                                        .vmaDupSkipsKeyIDRef, .freeKeyIDWhileReferenced, .migrateDropsKeyID]
        if let mode = cvmMode { return encryption == (mode == "tdx" ? "mktme" : "sme") }
        if needKeyIDs.contains(bug) { return policy != "none" && encryption == "mktme" }
        if bug == .skipFlushOnKeyIDChange { return policy != "none" && encryption != "off" }
        // Only the lazy policies keep lines under a KeyID whose count reached zero (eager and
        // wrapper flush at free, so they never install the release-time write-back).
        if bug == .skipFlushOnKeyIDRelease { return (policy == "integrated" || policy == "per-keyid") && encryption == "mktme" }
        // The wrapper's KeyID-unaware allocator zeroes through KeyID 0 by design and zeroes
        // again after the switch: prep_encrypted_page's order is not its code path.
        if bug == .zeroBeforeKeyID { return policy != "none" && policy != "wrapper" && encryption != "off" }
        return true
    }

    public static let all: [SeededBug] = [
        SeededBug(name: "skip-flush-on-keyid-change", bug: .skipFlushOnKeyIDChange,
                  location: "page_alloc/EncryptedPages.swift, switchKeyID (prep_encrypted_page / free_encrypted_page)",
                  mistake: "page_keyid is changed without flushing the frame's cache lines through the old KeyID",
                  caughtBy: [.staleCacheLine], notApplicable: "policy=none (no KeyID ever changes)"),
        SeededBug(name: "free-keyid-while-referenced", bug: .freeKeyIDWhileReferenced,
                  location: "page_alloc/EncryptedPages.swift, getKeyIDRefs / putKeyIDRefs",
                  mistake: "KeyID references are taken per VMA only, not per 4 KiB page, so a KeyID is freed while a pinned page still uses it (seed 000)",
                  caughtBy: [.keyidRefcountBalance, .keyidReuseWhileReferenced], notApplicable: "policy=none, SME"),
        SeededBug(name: "mprotect-drops-keyid", bug: .mprotectDropsKeyID,
                  location: "pgtable/ChangeProtection.swift, changeProtection (PTE.modifiedDroppingEncryption)",
                  mistake: "pte_modify() takes the encryption bits from the new protection: _PAGE_CHG_MASK lacks the KeyID bits (seed 003)",
                  caughtBy: [.mprotectChangedEncryption, .encryptedZeroPage], notApplicable: "policy=none, SME (no encrypted VMA holds a KeyID-0 entry)"),
        SeededBug(name: "split-from-vm-page-prot", bug: .splitFromVMPageProt,
                  location: "pgtable/THP.swift, splitHugePMD (PTE.splitEntryFromVMAProt, and the huge zero PMD's entries)",
                  mistake: "split_huge_pmd() builds the 4 KiB entries' encryption bits from vm_page_prot instead of the source PMD (seed 003)",
                  caughtBy: [.encryptedZeroPage, .mprotectChangedEncryption], notApplicable: "policy=none, SME"),
        SeededBug(name: "merge-across-keyids", bug: .mergeAcrossKeyIDs,
                  location: "mm/VMAMerge.swift, isMergeableVMA (is_mergeable_vma)",
                  mistake: "is_mergeable_vma() forgets the KeyID comparison, so VMAs of different KeyIDs merge",
                  caughtBy: [.mergedAcrossKeyIDs, .pteKeyIDMismatch], notApplicable: "policy=none, SME"),
        SeededBug(name: "encrypted-zero-page", bug: .encryptedZeroPage,
                  location: "pgtable/Fault.swift, doAnonymousPage (mk_zero_pte)",
                  mistake: "mk_zero_pte() keeps the VMA's KeyID bits: the shared zero page is mapped encrypted",
                  caughtBy: [.encryptedZeroPage], notApplicable: "policy=none, SME"),
        SeededBug(name: "ksm-across-keyids", bug: .ksmAcrossKeyIDs,
                  location: "mktme/KSM.swift, ksmScan (the stable/unstable tree key)",
                  mistake: "KSM matches pages by contents only, not (KeyID, contents)",
                  caughtBy: [.ksmCrossKeyID], notApplicable: "policy=none, SME"),
        SeededBug(name: "migrate-drops-keyid", bug: .migrateDropsKeyID,
                  location: "page_alloc/Compaction.swift, allocPageForMigration",
                  mistake: "the migration target is allocated with KeyID 0 instead of the source page's KeyID",
                  caughtBy: [.pteKeyIDMismatch], notApplicable: "policy=none, SME"),
        SeededBug(name: "encrypt-mprotect-keeps-pages", bug: .encryptMprotectKeepsPages,
                  location: "mktme/EncryptMprotect.swift, mprotectSetEncrypt",
                  mistake: "encrypt_mprotect() changes a VMA's KeyID without zapping the pages it maps",
                  caughtBy: [.pteKeyIDMismatch], notApplicable: "policy=none, SME"),
        SeededBug(name: "zero-before-keyid", bug: .zeroBeforeKeyID,
                  location: "page_alloc/EncryptedPages.swift, prepNewPage",
                  mistake: "prep_encrypted_page() clears the page before setting page_keyid, i.e. through the old KeyID's mapping",
                  caughtBy: [.staleCacheLine], notApplicable: "policy=none, policy=wrapper (not its code path)"),
        SeededBug(name: "khugepaged-skips-prep", bug: .khugepagedSkipsPrep,
                  location: "pgtable/THP.swift, collapseRange",
                  mistake: "khugepaged installs the huge page it allocated with KeyID 0 without prep_encrypted_page() to the VMA's KeyID",
                  caughtBy: [.pteKeyIDMismatch, .crossKeyIDPlaintext], notApplicable: "policy=none, SME"),
        SeededBug(name: "vma-dup-skips-keyid-ref", bug: .vmaDupSkipsKeyIDRef,
                  location: "mm/VMALifecycle.swift, vmAreaDup",
                  mistake: "vm_area_dup() copies an encrypted VMA without taking its KeyID reference",
                  caughtBy: [.keyidRefcountBalance], notApplicable: "policy=none, SME"),
        SeededBug(name: "skip-flush-on-keyid-release", bug: .skipFlushOnKeyIDRelease,
                  location: "mktme/KeyIDRelease.swift, installKeyIDReleaseFlush",
                  mistake: "a released KeyID is reprogrammed (CLEAR_KEY, then the next key) without writing back the cache, so freed pages' dirty lines of the dead key are written back with the next one",
                  caughtBy: [.keyidReprogrammedWithCachedLines, .plaintextInDRAM],
                  notApplicable: "policy=none, wrapper, eager (they flush at free), SME"),
        // Confidential-VM host paths (docs/tdx-sev.md); found with `keymm fuzz --mode tdx|sev`.
        SeededBug(name: "tdx-keyid-freed-before-writeback", bug: .tdxKeyIDFreedBeforeWriteBack,
                  location: "cvm/KVMTDX.swift, tdxMmuReleaseHKID (tdx_mmu_release_hkid)",
                  mistake: "KVM returns a TD's KeyID to its pool (and drops the cgroup charge) before TDH.PHYMEM.CACHE.WB on every package and TDH.MNG.KEY.FREEID",
                  caughtBy: [.cvmIDReuseWhileHeld], notApplicable: "machines without TDX KeyIDs", cvmMode: "tdx"),
        SeededBug(name: "tdx-skip-page-wbinvd", bug: .tdxSkipPageWBINVD,
                  location: "cvm/KVMTDX.swift, tdxRemoveOne (tdx_sept_drop_private_spte)",
                  mistake: "a removed TD page is cleared and freed without TDH.PHYMEM.PAGE.WBINVD, leaving the TD's dirty lines in the cache",
                  caughtBy: [.guestStateOnHostPage], notApplicable: "machines without TDX KeyIDs", cvmMode: "tdx"),
        SeededBug(name: "tdx-clear-with-partial-writes", bug: .tdxClearWithPartialWrites,
                  location: "cvm/TDXHost.swift, tdxClearPage (tdx_clear_page)",
                  mistake: "TDX pages are reset with 8-byte non-temporal stores instead of MOVDIR64B: on X86_BUG_TDX_PW_MCE CPUs that poisons every TD-owned line",
                  caughtBy: [.guestStateOnHostPage], notApplicable: "machines without TDX KeyIDs", cvmMode: "tdx"),
        SeededBug(name: "tdx-global-key-without-wbinvd", bug: .tdxGlobalKeyWithoutWBINVD,
                  location: "cvm/TDXHost.swift, tdxEnable (config_global_keyid)",
                  mistake: "the global KeyID is configured without the WBINVD before it, so the PAMT's dirty KeyID-0 lines survive into the module's use",
                  caughtBy: [.hostAccessToPrivatePage], notApplicable: "machines without TDX KeyIDs", cvmMode: "tdx"),
        SeededBug(name: "snp-keep-direct-map", bug: .snpKeepDirectMap,
                  location: "cvm/SNPHost.swift, rmpMakePrivate (rmpupdate)",
                  mistake: "RMPUPDATE assigns a page to a guest without removing it from the host's direct map",
                  caughtBy: [.privatePageInDirectMap], notApplicable: "machines without SEV ASIDs", cvmMode: "sev"),
        SeededBug(name: "sev-recycle-without-flush", bug: .sevRecycleWithoutFlush,
                  location: "cvm/KVMSEV.swift, sevRecycleASIDs (__sev_recycle_asids)",
                  mistake: "ASID recycling frees the reclaimed ASIDs without WBINVD on every CPU and DF_FLUSH",
                  caughtBy: [.cvmIDReuseWhileHeld], notApplicable: "machines without SEV ASIDs", cvmMode: "sev"),
        SeededBug(name: "snp-skip-private-eviction", bug: .snpSkipPrivateEviction,
                  location: "cvm/SNPHost.swift, rmpMakePrivate",
                  mistake: "without COHERENCY_SFW_NO, a page made private keeps the host's cache lines (the eviction mitigation is skipped)",
                  caughtBy: [.hostAccessToPrivatePage], notApplicable: "machines without SEV ASIDs; coherency-sfw-no=on", cvmMode: "sev"),
        SeededBug(name: "sgx-reclaim-skips-zap", bug: .sgxReclaimSkipsZap,
                  location: "sgx/Reclaimer.swift, block (sgx_reclaimer_block)",
                  mistake: "the reclaimer zaps a page's PTEs in every mm on mm_list but the last before EBLOCK/EWB, so that mm keeps an entry to the freed EPC page",
                  caughtBy: [.epcStalePTE], notApplicable: nil),
        SeededBug(name: "sgx-release-without-srcu-sync", bug: .sgxReleaseWithoutSRCUSync,
                  location: "sgx/EnclaveMMList.swift, notifierRelease (sgx_mmu_notifier_release)",
                  mistake: "mmu_notifier .release frees the encl_mm without synchronize_srcu(), while a walker of mm_list may still stand on it (seed 004)",
                  caughtBy: [.srcuUseAfterFree], notApplicable: "sgx-mm-tracking=vma-refcount (no SRCU)"),
        SeededBug(name: "sgx-encl-mm-added-twice", bug: .sgxEnclMMAddedTwice,
                  location: "sgx/EnclaveMMList.swift, enclMMAdd / vmaReference (sgx_encl_mm_add)",
                  mistake: "sgx_encl_mm_add() skips its \"already on mm_list\" check, so fork's vm_ops->open adds the child's mm once per enclave VMA",
                  caughtBy: [.sgxMMList], notApplicable: nil),
        SeededBug(name: "sgx-eldu-skips-version-check", bug: .sgxELDUSkipsVersionCheck,
                  location: "KeyMMHardware/SGX.swift, eldu (switched on in sgx/SGXDriver.swift, sgxInit)",
                  mistake: "ELDU checks the MAC with the version stored beside the sealed page instead of the VA slot's, so a replayed older copy of a page is loaded",
                  caughtBy: [.enclaveContents], notApplicable: nil),
        SeededBug(name: "sgx-close-skips-put", bug: .sgxCloseSkipsPut,
                  location: "sgx/EnclaveMMList.swift, vmaUnreference (sgx_vma_close of the 2019 driver)",
                  mistake: "vm_ops->close does not drop the VMA's encl_mm reference, so the mm stays on mm_list after its last enclave VMA is gone",
                  caughtBy: [.sgxMMList], notApplicable: "sgx-mm-tracking=notifier (no vm_ops->close)"),
    ]

    /// The bug with this catalogue name, if any.
    public static func named(_ name: String) -> SeededBug? { all.first { $0.name == name } }

    /// The catalogue entries of the switches in `bugs`, in catalogue order.
    public static func entries(_ bugs: InjectedBugs) -> [SeededBug] { all.filter { bugs.contains($0.bug) } }

    /// Catalogue names, comma-separated (for help and errors).
    public static var names: String { all.map(\.name).joined(separator: ", ") }
}
