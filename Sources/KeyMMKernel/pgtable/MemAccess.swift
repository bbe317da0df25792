// The model-only memory calls (mem_write, mem_read, mem_touch, virt_to_phys): a CPU access
// through the task's page tables, as the hardware does it: TLB lookup, page walk on a miss
// (setting the accessed and dirty bits), the PKRU check on data accesses, a page fault when
// the entry does not allow the access, then the load/store through `machine` with the KeyID
// carried in the entry.
//
// Invariants: a store only ever goes through an entry that is present, user, writable and
// dirty in the page table (or in a TLB entry filled from such an entry and not flushed
// since); bytes are moved page by page, so an access that faults half-way has written the
// bytes before the faulting page (as a real store sequence would) and reports the signal.
import KeyMMBase
import KeyMMHardware

extension Kernel {
    /// Whether a leaf entry lets `access` through (present, user, RW for writes, !NX for
    /// instruction fetches, PKRU for data accesses).
    @inline(__always)
    func entryPermits(_ e: UInt64, _ access: FaultAccess, pkru: UInt32) -> Bool {
        let pu = PTEFlags.present.rawValue | PTEFlags.user.rawValue
        guard e & pu == pu else { return false }
        switch access {
        case .read:
            return pkeyAllows(pkru: pkru, pkey: Int((e >> 59) & 0xF), write: false)
        case .write:
            return e & PTEFlags.rw.rawValue != 0 && pkeyAllows(pkru: pkru, pkey: Int((e >> 59) & 0xF), write: true)
        case .exec:
            return e & PTEFlags.nx.rawValue == 0
        }
    }

    /// One user access to the page holding `va`: returns the 4 KiB leaf entry used (frame and
    /// KeyID), faulting as needed, or 0 with `signal` set.
    func userAccess(_ task: TaskStruct, _ va: VirtAddr, _ access: FaultAccess, _ signal: inout MemSignal?) -> UInt64 {
        let pt = task.mm.pageTable
        let tlb = pt.tlb
        let vpn = va.pageNumber
        let write = access == .write
        if let e = tlb.lookup(vpn: vpn), entryPermits(e, access, pkru: task.pkru),
           !write || e & PTEFlags.dirty.rawValue != 0 {
            return e
        }
        let bits = PTEFlags.accessed.rawValue | (write ? PTEFlags.dirty.rawValue : 0)
        for _ in 0..<4 {
            machine.clock.charge(.ptWalk)
            switch pt.walk(va) {
            case .pte(_, let slot):
                let e = pt.raw(slot)
                if entryPermits(e, access, pkru: task.pkru) {
                    pt.setBits(slot, bits)
                    let leaf = e | bits
                    tlb.fill(vpn: vpn, entry: leaf)
                    return leaf
                }
            case .huge(let ps):
                let e = pt.raw(ps)
                if entryPermits(e, access, pkru: task.pkru) {
                    pt.setBits(ps, bits)
                    let leaf = hugeLeafTo4K(e | bits, va)
                    tlb.fill(vpn: vpn, entry: leaf)
                    return leaf
                }
            case .none:
                break
            }
            switch handleMMFault(task, va, access) {
            case .ok: continue
            case .sigsegv(let code): signal = .sigsegv(code); return 0
            case .sigbus: signal = .sigbus; return 0
            case .oom: signal = .sigkill; return 0
            }
        }
        // The fault handler keeps resolving but the entry never allows the access.
        signal = .sigsegv(.accErr)
        return 0
    }

    /// The 4 KiB view of a huge PMD leaf for the page holding `va` (what a 4 KiB TLB entry
    /// for it holds): the subpage's frame, PAT moved back to bit 7, PSE clear.
    @inline(__always)
    func hugeLeafTo4K(_ e: UInt64, _ va: VirtAddr) -> UInt64 {
        let sub = (va.rawValue & pmdMask) >> pageShift
        let frame = (PTE(raw: e).hugePFN(layout).rawValue &+ sub) << pageShift
        var f = e & ~(layout.pfnMask | PTEFlags.pse.rawValue)
        if e & PTEFlags.patLarge.rawValue != 0 { f |= PTEFlags.pse.rawValue }
        return (frame & layout.pfnMask) | f
    }

    /// The physical address a 4 KiB leaf entry gives to `va`.
    @inline(__always)
    func leafPhysAddr(_ e: UInt64, _ va: VirtAddr) -> PhysAddr {
        PhysAddr((e & layout.pfnMask) | UInt64(va.pageOffset))
    }

    /// `va + offset` as a user address, nil past the end of the user address space.
    @inline(__always)
    func userAddress(_ va: VirtAddr, plus offset: UInt64) -> VirtAddr? {
        let (a, o) = va.rawValue.addingReportingOverflow(offset)
        return o || a >= userAddressLimit ? nil : VirtAddr(a)
    }

    // MARK: the calls

    /// mem_write(ADDR, bytes): stores through the task's mapping, faulting as needed.
    public func memWrite(_ task: TaskStruct, _ addr: VirtAddr, _ bytes: [UInt8]) -> MemAccessResult {
        var signal: MemSignal?
        var done = 0
        let n = bytes.count
        unsafe bytes.withUnsafeBytes { buf in
            while done < n {
                guard let va = userAddress(addr, plus: UInt64(done)) else { signal = .sigsegv(.mapErr); return }
                let e = userAccess(task, va, .write, &signal)
                if signal != nil { return }
                let chunk = min(n - done, pageSize - va.pageOffset)
                unsafe machine.write(leafPhysAddr(e, va), keyid: layout.decodeKeyID(e),
                              from: UnsafeRawBufferPointer(rebasing: buf[done..<(done + chunk)]))
                // A poisoned line consumed (cvm/CVMAccess.swift): the machine check kills the access.
                if machine.integrity != nil, machine.takeMachineCheck() != nil { signal = .sigbus; return }
                done += chunk
            }
        }
        if let signal { return .signal(signal) }
        return .ok(done)
    }

    /// mem_read(ADDR, LEN): loads through the task's mapping, faulting as needed.
    public func memRead(_ task: TaskStruct, _ addr: VirtAddr, _ length: Int) -> MemReadResult {
        guard length > 0 else { return .ok([]) }
        var signal: MemSignal?
        let out = unsafe [UInt8](unsafeUninitializedCapacity: length) { buf, initialized in
            let raw = UnsafeMutableRawBufferPointer(buf)
            var done = 0
            while done < length {
                guard let va = userAddress(addr, plus: UInt64(done)) else { signal = .sigsegv(.mapErr); break }
                let e = userAccess(task, va, .read, &signal)
                if signal != nil { break }
                let chunk = min(length - done, pageSize - va.pageOffset)
                unsafe machine.read(leafPhysAddr(e, va), keyid: layout.decodeKeyID(e),
                             into: UnsafeMutableRawBufferPointer(rebasing: raw[done..<(done + chunk)]))
                if machine.integrity != nil, machine.takeMachineCheck() != nil { signal = .sigbus; break }
                done += chunk
            }
            if done < length { unsafe raw[done..<length].initializeMemory(as: UInt8.self, repeating: 0) }
            initialized = length
        }
        if let signal { return .signal(signal) }
        return .ok(out)
    }

    /// mem_touch(ADDR, LEN, PROT): accesses each page of the range in order (a write touch
    /// stores back the byte it read); returns the pages touched before the first access that
    /// would raise a signal.
    public func memTouch(_ task: TaskStruct, _ addr: VirtAddr, _ length: UInt64, _ access: Prot) -> Int {
        guard length > 0 else { return 0 }
        let kind: FaultAccess = access.contains(.write) ? .write : (access.contains(.read) || !access.contains(.exec) ? .read : .exec)
        var va = addr
        let lastByte = addr.rawValue &+ (length - 1)
        let endPage = lastByte < addr.rawValue ? UInt64.max >> pageShift : lastByte >> pageShift
        var touched = 0
        var byte: UInt8 = 0
        while true {
            guard va.rawValue < userAddressLimit else { return touched }
            var signal: MemSignal?
            let e = userAccess(task, va, kind, &signal)
            if signal != nil { return touched }
            let pa = leafPhysAddr(e, va)
            let keyid = layout.decodeKeyID(e)
            unsafe withUnsafeMutableBytes(of: &byte) { b in
                if kind != .exec { unsafe machine.read(pa, keyid: keyid, into: b) }
                if kind == .write { unsafe machine.write(pa, keyid: keyid, from: UnsafeRawBufferPointer(b)) }
            }
            touched += 1
            if va.pageNumber >= endPage { return touched }
            va = VirtAddr((va.pageNumber + 1) << pageShift)
        }
    }

    /// virt_to_phys(ADDR): the physical address (KeyID bits clear) behind a mapped address,
    /// nil (EFAULT) when nothing is mapped there. Faults nothing in.
    public func virtToPhys(_ task: TaskStruct, _ addr: VirtAddr) -> PhysAddr? {
        virtToPhys(task.mm, addr)
    }

    func virtToPhys(_ mm: MM, _ addr: VirtAddr) -> PhysAddr? {
        guard addr.rawValue < userAddressLimit else { return nil }
        let pt = mm.pageTable
        switch pt.walk(addr) {
        case .pte(_, let slot):
            let e = pt[slot]
            guard e.mapsFrame else { return nil }
            return leafPhysAddr(e.raw, addr)
        case .huge(let ps):
            let e = pt[ps]
            guard e.mapsFrame else { return nil }
            return leafPhysAddr(hugeLeafTo4K(e.raw, addr), addr)
        case .none:
            return nil
        }
    }
}
