// KeySerial: the key_serial_t of the keyring API, and the special ids (KEY_SPEC_*) that name
// a process's keyrings.
//
// Invariants: a real key's serial is positive (Linux never hands out 0..2, the model neither);
// negative values are only the KEY_SPEC_* names; 0 is never a key.

/// A key serial number (key_serial_t), or one of the special KEY_SPEC_* keyring names.
public struct KeySerial: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible, ExpressibleByIntegerLiteral {
    public var rawValue: Int32
    @inlinable public init(rawValue: Int32) { self.rawValue = rawValue }
    @inlinable public init(_ raw: Int32) { self.rawValue = raw }
    @inlinable public init(integerLiteral value: Int32) { self.rawValue = value }
    @inlinable public static func < (a: KeySerial, b: KeySerial) -> Bool { a.rawValue < b.rawValue }

    /// KEY_SPEC_THREAD_KEYRING (-1): the calling thread's keyring.
    public static let threadKeyring = KeySerial(-1)
    /// KEY_SPEC_PROCESS_KEYRING (-2): the calling process's keyring.
    public static let processKeyring = KeySerial(-2)
    /// KEY_SPEC_SESSION_KEYRING (-3): the session keyring.
    public static let sessionKeyring = KeySerial(-3)
    /// KEY_SPEC_USER_KEYRING (-4): the UID-specific keyring.
    public static let userKeyring = KeySerial(-4)
    /// KEY_SPEC_USER_SESSION_KEYRING (-5): the UID-session keyring.
    public static let userSessionKeyring = KeySerial(-5)
    /// KEY_SPEC_GROUP_KEYRING (-6): never implemented by Linux (EINVAL).
    public static let groupKeyring = KeySerial(-6)
    /// KEY_SPEC_REQKEY_AUTH_KEY (-7): request_key() authorisation key (ENOKEY outside request_key).
    public static let reqkeyAuthKey = KeySerial(-7)
    /// KEY_SPEC_REQUESTOR_KEYRING (-8): request_key() destination (ENOKEY outside request_key).
    public static let requestorKeyring = KeySerial(-8)

    /// True for the KEY_SPEC_* names and 0 (never a real key).
    @inlinable public var isSpecial: Bool { rawValue < 1 }

    /// The strace spelling: the number, or the KEY_SPEC_* name.
    public var description: String {
        switch rawValue {
        case -1: "KEY_SPEC_THREAD_KEYRING"
        case -2: "KEY_SPEC_PROCESS_KEYRING"
        case -3: "KEY_SPEC_SESSION_KEYRING"
        case -4: "KEY_SPEC_USER_KEYRING"
        case -5: "KEY_SPEC_USER_SESSION_KEYRING"
        case -6: "KEY_SPEC_GROUP_KEYRING"
        case -7: "KEY_SPEC_REQKEY_AUTH_KEY"
        case -8: "KEY_SPEC_REQUESTOR_KEYRING"
        default: String(rawValue)
        }
    }
}
