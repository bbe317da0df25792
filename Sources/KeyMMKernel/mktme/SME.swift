// AMD SME in the model (encryption=sme): one C-bit in the PTE's address field instead of
// KeyIDs (PTELayout.smeCBit; the hardware model's KeyID 1 is the SME key, KeyID 0 plaintext).
//
// Rules (docs/sources.md, SME C-bit and per-PTE encryption bits; seed 003): with SME active every user mapping is encrypted
// (sme_early_init() puts sme_me_mask into protection_map[]), so new user pages are prepared
// and mapped with the C-bit; the zero page is mapped without it (mk_zero_pte strips the
// encryption bits, and the zero page was cleared without it); a special mapping may insert a
// decrypted page (pgprot_decrypted) among encrypted ones, and mprotect / huge-PMD splits keep
// each entry's C-bit (_PAGE_ENC is in _PAGE_CHG_MASK: PTE.modified / PTE.splitEntry).
// There are no MKTME KeyIDs under SME: no "mktme" key type (add_key ENODEV), no per-KeyID
// references, a VMA's KeyID (vma_keyid) stays 0; the C-bit is a per-page attribute.
//
// Invariant: under SME every user page the fault paths allocate has page KeyID 1 and its PTEs
// carry the C-bit; under MKTME user pages take their VMA's KeyID.
import KeyMMBase

extension Kernel {
    /// The KeyID a new user page of `vma` is prepared with (alloc_pages_vma): the VMA's KeyID,
    /// or the C-bit alias (KeyID 1) under SME. Used by every fault path (anon, COW, THP,
    /// khugepaged, swap-in).
    @inline(__always) func userPageKeyID(_ vma: VMA) -> KeyID {
        layout.smeCBit != nil ? KeyID(1) : vma.keyid
    }

    /// Whether the machine uses SME's C-bit instead of KeyIDs.
    public var smeActive: Bool { layout.smeCBit != nil }
}
