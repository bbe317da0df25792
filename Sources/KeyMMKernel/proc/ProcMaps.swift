// /proc/PID/maps and /proc/PID/smaps (fs/proc/task_mmu.c): one header line per VMA in
// show_map_vma's format (addresses as %08lx, perms rwx + s/p, offset %08llx, dev %02x:%02x,
// inode, then the name padded to column 73 by seq_pad), and smaps' counters and VmFlags.
//
// Invariants: the output is byte-for-byte what Linux 6.18 prints for the same VMAs (names:
// file path, vm_ops name, [heap], [stack], [anon:NAME]); a VMA without a name ends its line
// with the space after the inode, as Linux does.
import KeyMMBase

extension Kernel {
    /// /proc/PID/maps; nil for an unknown pid.
    package func procMaps(_ pid: ProcessID) -> String? {
        guard let task = tasks[pid] else { return nil }
        var out = ""
        out.reserveCapacity(task.mm.mapCount * 80)
        for vma in task.mm.vmas { showMapVMA(task.mm, vma, into: &out) }
        return out
    }

    /// One maps line (show_map_vma).
    package func mapsLine(_ mm: MM, _ vma: VMA) -> String {
        var s = ""
        showMapVMA(mm, vma, into: &s)
        return s
    }

    func showMapVMA(_ mm: MM, _ vma: VMA, into out: inout String) {
        var dev: (UInt32, UInt32) = (0, 0)
        var ino: UInt64 = 0
        var pgoff: UInt64 = 0
        if let f = vma.vmFile {
            dev = f.device
            ino = f.inode
            pgoff = vma.vmPgoff << pageShift
        }
        let lineStart = out.utf8.count
        out += hex8(vma.vmStart.rawValue)
        out += "-"
        out += hex8(vma.vmEnd.rawValue)
        out += " "
        let f = vma.vmFlags
        out += f.contains(.read) ? "r" : "-"
        out += f.contains(.write) ? "w" : "-"
        out += f.contains(.exec) ? "x" : "-"
        out += f.contains(.mayShare) ? "s" : "p"
        out += " "
        out += hex8(pgoff)
        out += " "
        out += hex2(UInt64(dev.0))
        out += ":"
        out += hex2(UInt64(dev.1))
        out += " "
        out += String(ino)
        out += " "
        if let name = vmaName(mm, vma) {
            // seq_pad(m, ' '): pad to 72 columns, then one space.
            let width = out.utf8.count - lineStart
            if width < 72 { out += String(repeating: " ", count: 72 - width) }
            out += " "
            out += name
        }
        out += "\n"
    }

    /// get_vma_name(): file path, vm_ops name, [heap], [stack], [anon:NAME].
    func vmaName(_ mm: MM, _ vma: VMA) -> String? {
        if let f = vma.vmFile {
            if let n = vma.anonName { return "[anon_shmem:\(n)]" }
            return f.path
        }
        if let n = vma.vmOps?.name { return n }
        if vma.vmStart < mm.brk && vma.vmEnd > mm.startBrk { return "[heap]" }
        if mm.startStack.rawValue != 0 && vma.vmStart <= mm.startStack && vma.vmEnd >= mm.startStack {
            return "[stack]"
        }
        if let n = vma.anonName { return "[anon:\(n)]" }
        return nil
    }

    /// Sets mm->start_stack (exec does this; [stack] is the VMA containing it).
    package func setStartStack(_ pid: ProcessID, _ addr: VirtAddr) {
        tasks[pid]?.mm.startStack = addr
    }
}

/// %08lx
@inline(__always) func hex8(_ v: UInt64) -> String {
    let s = String(v, radix: 16)
    return s.count >= 8 ? s : String(repeating: "0", count: 8 - s.count) + s
}

/// %02x
@inline(__always) func hex2(_ v: UInt64) -> String {
    let s = String(v, radix: 16)
    return s.count >= 2 ? s : String(repeating: "0", count: 2 - s.count) + s
}
