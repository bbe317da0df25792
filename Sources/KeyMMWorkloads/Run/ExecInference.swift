// Replay of real programs: the address space the kernel built at exec (the binary's
// segments, ld.so, the stack, vdso/vvar) appears in no syscall line. When a call of the
// log acts on such a region — mprotect of the binary's RELRO, munmap or madvise of a
// range the model never mapped — and the log says it succeeded, replay maps the missing
// part first and records it as inferred, apart from divergences.
//
// Invariant: only lenient runs infer; an inferred region covers exactly the holes of the
// call's range (for an equal-length MREMAP_FIXED move, which may span holes since Linux 6.17,
// only a hole at its start); nothing is inferred for a call whose recorded result is an error.
import KeyMMBase
import KeyMMKernel
import KeyMMTrace

extension SyscallDispatcher {
    mutating func inferExecRegions(_ call: ModeledCall, a: Arguments, line: SyscallLine,
                                   task: TaskStruct, kernel: Kernel) throws(TraceError) {
        guard line.result.errnoName == nil, line.result.int64Value != nil else { return }
        let prot: Prot
        switch call {
        case .mprotect, .pkey_mprotect, .munmap, .madvise, .mlock, .mlock2, .munlock:
            // ELF data segments are mapped read-write before RELRO is made read-only; text
            // segments read-execute. The exact prior protection is unknowable from the log.
            prot = [.read, .write]
        case .mremap:
            prot = [.read, .write]
        default:
            return
        }
        guard a.count >= 2 else { return }
        let start = VirtAddr(try a.u64(0)).pageDown
        guard let len = pageAlignUp(try a.u64(1)), len > 0, len <= 1 << 40 else { return }
        var end = start.advanced(by: len)
        guard end > start else { return }
        if call == .mremap, a.count >= 4, let newLen = pageAlignUp(try a.u64(2)), newLen == len,
           MremapFlags(rawValue: UInt32(truncatingIfNeeded: try a.u64(3, [.mremap]))).isSuperset(of: [.mayMove, .fixed]) {
            // Linux 6.17+: an equal-length MREMAP_FIXED move may span several VMAs with holes
            // between them; only its start must be mapped. So only a hole at the start is the
            // exec's (up to the first VMA the model knows); later holes are the program's own.
            if let first = task.mm.findVMA(start), first.vmStart < end { end = first.vmStart }
            guard end > start else { return }
        }
        var cursor = start
        let mm = task.mm
        while cursor < end {
            let next = mm.findVMA(cursor)
            let holeEnd = next.map { min($0.vmStart, end) } ?? end
            if let v = next, v.vmStart <= cursor {
                cursor = v.vmEnd
                continue
            }
            if holeEnd > cursor {
                let r = kernel.mmap(task, addr: cursor, length: holeEnd.distance(from: cursor), prot: prot,
                                    flags: [.private, .anonymous, .fixedNoReplace])
                if case .success = r {
                    let kind = execRegionKind(mm, start: cursor, end: holeEnd)   // ExecLayout.swift
                    inferred.append(InferredRegion(pid: task.pid.rawValue, start: "0x" + String(cursor.rawValue, radix: 16),
                                                   end: "0x" + String(holeEnd.rawValue, radix: 16),
                                                   kind: kind.rawValue, what: kind.what(layoutNotes(mm)),
                                                   reason: "\(line.location.file):\(line.location.line): \(line.name) acts on it and succeeded"))
                }
            }
            cursor = holeEnd
        }
    }
}
