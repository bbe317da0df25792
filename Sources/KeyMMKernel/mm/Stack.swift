// Stack growth (mm/mmap.c lock_mm_and_find_vma + mm/vma.c expand_downwards): a fault just
// below a VM_GROWSDOWN VMA extends the VMA down to the faulting page, keeping the stack
// guard gap to an accessible non-stack VMA below, within RLIMIT_STACK, and giving the VMA
// an anon_vma first.
//
// Invariant: the VMA only ever grows downwards here; vm_pgoff drops by the pages added.
import KeyMMBase

extension Kernel {
    /// The VMA a user fault at `addr` belongs to, growing a stack VMA if needed
    /// (lock_mm_and_find_vma). nil: SIGSEGV (SEGV_MAPERR).
    public func lockMMAndFindVMA(_ mm: MM, _ addr: VirtAddr) -> VMA? {
        guard let vma = mm.findVMA(addr) else { return nil }
        if vma.vmStart <= addr { return vma }
        guard vma.vmFlags.contains(.growsDown) else { return nil }
        return expandDownwards(mm, vma, addr) == nil ? vma : nil
    }

    /// expand_downwards(): grow `vma` so it starts at the page holding `address`.
    func expandDownwards(_ mm: MM, _ vma: VMA, _ address: VirtAddr) -> Errno? {
        if let e = stackExpansionError(mm, vma, address) { return e }
        let addr = address.pageDown
        anonVMAPrepare(vma, in: mm)
        guard addr < vma.vmStart else { return nil }
        let grow = vma.vmStart.distance(from: addr) >> pageShift
        if vma.vmFlags.contains(.locked) { mm.lockedVM &+= grow }
        vmStatAccount(mm, vma.vmFlags, Int64(grow))
        mm.adjust(vma, start: addr, end: vma.vmEnd, pgoff: vma.vmPgoff - grow)
        return nil
    }

    /// expand_downwards()'s checks alone (nothing changes): nil if `vma` may grow down to the
    /// page holding `address`.
    func stackExpansionError(_ mm: MM, _ vma: VMA, _ address: VirtAddr) -> Errno? {
        guard vma.vmFlags.contains(.growsDown) else { return .EFAULT }
        let addr = address.pageDown
        if addr.rawValue < config.mmapMinAddr { return .EPERM }
        if let prev = mm.prev(of: vma), !prev.vmFlags.contains(.growsDown),
           !prev.vmFlags.isDisjoint(with: [.read, .write, .exec]),
           addr.distance(from: prev.vmEnd) < stackGuardGap || addr < prev.vmEnd {
            return .ENOMEM
        }
        guard addr < vma.vmStart else { return nil }
        let grow = vma.vmStart.distance(from: addr) >> pageShift
        guard grow <= vma.vmPgoff else { return .ENOMEM }
        if vma.vmEnd.distance(from: addr) > Kernel.rlimitStack { return .ENOMEM }
        return nil
    }

    /// RLIMIT_STACK (8 MiB, the default).
    static let rlimitStack: UInt64 = 8 << 20
}
