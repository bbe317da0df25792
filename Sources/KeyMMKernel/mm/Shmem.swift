// Shared anonymous memory's backing file: MAP_SHARED|MAP_ANONYMOUS gets a fresh shmem inode
// ("/dev/zero (deleted)" on the internal mount, device 00:01), and that inode, with its page
// cache, goes away when its last mapping does (nothing else holds it: there is no fd). A memfd
// (mm/Memfd.swift) goes when its last mapping and its last fd are gone.
//
// Invariant: `file.mapCount` counts the VMAs whose vm_file is `file`; every page the page
// cache holds for a dead shmem inode is released exactly once.
import KeyMMBase

extension Kernel {
    /// shmem_zero_setup(): a new shmem file of `size` bytes backs `vma`.
    func shmemZeroSetup(_ vma: VMA, size: UInt64) {
        let f = MappedFile(path: "/dev/zero (deleted)", inode: nextShmemInode, device: (0, 1), size: size)
        nextShmemInode &+= 1
        f.isShmem = true
        vma.vmFile = f
        f.mapCount += 1
    }

    /// A VMA now maps `file` (vm_area_dup, mmap of a file).
    @inline(__always) func fileMapped(_ file: MappedFile?) {
        file?.mapCount += 1
    }

    /// A VMA mapping `file` is gone; the last one evicts a shmem inode's pages (a memfd's only
    /// if no fd reaches it either).
    func fileUnmapped(_ file: MappedFile?) {
        guard let f = file else { return }
        f.mapCount -= 1
        guard f.isShmem, f.mapCount <= 0 else { return }
        if f.isMemfd { releaseMemfdIfUnreferenced(f); return }
        evictShmem(f)
    }

    /// The shmem inode is gone: its page cache goes.
    func evictShmem(_ f: MappedFile) {
        guard let space = pageCache.removeMapping(for: f) else { return }
        for pfn in space.pages.values.sorted() { allocator.putPage(pfn) }
    }

    /// A memfd dies with its last mapping and its last fd (in any live task's table).
    func releaseMemfdIfUnreferenced(_ f: MappedFile) {
        guard f.isMemfd, f.mapCount <= 0 else { return }
        for t in tasks.values where t.files.fds.values.contains(where: { $0.file === f }) { return }
        evictShmem(f)
    }
}
