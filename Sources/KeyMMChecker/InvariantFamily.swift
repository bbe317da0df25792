// InvariantFamily: how a family of invariants plugs into the checker (e.g. SGX enclave or TDX/SEV
// guest invariants). The checker runs every family after every call, after its built-in checks:
// `checkAll` after a full sweep (and after every call when the checker is not incremental),
// `checkTouched` otherwise, with the touch log of the call.
//
// The protocol's rule (docs/invariants.md, "Incremental checking"): a family that does not
// implement `checkTouched` gets the default, which runs `checkAll` — so a family without an
// incremental form is checked in full after every call, and nothing is silently weakened. A
// family that implements it must re-check everything the call could have changed: the objects
// behind the log's channels (frames, page-table ranges, VMA ranges, CPU accesses, references) or
// its own objects, which the model's hooks record with `TouchLog.note(kind, id)`.
import KeyMMHardware

/// A family of invariants checked after every call (see the file comment).
package protocol InvariantFamily: AnyObject {
    /// The invariants the family reports (for documentation and `CheckerOptions.enabled`).
    var invariants: [Invariant] { get }
    /// Checks every object of the family (the full sweep).
    func checkAll(_ checker: InvariantChecker)
    /// Checks what the call's touches could have broken. Default: `checkAll`.
    func checkTouched(_ checker: InvariantChecker, _ touches: TouchLog)
}

extension InvariantFamily {
    package func checkTouched(_ checker: InvariantChecker, _ touches: TouchLog) { checkAll(checker) }
}

extension InvariantChecker {
    /// Adds a family: checked after every call from now on.
    package func add(_ family: InvariantFamily) { families.append(family) }

    /// Reports a broken invariant of a family (`key` names the object: reported once per run).
    package func reportViolation(_ invariant: Invariant, key: String, _ detail: String) {
        report(invariant, key: key, detail)
    }
}
