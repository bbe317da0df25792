// encrypt_mprotect(2) (docs/sources.md, seed 002; RFC 45/62 and PATCHv2 44/59 "mm: Add the encrypt_mprotect()
// system call for MKTME", 47/62 "mm: Restrict MKTME memory encryption to anonymous VMAs",
// 44/62 "x86/mm: Set KeyIDs in encrypted VMAs for MKTME"): mprotect plus a KeyID, syscall 434.
//
// Order of checks (the series): len not page aligned -> EINVAL; lookup_user_key(serial,
// KEY_NEED_VIEW) -> ENOKEY (no such / invalidated key), EKEYREVOKED, EACCES (no view
// permission); the key must be an mktme key holding a KeyID -> EINVAL; then do_mprotect_ext()
// with pkey = NO_KEY: mprotect's own checks (EINVAL unaligned start / bad prot, ENOMEM no VMA
// at start), then mem_supports_encryption(): any VMA from the first one up to `end` that is not
// anonymous -> EINVAL before anything changed; then the mprotect_fixup walk (ENOMEM at a hole,
// after the VMAs before it changed).
//
// mprotect_set_encrypt() (called by mprotect_fixup for every VMA piece when a KeyID is given):
// zap the range (contents are discarded, even when the KeyID stays the same), and if the KeyID
// changes: drop the VMA's reference on the old KeyID, write the new KeyID into vm_page_prot,
// take a reference on the new one, and unlink the anon_vmas (the VMA starts a fresh anon_vma
// tree: it has no inherited pages). Plain mprotect (keyid nil) keeps the KeyID.
//
// Invariant: a VMA's KeyID changes only here, with its pages zapped first, so no PTE ever maps a
// page whose KeyID differs from its VMA's (except special mappings' own per-PTE bits).
import KeyMMBase
import KeyMMKeys

/// The syscall number the series gave encrypt_mprotect (strace prints `syscall_0x1b2`).
public let encryptMprotectSyscallNumber = 434

extension Kernel {
    /// encrypt_mprotect(addr, len, prot, key_serial).
    public func encryptMprotect(_ pid: ProcessID, addr: VirtAddr, length: UInt64, prot: Prot,
                                serial: KeySerial) -> Result<Void, Errno> {
        machine.clock.charge(.syscall)
        guard let task = tasks[pid] else { return .failure(.ESRCH) }
        // MKTME restriction: the length must be page aligned.
        if length & UInt64(pageSize - 1) != 0 { return .failure(.EINVAL) }
        keyServiceTick()
        machine.clock.charge(.keyLookup)
        let keyid: KeyID
        switch keys.keyidForEncryptMprotect(serial: serial, cred: task.cred, process: keyrings(task)) {
        case .failure(let e): return .failure(e)
        case .success(let k): keyid = k
        }
        return doMprotectPkey(task, addr, length, prot, pkey: -1, keyid: keyid)
    }

    /// mem_supports_encryption(): every VMA from `vma` while vm_start < end must be anonymous
    /// (vma_is_anonymous: no vm_ops; hugetlb, shmem, files and special mappings are not).
    /// Called by do_mprotect_pkey (mm/Mprotect.swift) before any VMA changes; EINVAL otherwise.
    func mktmeCheckEncryptable(_ mm: MM, from vma: VMA, end: VirtAddr) -> Errno? {
        var v: VMA? = vma
        while let cur = v, cur.vmStart < end {
            if !cur.isAnonymous {
                // HugeTLB with a KeyID is refused here (it has vm_ops); the series never
                // encrypts hugetlb pages (its migration allocators WARN if they see one).
                if cur.vmFlags.contains(.hugeTLB) { mktme.warn("hugetlb-encrypt-refused") }
                return .EINVAL
            }
            v = mm.next(of: cur)
        }
        return nil
    }

    /// mprotect_set_encrypt(): see the file comment. `vma` is the VMA now covering [start, end).
    func mprotectSetEncrypt(_ mm: MM, _ vma: VMA, _ newKeyID: KeyID, _ start: VirtAddr, _ end: VirtAddr) {
        // Unmap pages with the old KeyID if there are any.
        if !config.bugs.contains(.encryptMprotectKeepsPages) { zapPageRange(mm, vma, start, end, dropMarkers: false) }   // seeded bug
        let old = vma.keyid
        if old == newKeyID { return }
        vmaPutKeyID(vma)
        vma.vmPageProt.keyid = newKeyID
        vmaGetKeyID(vma)
        // The VMA doesn't have any inherited pages: start the anon_vma tree from scratch.
        unlinkAnonVMAs(vma)
    }
}
