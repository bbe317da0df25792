// Typed accessors: constants to numbers (Linux x86-64 values), strings, fields, located errors.
import Testing
import KeyMMTrace

@Suite struct AccessorTests {
    @Test func mmapArgumentsAsNumbers() throws {
        let c = try call("mmap(0x7f0000000000, 8192, PROT_READ|PROT_WRITE|PROT_EXEC, MAP_SHARED|MAP_FIXED_NOREPLACE|MAP_POPULATE, 3, 0x2000) = 0x7f0000000000")
        #expect(try c.arg(0).asUInt64() == 0x7f00_0000_0000)
        #expect(try c.arg(2).asUInt64([.prot]) == 7)
        #expect(try c.arg(3).asUInt64([.map]) == 0x1 | 0x100000 | 0x8000)
        #expect(try c.arg(4).asInt32() == 3)
        #expect(try c.arg(5).asUInt64() == 0x2000)
    }

    @Test func constantFamiliesHaveLinuxValues() throws {
        let k = TraceConstants.linux
        let expected: [(String, Int64)] = [
            ("PROT_NONE", 0), ("PROT_READ", 1), ("PROT_WRITE", 2), ("PROT_EXEC", 4), ("PROT_GROWSDOWN", 0x0100_0000),
            ("MAP_SHARED", 1), ("MAP_PRIVATE", 2), ("MAP_SHARED_VALIDATE", 3), ("MAP_FIXED", 0x10),
            ("MAP_ANONYMOUS", 0x20), ("MAP_32BIT", 0x40), ("MAP_GROWSDOWN", 0x100), ("MAP_DENYWRITE", 0x800),
            ("MAP_EXECUTABLE", 0x1000), ("MAP_LOCKED", 0x2000), ("MAP_NORESERVE", 0x4000), ("MAP_POPULATE", 0x8000),
            ("MAP_NONBLOCK", 0x10000), ("MAP_STACK", 0x20000), ("MAP_HUGETLB", 0x40000), ("MAP_SYNC", 0x80000),
            ("MAP_FIXED_NOREPLACE", 0x100000), ("MAP_HUGE_2MB", 21 << 26), ("MAP_HUGE_1GB", 30 << 26),
            ("MADV_NORMAL", 0), ("MADV_DONTNEED", 4), ("MADV_FREE", 8), ("MADV_REMOVE", 9), ("MADV_DONTFORK", 10),
            ("MADV_DOFORK", 11), ("MADV_MERGEABLE", 12), ("MADV_UNMERGEABLE", 13), ("MADV_HUGEPAGE", 14),
            ("MADV_NOHUGEPAGE", 15), ("MADV_WIPEONFORK", 18), ("MADV_KEEPONFORK", 19), ("MADV_COLD", 20),
            ("MADV_PAGEOUT", 21), ("MADV_POPULATE_READ", 22), ("MADV_POPULATE_WRITE", 23), ("MADV_COLLAPSE", 25),
            ("MREMAP_MAYMOVE", 1), ("MREMAP_FIXED", 2), ("MREMAP_DONTUNMAP", 4),
            ("MCL_CURRENT", 1), ("MCL_FUTURE", 2), ("MCL_ONFAULT", 4), ("MLOCK_ONFAULT", 1),
            ("KEY_SPEC_THREAD_KEYRING", -1), ("KEY_SPEC_PROCESS_KEYRING", -2), ("KEY_SPEC_SESSION_KEYRING", -3),
            ("KEY_SPEC_USER_KEYRING", -4), ("KEY_SPEC_USER_SESSION_KEYRING", -5),
            ("KEYCTL_UPDATE", 2), ("KEYCTL_REVOKE", 3), ("KEYCTL_DESCRIBE", 6), ("KEYCTL_UNLINK", 9),
            ("KEYCTL_READ", 11), ("KEYCTL_INVALIDATE", 21),
            ("O_RDONLY", 0), ("O_WRONLY", 1), ("O_RDWR", 2), ("O_CREAT", 0o100), ("O_TRUNC", 0o1000),
            ("O_CLOEXEC", 0o2000000), ("O_DIRECTORY", 0o200000), ("O_TMPFILE", 0o20200000),
            ("AT_FDCWD", -100), ("AT_EMPTY_PATH", 0x1000), ("AT_SYMLINK_NOFOLLOW", 0x100),
            ("PKEY_DISABLE_ACCESS", 1), ("PKEY_DISABLE_WRITE", 2),
            ("MPOL_DEFAULT", 0), ("MPOL_PREFERRED", 1), ("MPOL_BIND", 2), ("MPOL_INTERLEAVE", 3), ("MPOL_LOCAL", 4),
            ("MPOL_F_STATIC_NODES", 0x8000), ("MPOL_MF_STRICT", 1), ("MPOL_MF_MOVE", 2), ("MPOL_MF_MOVE_ALL", 4),
            ("MS_ASYNC", 1), ("MS_INVALIDATE", 2), ("MS_SYNC", 4),
            ("CLONE_VM", 0x100), ("CLONE_FS", 0x200), ("CLONE_FILES", 0x400), ("CLONE_SIGHAND", 0x800),
            ("CLONE_VFORK", 0x4000), ("CLONE_THREAD", 0x10000), ("CLONE_SETTLS", 0x80000),
            ("CLONE_PARENT_SETTID", 0x100000), ("CLONE_CHILD_CLEARTID", 0x200000), ("CLONE_CHILD_SETTID", 0x100_0000),
            ("SIGHUP", 1), ("SIGKILL", 9), ("SIGBUS", 7), ("SIGSEGV", 11), ("SIGCHLD", 17), ("SIGSYS", 31),
            ("SIGRTMIN", 32), ("SIGRT_1", 33),
        ]
        for (name, value) in expected {
            #expect(k.value(name) == value, "\(name)")
        }
        #expect(k.entry("MAP_ANONYMOUS")?.family == .map)
        #expect(k.value("PROT_READER") == nil)
    }

    @Test func negativeConstantsAndSignedAccess() throws {
        let c = try call("keyctl(KEYCTL_DESCRIBE, KEY_SPEC_SESSION_KEYRING, 0x5581, 4096) = 42")
        #expect(try c.arg(0).asInt64([.keyctl]) == 6)
        #expect(try c.arg(1).asInt32([.keySpec]) == -3)
        let o = try call("openat(AT_FDCWD, \"/tmp/f\", O_RDWR|O_CREAT|O_TRUNC, 0644) = 3")
        #expect(try o.arg(0).asInt32([.at]) == -100)
        #expect(try o.arg(1).asString() == "/tmp/f")
        #expect(try o.arg(2).asUInt64([.open]) == 0o1102)
        #expect(try o.arg(3).asUInt64() == 0o644)
    }

    @Test func cloneFlagsThroughNamedArgument() throws {
        let c = try call("clone(child_stack=NULL, flags=CLONE_VM|CLONE_VFORK|SIGCHLD) = 99")
        let flags = try #require(c.argument(named: "flags"))
        #expect(try flags.asUInt64([.clone, .signal]) == 0x100 | 0x4000 | 17)
        #expect(try c.arg(0).asUInt64() == 0)
    }

    @Test func hugeShiftExpression() throws {
        let c = try call("mmap(NULL, 2097152, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB|21<<MAP_HUGE_SHIFT, -1, 0)")
        #expect(try c.arg(3).asUInt64([.map]) == 0x2 | 0x20 | 0x40000 | (21 << 26))
        #expect(try c.arg(4).asInt64() == -1)
        #expect(try c.arg(4).asUInt64() == UInt64.max)
    }

    @Test func fstatSizeField() throws {
        let c = try call("fstat(3, {st_mode=S_IFREG|0644, st_size=1234, ...}) = 0")
        #expect(try c.arg(1).field("st_size").asUInt64() == 1234)
        #expect(try c.arg(1).field("st_mode").asUInt64() == 0o100644)
        #expect(throws: TraceError.self) { try c.arg(1).field("st_blocks") }
    }

    @Test func unknownConstantErrorsAreLocatedWithHint() throws {
        let c = try call("mmap(NULL, 4096, PROT_REED, MAP_PRIVATE, -1, 0)")
        do {
            _ = try c.arg(2).asUInt64([.prot])
            Issue.record("no error")
        } catch {
            #expect(error.description == "t.strace:1:18: error: argument 3 of mmap: unknown constant PROT_REED (did you mean PROT_READ?); accepted: integers (decimal 42, hex 0x2a, octal 052, negative -1), NULL, and PROT_* constants joined by |")
        }
        let wrongFamily = try call("mprotect(0x1000, 4096, MAP_SHARED)")
        do {
            _ = try wrongFamily.arg(2).asUInt64([.prot])
            Issue.record("no error")
        } catch {
            #expect(error.description.hasPrefix("t.strace:1:24: error: argument 3 of mprotect: MAP_SHARED is a MAP_* constant, not valid here"))
        }
    }

    @Test func wrongKindsAreErrors() throws {
        let c = try call("f(\"str\", 1, [1], \"abc\"..., 99999999999999999999999, 0x100000000)")
        #expect(throws: TraceError.self) { try c.arg(0).asUInt64() }
        #expect(throws: TraceError.self) { try c.arg(1).asBytes() }
        #expect(throws: TraceError.self) { try c.arg(2).asUInt64() }
        #expect(throws: TraceError.self) { try c.arg(3).asBytes() }
        #expect(try c.arg(3).asBytes(allowTruncated: true) == Array("abc".utf8))
        #expect(throws: TraceError.self) { try c.arg(4).asUInt64() }
        #expect(throws: TraceError.self) { try c.arg(5).asInt32() }
        do {
            _ = try c.arg(9)
            Issue.record("no error")
        } catch {
            #expect(error.description == "t.strace:1:1: error: f needs at least 10 arguments, the line has 6")
        }
    }

    @Test func memWriteBytes() throws {
        let c = try call(#"mem_write(0x7f0000000000, "secret\0\xff") = 8"#)
        #expect(try c.arg(1).asBytes() == Array("secret".utf8) + [0, 0xff])
    }

    @Test func suggestionsUseEditDistance() {
        #expect(TraceConstants.linux.suggestion(for: "MADV_DONTNEDE") == "MADV_DONTNEED")
        #expect(TraceConstants.linux.suggestion(for: "XYZZY_PLUGH_FOO") == nil)
        let extended = TraceConstants.linux.adding("PROT_SAO", 0x10, family: .prot)
        #expect(extended.value("PROT_SAO") == 0x10)
    }
}
