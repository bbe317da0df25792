// Issue 16: the trace language knows every x86-64 Linux system call and errno name (generated
// tables, scripts/gen-linux-names.sh), so a misspelling is told from a real call; an errno Linux
// does not have is a located error; a directory is not a trace; and key material is redacted in
// every located error.
import Foundation
import Testing
import KeyMMTrace

@Suite struct NamesAndRedactionTests {
    @Test func syscallTableKnowsRealCallsAndStracesUnknownNumbers() {
        for name in ["read", "write", "mmap", "openat", "newfstatat", "clone3", "pkey_mprotect", "set_mempolicy_home_node",
                     "mseal", "syscall_0x1b2", "syscall_434"] {
            #expect(LinuxNames.isSyscall(name), "\(name)")
        }
        for name in ["munmpa", "wbinvd", "mem_write", "frobnicate", "syscall_", "syscall_0x", "syscall_12z", "encrypt_mprotect"] {
            #expect(!LinuxNames.isSyscall(name), "\(name)")
        }
        #expect(LinuxNames.syscalls.count > 360)
    }

    @Test func closestNameHintsAtTypos() {
        let calls = ["munmap", "wbinvd", "reclaim", "encrypt_mprotect", "mmap", "mprotect"]
        #expect(closestName(to: "munmpa", among: calls) == "munmap")
        #expect(closestName(to: "wbinvdd", among: calls) == "wbinvd")
        #expect(closestName(to: "reclam", among: calls) == "reclaim")
        #expect(closestName(to: "encrypt_mprotec", among: calls) == "encrypt_mprotect")
        #expect(closestName(to: "frobnicate", among: calls) == nil)
        #expect(closestName(to: "EINVLA", among: LinuxNames.errnos) == "EINVAL")
    }

    @Test func unknownErrnoIsALocatedErrorAndRealOnesParse() throws {
        let bad = TraceReader(string: "mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, -1, 0) = -1 EWHATEVER (Nope)\n", name: "e.strace")
        #expect(throws: TraceError.self) { _ = try bad.next() }
        do { _ = try TraceReader(string: "munmap(0, 1) = -1 EINVLA\n", name: "e.strace").next() } catch {
            #expect(error.description.hasPrefix("e.strace:1:19: error: unknown errno EINVLA in the result of munmap (did you mean EINVAL?)"))
        }
        for errno in ["ENOENT", "EWOULDBLOCK", "ERESTARTSYS", "ERESTART_RESTARTBLOCK", "EHWPOISON", "ENOKEY"] {
            let r = TraceReader(string: "close(3) = -1 \(errno)\n")
            guard case .call(let c)? = try r.next() else { Issue.record("no call"); continue }
            #expect(c.result.errnoName == errno)
        }
        // Lenient mode skips the line and records why.
        let lenient = TraceReader(string: "close(3) = -1 EBOGUS\nclose(4) = 0\n", lenient: true)
        _ = lenient.readAllCollectingErrors()
        #expect(lenient.skippedCount == 1 && lenient.skipped.first?.message.contains("unknown errno EBOGUS") == true)
    }

    @Test func aDirectoryIsNotATrace() {
        do {
            _ = try TraceReader(path: FileManager.default.temporaryDirectory.path)
            Issue.record("a directory opened as a trace")
        } catch {
            #expect(error.message.contains("is a directory"))
        }
    }

    @Test func keyMaterialIsRedacted() {
        let key = "0123456789abcdef0123456789ABCDEF"
        let text = "add_key(\"mktme\", \"a\", \"type=user algorithm=aes-xts-128 key=\(key) TWEAK=\(key.lowercased())\", 90, KEY_SPEC_PROCESS_KEYRING)"
        let r = redactingKeyMaterial(text)
        #expect(r == "add_key(\"mktme\", \"a\", \"type=user algorithm=aes-xts-128 key=<redacted, 32 hex> TWEAK=<redacted, 32 hex>\", 90, KEY_SPEC_PROCESS_KEYRING)")
        #expect(redactingKeyMaterial("monkey=12ab key= tweak=0x0a0b") == "monkey=12ab key= tweak=<redacted, 6 hex>")
        #expect(redactingKeyMaterial("no key material here") == "no key material here")
        let e = TraceError(location: SourceLocation(file: "f", line: 1, column: 1), message: "bad \(text)")
        #expect(!e.description.contains(key) && !e.description.contains(key.lowercased()))
    }
}
