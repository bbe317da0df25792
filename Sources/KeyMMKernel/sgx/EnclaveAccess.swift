// Accesses from inside an enclave (the model-only `enclave_read` / `enclave_write`): the thread
// enters the enclave the VMA at the address belongs to (EENTER), each page is reached through the
// process's page tables (faulting through sgx_vma_fault as needed), and the CPU then checks the
// EPCM (the frame is an EPC page of this enclave, added for this address, a REG page with the
// right permission) before it moves bytes through the EPC's key. The thread stays inside until its
// next call (an asynchronous exit, which the dispatcher signals with `sgxAsyncExit`), so ETRACK and
// the reclaimer's IPIs have threads to wait for. Also the model-only tampering with backing storage.
// docs/sources.md, "SGX hardware (Intel SDM, ENCLS/ENCLU)"; docs/sgx.md.
//
// Invariants: enclave data is read and written only through the EPC's key slot; an access the
// EPCM would refuse raises SIGSEGV (the #PF with PFEC.SGX a real thread would take) and moves no
// byte of that page.
import KeyMMBase
import KeyMMHardware

/// How `sgx_tamper` changes a written-back page.
package enum SGXTamper: Sendable {
    /// Flip a byte of the sealed contents (the MAC no longer matches).
    case flip
    /// Put back the page's previous sealed copy and PCMD (a replay: the version no longer matches).
    case replay
}

extension Kernel {
    /// enclave_write(ADDR, bytes): stores from inside the enclave mapped at ADDR.
    package func enclaveWrite(_ task: TaskStruct, _ addr: VirtAddr, _ bytes: [UInt8]) -> MemAccessResult {
        var done = 0
        let r = enclaveAccess(task, addr, bytes.count, write: true) { pa, offset, n in
            sgx!.unit.enclaveWrite(pa, bytes: bytes[offset..<(offset + n)])
            done += n
        }
        if let s = r { return .signal(s) }
        return .ok(done)
    }

    /// enclave_read(ADDR, LEN): loads from inside the enclave mapped at ADDR.
    package func enclaveRead(_ task: TaskStruct, _ addr: VirtAddr, _ length: Int) -> MemReadResult {
        var out = [UInt8](repeating: 0, count: max(length, 0))
        let r = enclaveAccess(task, addr, length, write: false) { pa, offset, n in
            out.replaceSubrange(offset..<(offset + n), with: sgx!.unit.enclaveRead(pa, count: n))
        }
        if let s = r { return .signal(s) }
        return .ok(out)
    }

    /// The common path: EENTER, then page by page the translation and the EPCM check.
    func enclaveAccess(_ task: TaskStruct, _ addr: VirtAddr, _ length: Int, write: Bool,
                       _ move: (PhysAddr, Int, Int) -> Void) -> MemSignal? {
        guard let d = sgx else { return .sigsegv(.mapErr) }
        defer { d.runKsgxdIfWoken() }
        d.changed()
        guard let vma = task.mm.vma(containing: addr) else { return .sigsegv(.mapErr) }
        guard let ops = vma.vmOps as? SGXVMOps, let eid = ops.enclave.eid else { return .sigsegv(.accErr) }
        let thread = UInt64(UInt32(bitPattern: task.pid.rawValue))
        d.unit.exit(thread: thread)
        // EENTER faults on a TCS whose SECS was written back; the fault handler loads the SECS.
        if ops.enclave.initialized, ops.enclave.secs.epc == nil, !d.loadSECS(ops.enclave) { return .sigbus }
        guard d.unit.enter(thread: thread, eid) else { return .sigsegv(.accErr) }
        var done = 0
        while done < length {
            guard let va = userAddress(addr, plus: UInt64(done)) else { return .sigsegv(.mapErr) }
            var signal: MemSignal?
            let e = userAccess(task, va, write ? .write : .read, &signal)
            if let signal { return signal }
            let pa = leafPhysAddr(e, va)
            guard let page = d.unit.page(at: pa), d.unit.allows(page, eid: eid, linear: va.rawValue, write: write) else {
                return .sigsegv(.accErr)
            }
            let n = min(length - done, pageSize - va.pageOffset)
            move(pa, done, n)
            done += n
        }
        return nil
    }

    /// The task makes a call: if it was inside an enclave, it left it (an asynchronous exit).
    package func sgxAsyncExit(_ pid: ProcessID) {
        sgx?.unit.exit(thread: UInt64(UInt32(bitPattern: pid.rawValue)))
    }

    /// A thread that exits leaves its enclave.
    func sgxThreadExits(_ pid: ProcessID) { sgxAsyncExit(pid) }

    /// sgx_tamper(FD, OFFSET, MODE) (model only): changes the written-back copy of the enclave page at
    /// OFFSET (ENOENT when the page is in the EPC or has no such copy, EINVAL for an offset outside the
    /// enclave), as someone with access to the swap/backing storage could.
    package func sgxTamper(_ task: TaskStruct, fd: Int32, offset: UInt64, _ how: SGXTamper) -> Result<Void, Errno> {
        guard let d = sgx else { return .failure(.EBADF) }
        d.changed()
        let encl: SGXEnclave
        switch d.enclave(task, fd: fd) {
        case .failure(let e): return .failure(e)
        case .success(let e): encl = e
        }
        guard encl.created, offset & UInt64(pageSize - 1) == 0, offset <= encl.size else { return .failure(.EINVAL) }
        let index = offset >> pageShift
        guard let b = encl.backing[index], !b.pcmd.mac.isEmpty else { return .failure(.ENOENT) }
        switch how {
        case .flip:
            var byte = kernelRead(b.frame, offset: 100, count: 1)
            byte[0] ^= 0x5A
            kernelWrite(b.frame, offset: 100, byte)
        case .replay:
            guard let old = encl.olderSealed[index] else { return .failure(.ENOENT) }
            kernelWrite(b.frame, old.blob)
            encl.backing[index]!.pcmd = old.pcmd
        }
        return .success(())
    }
}
