// A vvar-like special mapping (arch/x86/entry/vdso/vma.c's vvar_fault, docs/sources.md, seed 003): a VMA
// whose pages are raw frames inserted at fault time with vmf_insert_pfn_prot(), each with
// its own encryption state — e.g. one decrypted (KeyID 0 / no C-bit) page among pages
// mapped with the VMA's KeyID. mprotect must keep each entry's encryption bits.
//
// Invariants: page i of the mapping is `pages[i].pfn`, mapped with the VMA's vm_page_prot
// except for the KeyID, which is `pages[i].keyid`; pages beyond the list fault with SIGBUS.
import KeyMMBase

/// vm_operations_struct of a vvar-like mapping (VM_PFNMAP | VM_IO | VM_DONTEXPAND).
public final class MixedEncryptionMapping: VMFaultHandler {
    /// The frames to map and the KeyID (encryption state) each is mapped with.
    public let pages: [(pfn: PFN, keyid: KeyID)]
    /// Name shown in /proc/PID/maps.
    public let mappingName: String

    public init(pages: [(pfn: PFN, keyid: KeyID)], name: String = "[vvar]") {
        self.pages = pages
        self.mappingName = name
    }

    public var name: String? { mappingName }

    /// The frame of page `pageIndex` (vmf->pgoff: the offset in the whole mapping, not in the
    /// VMA, which may be a piece of it), with vm_page_prot carrying that page's KeyID.
    public func fault(_ vma: VMA, address: VirtAddr, pageIndex: UInt64, write: Bool) -> (pfn: PFN, prot: PageProt)? {
        guard pageIndex < UInt64(pages.count) else { return nil }
        var prot = vma.vmPageProt
        prot.keyid = pages[Int(pageIndex)].keyid
        return (pages[Int(pageIndex)].pfn, prot)
    }

    /// special_mapping_split(): special mappings are never split (their size is fixed).
    public func maySplit(_ vma: VMA, at address: VirtAddr) -> Errno? { .EINVAL }
}
