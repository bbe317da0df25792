// Questions about names a trace uses: is this a Linux system call, is this an errno, and which
// known name is a misspelling closest to. The tables are generated (LinuxNames.swift,
// scripts/gen-linux-names.sh); this file owns the lookups and the "did you mean" rule.
//
// Invariant: strace's spelling of a system call it has no name for (`syscall_0x1b2`,
// `syscall_434`) counts as a system call; nothing else outside the tables does.

extension LinuxNames {
    /// Whether `name` is an x86-64 Linux system call as strace or perf trace prints it.
    package static func isSyscall(_ name: String) -> Bool {
        if syscalls.contains(name) { return true }
        guard name.hasPrefix("syscall_") else { return false }
        let number = name.dropFirst(8)
        if number.hasPrefix("0x") { return number.count > 2 && UInt64(number.dropFirst(2), radix: 16) != nil }
        return UInt64(number) != nil
    }

    /// Whether `name` is a Linux errno name (ENOMEM, EWOULDBLOCK, ERESTARTSYS, ...).
    package static func isErrno(_ name: String) -> Bool { errnos.contains(name) }
}

/// The candidate closest to `name` for a "did you mean" hint: Levenshtein distance at most a
/// third of the name's length (at least 1, at most 3); ties go to the alphabetically first.
package func closestName(to name: String, among candidates: some Sequence<String>) -> String? {
    let target = Array(name.utf8)
    let limit = min(3, max(1, target.count / 3))
    var best: (name: String, distance: Int)?
    for candidate in candidates {
        let c = Array(candidate.utf8)
        if abs(c.count - target.count) > limit { continue }
        let d = editDistance(target, c)
        if d <= limit, best == nil || d < best!.distance || (d == best!.distance && candidate < best!.name) {
            best = (candidate, d)
        }
    }
    return best?.name
}
