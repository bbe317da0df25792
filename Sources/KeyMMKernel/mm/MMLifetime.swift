// The lifetime of an address space: mm_users (mmget / mmput) and its teardown, exit_mmap.
//
// Every task that runs in an mm holds one mm_users reference: the task that created it
// (fork's dup_mm, execve's fresh mm, a spawned process), and every task created with
// CLONE_VM (threads, vfork and posix_spawn children) through mmget. exit and execve drop it
// with mmput. The last mmput tears the address space down with `exitMmap`, which first tells
// the mmu_notifier subscriptions (their `.release`, mm/MMUNotifier.swift, as mmu_notifier_release does at the
// start of exit_mmap: the hook a driver that tracks mms, such as SGX's, registers), then zaps
// and frees every VMA and the page tables. See docs/vm-core.md "Threads and mm lifetime".
//
// Invariants: `users` is the number of live tasks whose `mm` is this one; `exitMmap` runs
// exactly once per mm, when `users` reaches 0, and never on an mm that still has a user; an mm
// that has been torn down is never handed to a task again (mmget on it traps).
import KeyMMBase

extension Kernel {
    /// mmget(): one more task runs in `mm` (clone with CLONE_VM).
    func mmget(_ mm: MM) {
        precondition(!mm.tornDown && mm.users > 0, "mmget on an mm without users")
        mm.users += 1
    }

    /// mmput(): a task stops using `mm` (exit, execve); the last user tears it down.
    func mmput(_ mm: MM) {
        precondition(mm.users > 0, "mmput on an mm without users")
        mm.users -= 1
        if mm.users == 0 { exitMmap(mm) }
    }

    /// exit_mmap(): the address space's teardown, once, after its last user left: the
    /// mmu_notifier release callbacks, then every VMA unmapped and freed (KeyID references,
    /// anon_vma links, vm_ops close, file map counts) and the page tables freed.
    func exitMmap(_ mm: MM) {
        precondition(mm.users == 0 && !mm.tornDown, "exit_mmap runs once, when the last user is gone")
        mmuNotifierRelease(mm)                           // mm/MMUNotifier.swift
        mm.tornDown = true
        let all = mm.allVMAs
        for v in all { glueZap(mm, v, v.vmStart, v.vmEnd) }
        mm.vmas.removeAll()
        for v in all { freeVMA(v, mm: mm) }
        glueFreePageTables(mm)
        mm.totalVM = 0
        mm.lockedVM = 0
        mm.dataVM = 0
        mm.execVM = 0
        mm.stackVM = 0
        mm.committedPages = 0
    }
}
