// Which signal an access would raise, without making it: replay compares the SIGSEGV and
// SIGBUS lines of a log (`--- SIGSEGV {si_code=SEGV_MAPERR, si_addr=...} ---`, the recorded
// results of the program's own loads and stores) with what the model's address space says
// about that address at that point of the log.
//
// The answer follows the fault path (Fault.swift) step by step but reads only: no VMA (or a
// stack that could not grow there) or a guard marker → SEGV_MAPERR; the VMA's rights or the
// protection key deny the access → SEGV_ACCERR / SEGV_PKUERR; a file page beyond EOF, or a
// special mapping with nothing to map → SIGBUS (BUS_ADRERR); anything else → no signal.
//
// Invariant: nothing changes (no page is allocated, no stack grows, no clock is charged).
import KeyMMBase

/// The signal an access would raise.
public enum AccessSignal: Equatable, Sendable {
    case sigsegv(SegvCode)
    case sigbus
}

extension Kernel {
    /// The signal an access of kind `access` at `addr` by `task` would raise now, if any.
    public func signalForAccess(_ task: TaskStruct, _ addr: VirtAddr, _ access: FaultAccess) -> AccessSignal? {
        let mm = task.mm
        guard addr.rawValue < userAddressLimit, let vma = mm.findVMA(addr) else { return .sigsegv(.mapErr) }
        if vma.vmStart > addr && stackExpansionError(mm, vma, addr) != nil { return .sigsegv(.mapErr) }
        if let code = accessError(pkru: task.pkru, vma, access) { return .sigsegv(code) }
        guard vma.contains(addr) else { return nil }   // the stack grows over it: a new zero page
        let pte: PTE
        switch mm.pageTable.walk(addr) {
        case .huge: return nil
        case .pte(_, let slot): pte = mm.pageTable[slot]
        case .none: pte = .none
        }
        if pte.isGuardMarker { return .sigsegv(.mapErr) }
        if !pte.isNone { return nil }   // a mapped page or a swap entry
        if let handler = vma.vmOps as? VMFaultHandler {
            return handler.fault(vma, address: addr.pageDown, pageIndex: vma.pageIndex(of: addr), write: access == .write) == nil ? .sigbus : nil
        }
        if let file = vma.vmFile {
            let sizeInPages = (file.size &+ UInt64(pageSize - 1)) >> pageShift
            return vma.pageIndex(of: addr) >= sizeInPages ? .sigbus : nil
        }
        return vma.isAnonymous ? nil : .sigbus
    }
}
