// CostClock: the deterministic modeled clock. Every action charges cycles from the machine's
// CostProfile and counts itself; some quantities are only counted (`Counter`).
//
// Invariants: `cycles` only grows (until `reset`); it equals the sum over events of
// count * price at the time of each charge; nothing here reads the wall clock.

/// The modeled cycle counter and event counters of one machine.
public final class CostClock {
    /// Prices in use.
    public private(set) var profile: CostProfile
    @usableFromInline var prices: [UInt64]
    @usableFromInline var eventCounts: [UInt64]
    @usableFromInline var counterCounts: [UInt64]
    /// Modeled cycles so far.
    public var cycles: UInt64

    public init(profile: CostProfile = .default) {
        self.profile = profile
        self.prices = profile.cycles
        self.eventCounts = Array(repeating: 0, count: CostEvent.allCases.count)
        self.counterCounts = Array(repeating: 0, count: Counter.allCases.count)
        self.cycles = 0
    }

    /// Charges `count` occurrences of `e`: adds `count * price(e)` cycles and counts them.
    @inlinable public func charge(_ e: CostEvent, _ count: Int = 1) {
        let n = UInt64(truncatingIfNeeded: count)
        cycles &+= prices[e.rawValue] &* n
        eventCounts[e.rawValue] &+= n
    }

    /// Counts `n` occurrences of a cost-free counter.
    @inlinable public func count(_ c: Counter, _ n: Int = 1) {
        counterCounts[c.rawValue] &+= UInt64(truncatingIfNeeded: n)
    }

    /// How many times `e` was charged.
    public func count(of e: CostEvent) -> UInt64 { eventCounts[e.rawValue] }
    /// The value of a counter.
    public func value(of c: Counter) -> UInt64 { counterCounts[c.rawValue] }

    /// Cycles charged to one event so far (count * current price).
    public func cycles(of e: CostEvent) -> UInt64 { eventCounts[e.rawValue] &* prices[e.rawValue] }

    /// Every event count (by `counterName`) and every counter (by `name`), snake_case keys.
    public var snapshot: [String: UInt64] {
        var d: [String: UInt64] = [:]
        for e in CostEvent.allCases { d[e.counterName] = eventCounts[e.rawValue] }
        for c in Counter.allCases { d[c.name] = counterCounts[c.rawValue] }
        return d
    }

    /// Zeroes cycles and all counts (the profile stays).
    public func reset() {
        cycles = 0
        for i in eventCounts.indices { eventCounts[i] = 0 }
        for i in counterCounts.indices { counterCounts[i] = 0 }
    }

    /// Replaces the price list (counts and cycles so far are kept).
    public func setProfile(_ p: CostProfile) {
        profile = p
        prices = p.cycles
    }
}
