// Memory accesses around confidential VMs: the guest's own loads and stores (through its private
// KeyID or ASID, or the host's KeyID for shared pages), and host kernel paths touching physical
// memory through the direct map (a driver, /dev/mem, kdump...), with the outcomes the hardware
// gives them: a machine check on a poisoned line, a fault on a page out of the direct map or
// assigned in the RMP. docs/tdx-sev.md.
//
// Invariant: nothing here changes ownership; an access that faults or machine-checks does not
// complete (bytes before the faulting page were written, as a real store sequence would).
import KeyMMBase
import KeyMMHardware

/// The outcome of a guest or host access.
package enum CVMAccessResult: Sendable, Equatable {
    /// Bytes written.
    case written(Int)
    /// Bytes read.
    case read([UInt8])
    /// A machine check (a poisoned line was read): SIGBUS for the process that made the access.
    case machineCheck
    /// The access was refused (EFAULT: no page there, out of the direct map, RMP violation).
    case error(Errno)
}

extension Kernel {
    /// The frame and tag a guest access to `gpa` uses, or nil (no memory at that GPA).
    func guestTarget(_ vm: ConfidentialVM, _ gpa: UInt64) -> (PFN, KeyID)? {
        let page = gpa & ~UInt64(pageSize - 1)
        if let f = vm.privatePages[page], let tag = vm.privateTag(machine.config) { return (f, tag) }
        if let f = vm.sharedPages[page] { return (f, .tme) }
        return nil
    }

    /// A store through a tag: host KeyIDs go through the machine (poison checks), ASID tags
    /// straight to the cache (the engine has their slots; integrity is TDX's, not SEV's).
    private func taggedWrite(_ pa: PhysAddr, _ tag: KeyID, _ bytes: ArraySlice<UInt8>) {
        let b = Array(bytes)
        if tag.rawValue > machine.config.maxKeyID {
            b.withUnsafeBytes { machine.cache.store(pa, keyid: tag, from: $0) }
        } else {
            machine.write(pa, keyid: tag, bytes: b)
        }
    }

    private func taggedRead(_ pa: PhysAddr, _ tag: KeyID, _ count: Int) -> [UInt8] {
        if tag.rawValue > machine.config.maxKeyID {
            var out = [UInt8](repeating: 0, count: count)
            out.withUnsafeMutableBytes { machine.cache.load(pa, keyid: tag, into: $0) }
            return out
        }
        return machine.read(pa, keyid: tag, count: count)
    }

    /// The guest of VM `h` stores `bytes` at `gpa`.
    package func guestWrite(_ h: Int32, gpa: UInt64, _ bytes: [UInt8]) -> CVMAccessResult {
        guard let vm = cvm.vm(h), !vm.destroyed else { return .error(.EBADF) }
        var done = 0
        while done < bytes.count {
            let g = gpa &+ UInt64(done)
            guard let (f, tag) = guestTarget(vm, g) else { return done > 0 ? .written(done) : .error(.EFAULT) }
            let off = Int(g & UInt64(pageSize - 1))
            let n = min(bytes.count - done, pageSize - off)
            taggedWrite(f.physAddr.advanced(by: off), tag, bytes[done..<(done + n)])
            if machine.takeMachineCheck() != nil { return .machineCheck }
            done += n
        }
        return .written(done)
    }

    /// The guest of VM `h` loads `count` bytes at `gpa`.
    package func guestRead(_ h: Int32, gpa: UInt64, count: Int) -> CVMAccessResult {
        guard let vm = cvm.vm(h), !vm.destroyed else { return .error(.EBADF) }
        var out: [UInt8] = []
        while out.count < count {
            let g = gpa &+ UInt64(out.count)
            guard let (f, tag) = guestTarget(vm, g) else { return .error(.EFAULT) }
            let off = Int(g & UInt64(pageSize - 1))
            let n = min(count - out.count, pageSize - off)
            out += taggedRead(f.physAddr.advanced(by: off), tag, n)
            if machine.takeMachineCheck() != nil { return .machineCheck }
        }
        return .read(out)
    }

    /// Why the host cannot touch `pfn` through the direct map (nil: it can).
    func hostAccessFault(_ pfn: PFN, write: Bool) -> Errno? {
        if cvm.isOutOfDirectMap(pfn) { return .EFAULT }          // kernel page fault: oops
        if write, machine.sev?.isAssigned(pfn) == true { return .EFAULT }   // RMP #PF
        return nil
    }

    /// A host kernel path stores `bytes` at physical address `pa` through the direct map (the
    /// frame's alias), with ordinary cached stores or, `nonTemporal`, MOVNTI-style stores.
    package func hostWrite(_ pa: PhysAddr, _ bytes: [UInt8], nonTemporal: Bool) -> CVMAccessResult {
        var done = 0
        while done < bytes.count {
            let a = pa.advanced(by: done)
            let f = a.pfn
            if let e = hostAccessFault(f, write: true) { return done > 0 ? .written(done) : .error(e) }
            let k = hardwareKeyID(allocator.pageKeyID(f), page: allocator.pageKeyID(f))
            let n = min(bytes.count - done, pageSize - a.pageOffset)
            let chunk = Array(bytes[done..<(done + n)])
            if nonTemporal {
                machine.writeNonTemporal(a, keyid: k, bytes: chunk, path: "host_write_nt")
            } else {
                machine.write(a, keyid: k, bytes: chunk)
            }
            if machine.takeMachineCheck() != nil { return .machineCheck }
            done += n
        }
        return .written(done)
    }

    /// A host kernel path loads `count` bytes at physical address `pa` through the direct map.
    package func hostRead(_ pa: PhysAddr, count: Int) -> CVMAccessResult {
        var out: [UInt8] = []
        while out.count < count {
            let a = pa.advanced(by: out.count)
            let f = a.pfn
            if let e = hostAccessFault(f, write: false) { return .error(e) }
            let k = hardwareKeyID(allocator.pageKeyID(f), page: allocator.pageKeyID(f))
            let n = min(count - out.count, pageSize - a.pageOffset)
            out += machine.read(a, keyid: k, count: n)
            if machine.takeMachineCheck() != nil { return .machineCheck }
        }
        return .read(out)
    }

    /// The key index of a VM: its TDX KeyID or its SEV ASID (nil: none held).
    package func cvmKeyIndex(_ h: Int32) -> Result<Int, Errno> {
        guard let vm = cvm.vm(h), !vm.destroyed else { return .failure(.EBADF) }
        if let k = vm.hkid { return .success(Int(k.rawValue)) }
        if let a = vm.asid { return .success(a) }
        return .failure(.EINVAL)
    }

    /// The host physical address behind a guest physical address (private, shared or removed
    /// page), EFAULT when the VM has no page there.
    package func cvmGPAToHPA(_ h: Int32, gpa: UInt64) -> Result<PhysAddr, Errno> {
        guard let vm = cvm.vm(h), !vm.destroyed else { return .failure(.EBADF) }
        let page = gpa & ~UInt64(pageSize - 1), off = Int(gpa & UInt64(pageSize - 1))
        if let f = vm.privatePages[page] ?? vm.sharedPages[page] ?? vm.removedPages[page]?.pfn {
            return .success(f.physAddr.advanced(by: off))
        }
        return .failure(.EFAULT)
    }

    /// Writing misc.max of a resource (nil: "max").
    package func miscCgSetMax(_ r: MiscResource, _ n: Int?) {
        cvm.miscCgroup.setMax(r, n)
    }
}
