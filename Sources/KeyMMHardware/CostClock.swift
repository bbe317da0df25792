// CostClock: the deterministic modeled clock. Every action charges cycles from the machine's
// CostProfile and counts itself; some quantities are only counted (`Counter`).
//
// Invariants: `cycles` only grows (until `reset`); it equals the sum over events of
// count * price at the time of each charge; nothing here reads the wall clock.
// Storage is one flat `OwnedBuffer` (no Swift arrays, no dynamic exclusivity checks on the hot path):
// [0] cycles, [1 ..< 1+E] event counts, [1+E ..< 1+E+C] counters, then E prices.

import KeyMMBase

/// The modeled cycle counter and event counters of one machine.
public final class CostClock {
    @usableFromInline static let events = CostEvent.allCases.count
    @usableFromInline static let counters = Counter.allCases.count
    @usableFromInline let slots: OwnedBuffer<UInt64>
    /// Prices in use.
    public private(set) var profile: CostProfile

    public init(profile: CostProfile = .default) {
        self.profile = profile
        let n = 1 + CostClock.events + CostClock.counters + CostClock.events
        slots = OwnedBuffer(zeroedCount: n)
        setPrices(profile)
    }

    /// Index of event `e`'s price in `slots`.
    @inlinable static func priceIndex(_ e: Int) -> Int { 1 + CostClock.events + CostClock.counters + e }

    private func setPrices(_ p: CostProfile) {
        for e in CostEvent.allCases { slots[CostClock.priceIndex(e.rawValue)] = p[e] }
    }

    /// Modeled cycles so far.
    @inlinable public var cycles: UInt64 {
        get { slots[0] }
        set { slots[0] = newValue }
    }

    /// Charges `count` occurrences of `e`: adds `count * price(e)` cycles and counts them.
    @inlinable public func charge(_ e: CostEvent, _ count: Int = 1) {
        let n = UInt64(truncatingIfNeeded: count)
        slots[0] &+= slots[CostClock.priceIndex(e.rawValue)] &* n
        slots[1 + e.rawValue] &+= n
    }

    /// Counts `n` occurrences of a cost-free counter.
    @inlinable public func count(_ c: Counter, _ n: Int = 1) {
        slots[1 + CostClock.events + c.rawValue] &+= UInt64(truncatingIfNeeded: n)
    }

    /// How many times `e` was charged.
    public func count(of e: CostEvent) -> UInt64 { slots[1 + e.rawValue] }
    /// The value of a counter.
    public func value(of c: Counter) -> UInt64 { slots[1 + CostClock.events + c.rawValue] }
    /// The current price of one event.
    public func price(of e: CostEvent) -> UInt64 { slots[CostClock.priceIndex(e.rawValue)] }

    /// Cycles charged to one event so far (count * current price).
    public func cycles(of e: CostEvent) -> UInt64 { count(of: e) &* price(of: e) }

    /// Every event count (by `counterName`) and every counter (by `name`), snake_case keys.
    public var snapshot: [String: UInt64] {
        var d: [String: UInt64] = [:]
        for e in CostEvent.allCases { d[e.counterName] = count(of: e) }
        for c in Counter.allCases { d[c.name] = value(of: c) }
        return d
    }

    /// Zeroes cycles and all counts (the profile stays).
    public func reset() {
        for i in 0..<(1 + CostClock.events + CostClock.counters) { slots[i] = 0 }
    }

    /// Replaces the price list (counts and cycles so far are kept).
    public func setProfile(_ p: CostProfile) {
        profile = p
        setPrices(p)
    }
}
