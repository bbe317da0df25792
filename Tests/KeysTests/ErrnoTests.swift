import Testing
import KeyMMBase

@Suite struct ErrnoTests {
    @Test func namesRoundTripAndNumbersAreLinux() {
        for e in Errno.allCases { #expect(Errno(name: e.name) == e) }
        #expect(Errno.ENOMEM.rawValue == 12)
        #expect(Errno.ENOKEY.rawValue == 126)
        #expect(Errno.EKEYREVOKED.rawValue == 128)
        #expect(Errno.EKEYREVOKED.message == "Key has been revoked")
    }
}
