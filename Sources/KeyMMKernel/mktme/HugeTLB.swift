// HugeTLB and MKTME: the series never encrypts hugetlb pages. A hugetlb VMA has vm_ops
// (hugetlb_vm_ops), so it is not anonymous and encrypt_mprotect refuses it with EINVAL before
// anything changes (mem_supports_encryption); the series' migration allocators
// (new_page_nodemask, alloc_new_node_page) WARN_ON_ONCE and refuse if they ever see a
// hugetlb page with a KeyID. The model counts the refusal as the warning
// "hugetlb-encrypt-refused" (MKTMEState.warnings).
//
// The model has no hugetlb pool (HugePages_Total = 0: mmap(MAP_HUGETLB) is ENOMEM). The
// model-only hugetlb_map(ADDR, LEN, PROT) installs the VMA a MAP_HUGETLB|MAP_NORESERVE mmap
// gets on Linux with an empty pool: VM_HUGETLB|VM_DONTEXPAND, shown as "anon_hugepage
// (deleted)"; with no page to give, its faults raise SIGBUS, as Linux's do.
//
// Invariant: no page of a hugetlb VMA ever has a KeyID (it has no pages at all here).
import KeyMMBase

/// hugetlb_vm_ops of a MAP_HUGETLB mapping with an empty pool: every fault is SIGBUS.
package final class HugeTLBMapping: VMFaultHandler {
    package init() {}
    package var name: String? { "anon_hugepage (deleted)" }
    /// hugetlb_vm_op_close exists (it releases reservations): hugetlb VMAs are never merged away.
    package var hasClose: Bool { true }
    package func fault(_ vma: VMA, address: VirtAddr, pageIndex: UInt64, write: Bool) -> (pfn: PFN, prot: PageProt)? { nil }
    /// hugetlb_vm_op_split: only at huge-page boundaries.
    package func maySplit(_ vma: VMA, at address: VirtAddr) -> Errno? {
        address.rawValue & pmdMask == 0 ? nil : .EINVAL
    }
}

extension Kernel {
    /// hugetlb_map(addr, len, prot): see the file comment. EINVAL unless addr and len are 2 MiB
    /// aligned; ENOMEM if the range is in use.
    @discardableResult
    package func hugetlbMap(_ task: TaskStruct, addr: VirtAddr, length: UInt64, prot: Prot) -> Result<VMA, Errno> {
        guard length > 0, addr.rawValue & pmdMask == 0, length & pmdMask == 0, addr.rawValue < userAddressLimit,
              length <= userAddressLimit - addr.rawValue, prot.subtracting([.read, .write, .exec]).isEmpty else {
            return .failure(.EINVAL)
        }
        // MAP_NORESERVE: nothing is reserved (no VM_ACCOUNT).
        let flags = VMFlags(prot: prot).union([.mayRead, .mayWrite, .mayExec, .hugeTLB, .noReserve])
        return installSpecialMapping(task.pid, addr: addr, length: length, flags: flags, ops: HugeTLBMapping(), pgoff: 0)
    }
}
