// The "mktme" key type's payload parser (mktme_preparse_payload / mktme_get_options /
// mktme_check_options): the options string user space passes as add_key's payload.
//
// Rules (the series, see docs/keys.md): 1...1024 bytes; options separated by spaces or tabs,
// empty fields skipped; each of type=, algorithm=, key=, tweak= at most once, with a non-empty
// value; type is cpu | user | clear | no-encrypt; algorithm is aes-xts-128; key=/tweak= are
// exactly 32 hex digits. cpu and user need algorithm=; user needs key= and tweak=; cpu takes
// key=/tweak= as optional entropy; clear and no-encrypt take neither key= nor tweak=.
// With user keys off (PATCHv2) only type= and algorithm= exist and only cpu | no-encrypt.
// Every violation is EINVAL. Parsed key bytes go straight into SecretBytes (no String copies).

import KeyMMBase

/// Bytes in an AES-XTS-128 data key or tweak key (MKTME_AES_XTS_SIZE).
public let mktmeAESXTSKeySize = 16

/// A parsed options string (struct mktme_payload). Owns its key material until `zeroize()`.
struct MKTMEPayload {
    var mode: MKTMEKeyMode
    /// `key=`: the data key (user) or data entropy (cpu).
    var dataKey: SecretBytes?
    /// `tweak=`: the tweak key (user) or tweak entropy (cpu).
    var tweakKey: SecretBytes?

    /// kzfree() of the preparsed payload.
    func zeroize() {
        dataKey?.zeroize()
        tweakKey?.zeroize()
    }

    /// Every buffer this payload holds (test hook: observe zeroization).
    var secrets: [SecretBytes] { [dataKey, tweakKey].compactMap { $0 } }
}

enum MKTMEOptionParser {
    private enum Option: CaseIterable { case type, algorithm, key, tweak }

    /// Parses `options`; EINVAL for any violation of the rules above.
    static func parse(_ options: [UInt8], userKeysEnabled: Bool) -> Result<MKTMEPayload, Errno> {
        guard (1...1024).contains(options.count) else { return .failure(.EINVAL) }
        // kmemdup_nul: the kernel's copy ends at the first NUL.
        let text = options.prefix { $0 != 0 }
        var seen: Set<Option> = []
        var mode: MKTMEKeyMode?
        var dataKey: SecretBytes?
        var tweakKey: SecretBytes?
        func fail() -> Result<MKTMEPayload, Errno> {
            dataKey?.zeroize(); tweakKey?.zeroize()
            return .failure(.EINVAL)
        }
        let sep: (UInt8) -> Bool = { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }
        for field in text.split(omittingEmptySubsequences: true, whereSeparator: sep) {
            guard let eq = field.firstIndex(of: UInt8(ascii: "=")) else { return fail() }
            let name = field[field.startIndex..<eq]
            let value = field[field.index(after: eq)...]
            let option: Option
            switch String(decoding: name, as: UTF8.self) {
            case "type": option = .type
            case "algorithm": option = .algorithm
            case "key" where userKeysEnabled: option = .key
            case "tweak" where userKeysEnabled: option = .tweak
            default: return fail()
            }
            // match_token's %s needs a non-empty value; a repeated option is an error.
            guard !value.isEmpty, seen.insert(option).inserted else { return fail() }
            switch option {
            case .type:
                switch String(decoding: value, as: UTF8.self) {
                case "cpu": mode = .cpu
                case "no-encrypt": mode = .noEncrypt
                case "user" where userKeysEnabled: mode = .user
                case "clear" where userKeysEnabled: mode = .clear
                default: return fail()
                }
            case .algorithm:
                guard value.elementsEqual("aes-xts-128".utf8) else { return fail() }
            case .key, .tweak:
                guard let bytes = SecretBytes(hex: value, byteCount: mktmeAESXTSKeySize) else { return fail() }
                if option == .key { dataKey = bytes } else { tweakKey = bytes }
            }
        }
        guard let mode, !seen.isEmpty else { return fail() }
        switch mode {
        case .user:
            guard seen.contains(.algorithm), dataKey != nil, tweakKey != nil else { return fail() }
        case .cpu:
            guard seen.contains(.algorithm) else { return fail() }
        case .clear, .noEncrypt:
            guard dataKey == nil, tweakKey == nil else { return fail() }
        }
        return .success(MKTMEPayload(mode: mode, dataKey: dataKey, tweakKey: tweakKey))
    }
}
