// Changing a file's size (fs/open.c do_ftruncate / do_sys_truncate, mm/truncate.c): ftruncate
// and truncate set the size; shrinking unmaps every page beyond the new end from every
// mapping of the file — private copies of those pages too (unmap_mapping_range with
// even_cows) — drops them from the page cache and zeroes the tail of the last partial page.
// Later faults beyond the end are SIGBUS (Fault.swift's EOF check).
//
// Invariants: guard markers survive truncation (an ordinary zap); a page beyond EOF is in no
// page table and not in the page cache after a shrink.
import KeyMMBase

extension Kernel {
    /// ftruncate(2): negative length EINVAL, unknown fd EBADF, fd not open for writing EINVAL.
    public func ftruncate(_ pid: ProcessID, fd: Int32, length: Int64) -> Result<Void, Errno> {
        machine.clock.charge(.syscall)
        guard let task = tasks[pid] else { return .failure(.ESRCH) }
        if length < 0 { return .failure(.EINVAL) }
        guard let of = task.files.fds[fd] else { return .failure(.EBADF) }
        if !of.writable { return .failure(.EINVAL) }
        setFileSize(of.file, UInt64(length))
        return .success(())
    }

    /// truncate(2) of a model file: negative length EINVAL, no such file ENOENT.
    public func truncate(_ pid: ProcessID, path: String, length: Int64) -> Result<Void, Errno> {
        machine.clock.charge(.syscall)
        guard tasks[pid] != nil else { return .failure(.ESRCH) }
        if length < 0 { return .failure(.EINVAL) }
        guard let f = filesystem[path] else { return .failure(.ENOENT) }
        setFileSize(f, UInt64(length))
        return .success(())
    }

    /// i_size_write + truncate_pagecache.
    func setFileSize(_ file: MappedFile, _ size: UInt64) {
        let old = file.size
        file.size = size
        guard size < old else { return }
        let firstGone = (size &+ UInt64(pageSize - 1)) >> pageShift   // first page wholly beyond EOF
        // unmap_mapping_range(holebegin, 0, even_cows = 1) in every mm mapping the file.
        var seen = Set<ObjectIdentifier>()
        for pid in tasks.keys.sorted() {
            guard let mm = tasks[pid]?.mm, seen.insert(ObjectIdentifier(mm)).inserted else { continue }
            for v in mm.allVMAs where v.vmFile === file {
                let vmaLast = v.vmPgoff &+ v.pages
                guard vmaLast > firstGone else { continue }
                let from = firstGone > v.vmPgoff ? v.vmStart.advanced(by: (firstGone - v.vmPgoff) << pageShift) : v.vmStart
                glueZap(mm, v, from, v.vmEnd, keepMarkers: true)
            }
        }
        // truncate_inode_pages: drop the cached pages beyond EOF, zero the partial tail.
        guard let space = pageCache.existingMapping(for: file) else { return }
        for index in space.pages.keys.sorted() where index >= firstGone {
            if let pfn = space.pages.removeValue(forKey: index) { allocator.putPage(pfn) }
            space.dirty.remove(index)
        }
        let tail = Int(size & UInt64(pageSize - 1))
        if tail != 0, let pfn = space.pages[size >> pageShift] {
            kernelWrite(pfn, offset: tail, [UInt8](repeating: 0, count: pageSize - tail))
        }
    }
}
