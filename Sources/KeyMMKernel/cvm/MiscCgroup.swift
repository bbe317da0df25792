// The misc cgroup controller's scalar resources (kernel/cgroup/misc.c) as KVM charges them for
// confidential-VM key indices: "tdx" (guest KeyIDs), "sev" and "sev_es" (ASIDs). docs/sources.md,
// "SEV / SEV-SNP host" and "TDX host". The model has one cgroup (the root's child every task
// runs in): usage, a `max` limit (misc.max, default "max"), the capacity the driver set
// (misc.capacity) and the count of refused charges (misc.events "max").
//
// Rules: a charge fails with EINVAL when the resource has no capacity, with EBUSY when the new
// usage would pass `max` or the capacity (nothing is charged then); an uncharge below zero is an
// anomaly (recorded, usage stays 0).
//
// Invariant: usage equals the charges minus the uncharges of the VMs alive (checked by the CVM
// checks against the KeyIDs and ASIDs KVM holds).
import KeyMMBase

/// A misc cgroup resource KVM charges.
package enum MiscResource: String, CaseIterable, Sendable {
    case tdx, sev, sevES = "sev_es"
}

/// The misc cgroup of the model's tasks.
package struct MiscCgroup: Sendable {
    package private(set) var capacity: [MiscResource: Int] = [:]
    package private(set) var max: [MiscResource: Int] = [:]
    package private(set) var usage: [MiscResource: Int] = [:]
    /// misc.events: refused charges per resource.
    package private(set) var events: [MiscResource: Int] = [:]
    package private(set) var anomalies: [String] = []

    /// misc_cg_set_capacity().
    mutating func setCapacity(_ r: MiscResource, _ n: Int) { capacity[r] = n }

    /// Writing misc.max ("max" is nil: no limit).
    package mutating func setMax(_ r: MiscResource, _ n: Int?) { max[r] = n }

    /// misc_cg_try_charge(r, cg, 1).
    mutating func tryCharge(_ r: MiscResource) -> Errno? {
        let cap = capacity[r] ?? 0
        guard cap > 0 else { return .EINVAL }
        let new = (usage[r] ?? 0) + 1
        if new > cap || new > (max[r] ?? Int.max) {
            events[r, default: 0] += 1
            return .EBUSY
        }
        usage[r] = new
        return nil
    }

    /// misc_cg_uncharge(r, cg, 1).
    mutating func uncharge(_ r: MiscResource) {
        let u = usage[r] ?? 0
        if u == 0 { anomalies.append("misc cgroup: \(r.rawValue) uncharged below zero"); return }
        usage[r] = u - 1
    }
}
