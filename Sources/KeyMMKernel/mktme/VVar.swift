// vvar_map: a model-only way to build seed 003's example (docs/sources.md) — one VMA whose pages differ in
// encryption from each other and from vm_page_prot (arch/x86/entry/vdso/vma.c: the vvar VMA of
// an SEV guest holds ordinary encrypted pages and one decrypted pvclock page, all inserted at
// fault time with vmf_insert_pfn_prot()).
//
// vvar_map(addr, npages, decrypted_index, keyid): allocates `npages` kernel frames, writes
// "vvar page N" into each through its own encryption state, and installs a special mapping
// (VM_READ|VM_MAYREAD|VM_IO|VM_PFNMAP|VM_DONTDUMP|VM_DONTEXPAND, as _install_special_mapping
// gives vvar) backed by pgtable's MixedEncryptionMapping. Page `decrypted_index` is decrypted
// (KeyID 0: "do not encrypt" from the OS's view; under SME no C-bit: plaintext in DRAM); every
// other page is encrypted (under SME the C-bit, KeyID 1; under MKTME the given KeyID, e.g. a
// tenant key's). The frames are kernel pages that live as long as the kernel (never freed),
// like the real vvar pages, so they keep their KeyID references.
//
// What it shows: mprotect keeps each PTE's KeyID/C-bit (_PAGE_CHG_MASK), so reads stay correct
// after mprotect(PROT_NONE) / mprotect(PROT_READ); with the pre-fix pgprot_modify (seeded bug
// `.mprotectDropsKeyID`) the decrypted page would be read through vm_page_prot's
// encryption and return garbage.
import KeyMMBase

extension Kernel {
    /// Installs a vvar-like mapping at `addr` (see the file comment). EINVAL for a bad index or
    /// size or an unusable KeyID, ENOMEM when the range is in use or memory is short.
    @discardableResult
    public func vvarMap(_ task: TaskStruct, addr: VirtAddr, npages: Int, decryptedIndex: Int,
                        encryptedKeyID: KeyID? = nil) -> Result<VMA, Errno> {
        guard npages > 0, npages <= 512, decryptedIndex >= -1, decryptedIndex < npages, addr.isPageAligned,
              addr.rawValue < userAddressLimit, UInt64(npages) << pageShift <= userAddressLimit - addr.rawValue else {
            return .failure(.EINVAL)
        }
        let encrypted: KeyID = smeActive ? KeyID(1) : (encryptedKeyID ?? .tme)
        guard encrypted.rawValue <= machine.config.maxKeyID else { return .failure(.EINVAL) }
        let end = addr.advanced(by: UInt64(npages) << pageShift)
        if firstIntersecting(task.mm, addr, end) != nil { return .failure(.ENOMEM) }
        var pages: [(pfn: PFN, keyid: KeyID)] = []
        for i in 0..<npages {
            let k: KeyID = i == decryptedIndex ? .tme : encrypted
            guard let pfn = allocator.allocPages(order: .base, keyid: k, gfp: [.zero]) else {
                for p in pages { allocator.freePages(p.pfn, order: .base) }
                return .failure(.ENOMEM)
            }
            allocator.setFlags(pfn, .reserved)   // kernel data: never freed, never migrated
            kernelWrite(pfn, Array("vvar page \(i)".utf8))
            pages.append((pfn, allocator.pageKeyID(pfn)))
        }
        let flags: VMFlags = [.read, .mayRead, .io, .pfnMap, .dontDump]
        return installSpecialMapping(task.pid, addr: addr, length: UInt64(npages) << pageShift, flags: flags,
                                     ops: MixedEncryptionMapping(pages: pages), pgoff: 0)
    }
}
