// vm_area_dup / vm_area_free / remove_vma: creating a VMA from another (split, copy, fork)
// and tearing one down. The MKTME series takes one KeyID reference per VMA whose KeyID is
// not 0 here (docs/sources.md, seed 000), and vm_ops open/close run here.
//
// Invariants: every VMA with a non-zero KeyID that exists (in a tree or being built) holds
// exactly one reference on its KeyID; `freeVMA` drops it exactly once.
import KeyMMBase

extension Kernel {
    /// vm_area_dup(): a copy of `vma` (same range, flags, file, policy, anon_vma pointer)
    /// with an empty anon_vma_chain; takes the VMA's KeyID reference.
    func vmAreaDup(_ vma: VMA) -> VMA {
        let new = VMA(start: vma.vmStart, end: vma.vmEnd, pgoff: vma.vmPgoff, flags: vma.vmFlags,
                      pageProt: vma.vmPageProt, file: vma.vmFile, memoryPolicy: vma.memoryPolicy)
        new.anonVMA = vma.anonVMA
        new.vmOps = vma.vmOps
        new.anonName = vma.anonName
        new.fileOpenID = vma.fileOpenID
        if !config.bugs.contains(.vmaDupSkipsKeyIDRef) { vmaGetKeyID(new) }   // seeded bug
        fileMapped(new.vmFile)
        fileDescriptionGet(new.fileOpenID)               // mm/CharDevice.swift: vm_file's reference
        return new
    }

    /// A fresh VMA (vm_area_alloc + vma_set_range + flags); takes the KeyID reference.
    func vmAreaAlloc(start: VirtAddr, end: VirtAddr, pgoff: UInt64, flags: VMFlags,
                     keyid: KeyID = .tme, file: MappedFile? = nil) -> VMA {
        let vma = VMA(start: start, end: end, pgoff: pgoff, flags: flags,
                      pageProt: PageProt(vmFlags: flags, keyid: keyid), file: file)
        vmaGetKeyID(vma)
        fileMapped(file)
        return vma
    }

    /// The per-VMA KeyID reference (MKTME: KeyIDReferences.get in vm_area_dup).
    func vmaGetKeyID(_ vma: VMA) {
        if !vma.keyid.isDefault { keys.references.get(vma.keyid) }
    }

    /// Drops the per-VMA KeyID reference (vm_area_free).
    func vmaPutKeyID(_ vma: VMA) {
        if !vma.keyid.isDefault { keys.references.put(vma.keyid) }
    }

    /// remove_vma() + unlink_anon_vmas(): close hook (unless a merge removed it: those have
    /// none), drop the anon_vma links and the KeyID reference. The VMA must already be out
    /// of the tree.
    func freeVMA(_ vma: VMA, close: Bool = true, mm: MM? = nil) {
        if close, let ops = vma.vmOps, ops.hasClose {
            if let mm { ops.close(vma, mm: mm) } else { ops.close(vma) }
        }
        unlinkAnonVMAs(vma)
        vmaPutKeyID(vma)
        fileUnmapped(vma.vmFile)
        fileDescriptionPut(vma.fileOpenID)               // mm/CharDevice.swift: fput of vm_file
        machine.clock.charge(.vmaOp)
    }

    /// vm_get_page_prot() for `flags`, keeping the VMA's KeyID (vma_set_page_prot).
    func vmaSetPageProt(_ vma: VMA) {
        let keyid = vma.keyid
        var prot = PageProt(vmFlags: vma.vmFlags, keyid: keyid)
        // Shared writable mappings that need dirty tracking start read-only
        // (vma_wants_writenotify): every model file is write-back capable.
        if vma.vmFlags.contains(.shared), vma.vmFlags.contains(.write), let f = vma.vmFile, !f.isShmem {
            var flags = vma.vmFlags
            flags.remove(.shared)
            prot = PageProt(vmFlags: flags, keyid: keyid)
        }
        vma.vmPageProt = prot
    }

    /// vm_stat_account(): total_vm and the exec/stack/data buckets.
    func vmStatAccount(_ mm: MM, _ flags: VMFlags, _ pages: Int64) {
        mm.totalVM = UInt64(bitPattern: Int64(bitPattern: mm.totalVM) &+ pages)
        if flags.intersection([.exec, .write, .growsDown]) == .exec {
            mm.execVM = UInt64(bitPattern: Int64(bitPattern: mm.execVM) &+ pages)
        } else if flags.contains(.growsDown) {
            mm.stackVM = UInt64(bitPattern: Int64(bitPattern: mm.stackVM) &+ pages)
        } else if flags.intersection([.write, .shared, .growsDown]) == .write {
            mm.dataVM = UInt64(bitPattern: Int64(bitPattern: mm.dataVM) &+ pages)
        }
    }
}
