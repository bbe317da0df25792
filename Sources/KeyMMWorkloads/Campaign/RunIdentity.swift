// What makes two shards "the same run": the KeyMM version and a plan — every option that decides
// the work and its modeled results (the fuzz seed, ops, policies, settings...; the bench's
// workloads, policies, settings and cost profile; the sweep's points), never the shard, the
// output format or the host. The config hash is FNV-1a (64 bits) of the plan as canonical JSON
// (keys sorted, no spaces): an identity check that catches a shard of another run, not a
// cryptographic digest.
//
// Invariant: equal plans give equal hashes on every host; the plan is written into every JSONL
// header, so `keymm merge` can rebuild the unsharded result from the shards alone.
import Foundation

/// The version written into JSONL headers and merged results.
public enum KeyMMVersion {
    public static let string = "0.3.0"
}

/// A run's plan as canonical JSON and its hash.
package struct RunIdentity: Sendable, Hashable {
    /// `fuzz`, `bench` or `sweep`.
    package let kind: String
    /// Everything that decides the work (a JSON object).
    package let plan: JSONValue
    /// Number of units (fuzz programs across policies, bench rows, sweep points).
    package let units: Int

    package init(kind: String, plan: JSONValue, units: Int) {
        self.kind = kind
        self.plan = plan
        self.units = units
    }

    /// 16 hex digits: FNV-1a 64 of `{"keymm":VERSION,"kind":KIND,"plan":PLAN,"units":N}`.
    package var configHash: String {
        let whole = JSONValue.object(["keymm": .string(KeyMMVersion.string), "kind": .string(kind), "plan": plan,
                                      "units": .int(Int64(units))])
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in whole.canonicalText.utf8 {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01B3
        }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}

extension JSONValue {
    /// Compact JSON with sorted keys (the form hashed and written on JSON Lines).
    package var canonicalText: String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let d = try? enc.encode(self) else { return "null" }
        return String(decoding: d, as: UTF8.self)
    }

    /// A JSON tree of an Encodable value (nil if it does not encode).
    package static func of<T: Encodable>(_ value: T) -> JSONValue? {
        guard let d = try? JSONEncoder().encode(value) else { return nil }
        return try? JSONDecoder().decode(JSONValue.self, from: d)
    }

    /// The value decoded as `T` (nil if it does not fit).
    package func decode<T: Decodable>(_ type: T.Type) -> T? {
        guard let d = try? JSONEncoder().encode(self) else { return nil }
        return try? JSONDecoder().decode(T.self, from: d)
    }

    /// The object's members (nil for other values).
    package var objectValue: [String: JSONValue]? {
        if case .object(let o) = self { return o }
        return nil
    }
}

extension ModelConfig {
    /// The settings as a JSON object (key sorted by the encoder), for plans; a cost profile file
    /// is represented by its content's hash too, so two hosts' copies of one profile agree.
    var planJSON: JSONValue {
        var o: [String: JSONValue] = [:]
        for (k, v) in settings { o[k] = .string(v) }
        if let file = costsFile {
            o["costs"] = .string((file as NSString).lastPathComponent)
            if let data = FileManager.default.contents(atPath: file) {
                var h: UInt64 = 0xCBF2_9CE4_8422_2325
                for b in data { h ^= UInt64(b); h = h &* 0x0000_0100_0000_01B3 }
                o["costs_fnv1a"] = .string(String(h, radix: 16))
            }
        }
        return .object(o)
    }
}
