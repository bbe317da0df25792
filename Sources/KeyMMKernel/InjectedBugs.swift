// InjectedBugs: the seeded-bug switches the kernel model can be built with.
//
// Each switch turns on one mistake a kernel developer could really make in the MKTME series,
// so the checker and fuzzer can prove they catch it (KeyMMChecker/SeededBugs.swift is the
// catalogue: names, places, the invariants that catch each one; docs/invariants.md the table).
//
// Invariant: each switch is tested in exactly one place of the model (`config.bugs.contains`),
// the place the mistake lives; with the empty set the model is the unmodified one.

/// A set of seeded bugs (an OptionSet: testing one is a single bit test on the hot paths).
public struct InjectedBugs: OptionSet, Sendable, Hashable {
    public let rawValue: UInt64
    @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// page_alloc/EncryptedPages.swift: page_keyid changes without flushing the old KeyID's lines.
    public static let skipFlushOnKeyIDChange = InjectedBugs(rawValue: 1 << 0)
    /// page_alloc/EncryptedPages.swift: KeyID references per VMA only, not per 4 KiB page.
    public static let freeKeyIDWhileReferenced = InjectedBugs(rawValue: 1 << 1)
    /// pgtable/ChangeProtection.swift: pte_modify() without the KeyID bits in _PAGE_CHG_MASK.
    public static let mprotectDropsKeyID = InjectedBugs(rawValue: 1 << 2)
    /// pgtable/THP.swift: split_huge_pmd() builds entries from vm_page_prot.
    public static let splitFromVMPageProt = InjectedBugs(rawValue: 1 << 3)
    /// mm/VMAMerge.swift: is_mergeable_vma() without the KeyID comparison.
    public static let mergeAcrossKeyIDs = InjectedBugs(rawValue: 1 << 4)
    /// pgtable/Fault.swift: mk_zero_pte() keeps the VMA's KeyID.
    public static let encryptedZeroPage = InjectedBugs(rawValue: 1 << 5)
    /// mktme/KSM.swift: KSM matches by contents only.
    public static let ksmAcrossKeyIDs = InjectedBugs(rawValue: 1 << 6)
    /// page_alloc/Compaction.swift: the migration target is allocated with KeyID 0.
    public static let migrateDropsKeyID = InjectedBugs(rawValue: 1 << 7)
    /// mktme/EncryptMprotect.swift: encrypt_mprotect() keeps the pages it should zap.
    public static let encryptMprotectKeepsPages = InjectedBugs(rawValue: 1 << 8)
    /// page_alloc/EncryptedPages.swift: the page is cleared before page_keyid is set.
    public static let zeroBeforeKeyID = InjectedBugs(rawValue: 1 << 9)
    /// pgtable/THP.swift: khugepaged installs its huge page without prep_encrypted_page().
    public static let khugepagedSkipsPrep = InjectedBugs(rawValue: 1 << 10)
    /// mm/VMALifecycle.swift: vm_area_dup() skips the KeyID reference.
    public static let vmaDupSkipsKeyIDRef = InjectedBugs(rawValue: 1 << 11)
    /// mktme/KeyIDRelease.swift: a released KeyID is reprogrammed without a cache write-back.
    public static let skipFlushOnKeyIDRelease = InjectedBugs(rawValue: 1 << 12)

    // Confidential-VM host paths (cvm/): bits from 40 up, so other areas can keep the low ones.
    /// cvm/KVMTDX.swift: KVM returns a TD's KeyID to its pool before TDH.PHYMEM.CACHE.WB and FREEID.
    public static let tdxKeyIDFreedBeforeWriteBack = InjectedBugs(rawValue: 1 << 40)
    /// cvm/KVMTDX.swift: a removed TD page is cleared and freed without TDH.PHYMEM.PAGE.WBINVD.
    public static let tdxSkipPageWBINVD = InjectedBugs(rawValue: 1 << 41)
    /// cvm/TDXHost.swift: tdx_clear_page resets with 8-byte non-temporal stores, not MOVDIR64B.
    public static let tdxClearWithPartialWrites = InjectedBugs(rawValue: 1 << 42)
    /// cvm/TDXHost.swift: the global KeyID is configured without the WBINVD before it.
    public static let tdxGlobalKeyWithoutWBINVD = InjectedBugs(rawValue: 1 << 43)
    /// cvm/SNPHost.swift: RMPUPDATE assigns a page without removing it from the direct map.
    public static let snpKeepDirectMap = InjectedBugs(rawValue: 1 << 44)
    /// cvm/KVMSEV.swift: ASID recycling frees reclaimed ASIDs without WBINVD and DF_FLUSH.
    public static let sevRecycleWithoutFlush = InjectedBugs(rawValue: 1 << 45)
    /// cvm/SNPHost.swift: without COHERENCY_SFW_NO, a page made private keeps the host's lines.
    public static let snpSkipPrivateEviction = InjectedBugs(rawValue: 1 << 46)
    /// sgx/Reclaimer.swift: sgx_reclaimer_block() zaps the page's PTEs in every mm but the last one
    /// on mm_list.
    public static let sgxReclaimSkipsZap = InjectedBugs(rawValue: 1 << 13)
    /// sgx/EnclaveMMList.swift: mmu_notifier .release frees the encl_mm without waiting for an SRCU
    /// grace period (no synchronize_srcu).
    public static let sgxReleaseWithoutSRCUSync = InjectedBugs(rawValue: 1 << 14)
    /// sgx/EnclaveMMList.swift: sgx_encl_mm_add() skips the "already on mm_list" check, so fork's
    /// vm_ops->open adds the child's mm once per enclave VMA.
    public static let sgxEnclMMAddedTwice = InjectedBugs(rawValue: 1 << 15)
    /// KeyMMHardware/SGX.swift (set from sgx/SGXDriver.swift): ELDU checks the MAC with the version
    /// stored beside the sealed page instead of the VA slot's, so a replayed page is accepted.
    public static let sgxELDUSkipsVersionCheck = InjectedBugs(rawValue: 1 << 16)
    /// sgx/EnclaveMMList.swift (vma-refcount design): vm_ops->close does not drop the VMA's encl_mm
    /// reference, so the encl_mm outlives the mm's last enclave VMA.
    public static let sgxCloseSkipsPut = InjectedBugs(rawValue: 1 << 17)
}
