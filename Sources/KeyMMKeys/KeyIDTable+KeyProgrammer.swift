// The hardware's KeyID table as the key service's KeyProgrammer: one PCONFIG per call, the key
// material copied into temporary arrays that are overwritten with zeros as soon as PCONFIG
// returns (the table hands the bytes to the engine and keeps none).
//
// Algorithm field: SET_KEY_DIRECT carries the user's 16-byte keys, so it is AES-XTS-128
// whatever the machine's default; SET_KEY_RANDOM uses the machine's configured width
// (`xts-key-bits`, 128 unless changed), the CPU generating the key.

import KeyMMBase
import KeyMMHardware

extension KeyIDTable: KeyProgrammer {
    public func programKeyID(_ keyid: KeyID, _ command: KeyProgramCommand) -> KeyProgramStatus {
        let status: PCONFIGStatus
        switch command {
        case .setKeyDirect(let dataKey, let tweakKey):
            var d = dataKey.withUnsafeBytes { Array($0) }
            var t = tweakKey.withUnsafeBytes { Array($0) }
            status = program(keyid, .setKeyDirect(dataKey: d, tweakKey: t), algorithm: PCONFIGAlgorithm.aesXTS128)
            zeroArray(&d)
            zeroArray(&t)
        case .setKeyRandom(let dataEntropy, let tweakEntropy):
            var d = dataEntropy.withUnsafeBytes { Array($0) }
            var t = tweakEntropy.withUnsafeBytes { Array($0) }
            status = program(keyid, .setKeyRandom(dataEntropy: d, tweakEntropy: t))
            zeroArray(&d)
            zeroArray(&t)
        case .clearKey:
            status = program(keyid, .clearKey)
        case .noEncrypt:
            status = program(keyid, .noEncrypt)
        }
        return KeyProgramStatus(rawValue: status.rawValue) ?? .invalidProgCmd
    }
}

/// Overwrites an array's bytes in place (it is uniquely referenced once PCONFIG returned).
private func zeroArray(_ a: inout [UInt8]) {
    a.withUnsafeMutableBytes { raw in
        for i in 0..<raw.count { raw.storeBytes(of: 0, toByteOffset: i, as: UInt8.self) }
    }
}

extension KeyService {
    /// A key service programming `machine`'s KeyID table, over the machine's MKTME KeyIDs
    /// (TDX-private KeyIDs excluded). `seed` defaults to the machine's seed.
    public convenience init(machine: Machine, userKeysEnabled: Bool = true, seed: UInt64? = nil) {
        self.init(programmer: machine.keyTable, keyids: machine.config.mktmeKeyIDs,
                  userKeysEnabled: userKeysEnabled, seed: seed ?? machine.config.seed)
    }
}
