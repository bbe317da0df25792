// Every argument form of the trace language parses to the value it means.
import Testing
import KeyMMTrace

@Suite struct ArgumentFormTests {
    @Test func integersInEveryRadix() throws {
        let c = try call("f(0, 42, -1, 0x7fdf87bce000, 0644, 0xffffffffffffffff, -100, 0)")
        #expect(c.args[0] == int(0))
        #expect(c.args[1] == int(42))
        #expect(c.args[2] == int(-1))
        #expect(c.args[3] == hex(0x7fdf_87bc_e000))
        #expect(c.args[4] == .int(TraceInteger(magnitude: 0o644, radix: .octal)))
        #expect(c.args[5].integer?.bitPattern == UInt64.max)
        #expect(c.args[5].integer?.int64Value == nil)
        #expect(c.args[6].integer?.int64Value == -100)
        #expect(c.args[2].integer?.bitPattern == UInt64.max)
    }

    @Test func hugeIntegersAndDecimalsAreKeptAsText() throws {
        let c = try call("f(123456789012345678901234567890, 0x1ffffffffffffffff, 0.5, -99999999999999999999)")
        #expect(c.args[0] == .raw("123456789012345678901234567890"))
        #expect(c.args[1] == .raw("0x1ffffffffffffffff"))
        #expect(c.args[2] == .raw("0.5"))
        #expect(c.args[3] == .raw("-99999999999999999999"))
    }

    @Test func nullSymbolsAndUnions() throws {
        let c = try call("mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7fdf87bce000")
        #expect(c.name == "mmap")
        #expect(c.args == [.null, int(8192), .union([sym("PROT_READ"), sym("PROT_WRITE")]),
                           .union([sym("MAP_PRIVATE"), sym("MAP_ANONYMOUS")]), int(-1), int(0)])
        #expect(c.result == .value(hex(0x7fdf_87bc_e000)))
        #expect(c.pid == nil)
    }

    @Test func arithmeticForms() throws {
        let c = try call("f(0x1000|PROT_READ, 1<<20, 8192*1024, MAP_PRIVATE|MAP_HUGETLB|21<<MAP_HUGE_SHIFT, 2+3, 64>>2)")
        #expect(c.args[0] == .union([hex(0x1000), sym("PROT_READ")]))
        #expect(c.args[1] == int(1 << 20))
        #expect(c.args[2] == int(8192 * 1024))
        #expect(c.args[3] == .union([sym("MAP_PRIVATE"), sym("MAP_HUGETLB"),
                                     .binary(.shiftLeft, int(21), sym("MAP_HUGE_SHIFT"))]))
        #expect(c.args[4] == int(5))
        #expect(c.args[5] == int(16))
    }

    @Test func stringsWithEscapes() throws {
        let c = try call(#"write(1, "a\nb\tc\"d\\e\x41\101\0\177ELF\r\v\f", 20)"#)
        #expect(c.args[1].string?.bytes == Array("a\nb\tc\"d\\eAA".utf8) + [0] + Array("\u{7f}ELF\r".utf8) + [0x0b, 0x0c])
        #expect(c.args[1].string?.truncated == false)
    }

    @Test func truncatedStrings() throws {
        let c = try call(#"read(3, "\177ELF\2\1\1\3\0\0\0"..., 832) = 832"#)
        let s = try #require(c.args[1].string)
        #expect(s.truncated)
        #expect(s.bytes == [0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 3, 0, 0, 0])
        #expect(c.args[2] == int(832))
        #expect(c.result.int64Value == 832)
    }

    @Test func bytesThatAreNotUTF8StayBytes() throws {
        let bytes: [UInt8] = Array("f(\"".utf8) + [0xff, 0xfe, 0x80] + Array("\")".utf8)
        let all = try TraceReader(bytes: bytes).readAll()
        guard case .call(let c) = all.first else { Issue.record("no call"); return }
        #expect(c.args[0].string?.bytes == [0xff, 0xfe, 0x80])
    }

    @Test func structuresWithFieldsAndElision() throws {
        let c = try call("fstat(3, {st_mode=S_IFREG|0644, st_size=27002, ...}) = 0")
        guard case .structure(let fields, let truncated) = c.args[1] else { Issue.record("not a structure"); return }
        #expect(truncated)
        #expect(fields.count == 2)
        #expect(c.args[1].field("st_size") == int(27002))
        #expect(c.args[1].field("st_mode") == .union([sym("S_IFREG"), .int(TraceInteger(magnitude: 0o644, radix: .octal))]))
        #expect(c.args[1].field("st_ino") == nil)
        let elided = try call("fstat(3, {...}) = 0")
        #expect(elided.args[1] == .structure([], truncated: true))
    }

    @Test func newfstatatAndCommentsInsideArguments() throws {
        let c = try call(#"newfstatat(AT_FDCWD, "/etc", {st_mode=S_IFDIR|0755, st_size=4096, ...}, 0) = 0"#)
        #expect(c.args[0] == sym("AT_FDCWD"))
        #expect(c.args[1] == str("/etc"))
        let e = try call(#"execve("/usr/bin/true", ["true"], 0x7ffd2e587758 /* 39 vars */) = 0"#)
        #expect(e.args[1] == .array([str("true")], truncated: false))
        #expect(e.args[2] == hex(0x7ffd_2e58_7758))
        let g = try call("getdents64(3, 0x55d0c0a2e000 /* 5 entries */, 32768) = 160")
        #expect(g.args.count == 3)
    }

    @Test func arraysTruncatedAndSpaceSeparated() throws {
        let c = try call(#"execve("/bin/sh", ["sh", "-c", ...], 0x1) = 0"#)
        #expect(c.args[1] == .array([str("sh"), str("-c")], truncated: true))
        let s = try call("rt_sigprocmask(SIG_BLOCK, [CHLD INT], [], 8) = 0")
        #expect(s.args[1] == .array([sym("CHLD"), sym("INT")], truncated: false))
        #expect(s.args[2] == .array([], truncated: false))
        let n = try call("rt_sigprocmask(SIG_SETMASK, ~[RTMIN RT_1], NULL, 8) = 0")
        #expect(n.args[1] == .unary(.complement, .array([sym("RTMIN"), sym("RT_1")], truncated: false)))
        let e = try call("f([...])")
        #expect(e.args[0] == .array([], truncated: true))
    }

    @Test func cloneNamedArguments() throws {
        let c = try call("clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7f1b2c3d4a10) = 5140")
        #expect(c.args[0] == .named("child_stack", .null))
        #expect(c.args[1] == .named("flags", .union([sym("CLONE_CHILD_CLEARTID"), sym("CLONE_CHILD_SETTID"), sym("SIGCHLD")])))
        #expect(c.argument(named: "child_tidptr")?.value == hex(0x7f1b_2c3d_4a10))
        #expect(c.result.int64Value == 5140)
    }

    @Test func clone3InOutForm() throws {
        let c = try call("clone3({flags=CLONE_VM|CLONE_VFORK, exit_signal=SIGCHLD, stack=0x7f00, stack_size=0x9000} => {parent_tid=[5141]}, 88) = 5141")
        guard case .changed(let before, let after) = c.args[0] else { Issue.record("no =>"); return }
        #expect(before.field("flags") == .union([sym("CLONE_VM"), sym("CLONE_VFORK")]))
        #expect(after.field("parent_tid") == .array([int(5141)], truncated: false))
        #expect(c.args[0].field("stack_size") == hex(0x9000))
        #expect(c.args[1] == int(88))
    }

    @Test func functionFormsAndLogicalExpressions() throws {
        let c = try call("wait4(-1, [{WIFEXITED(s) && WEXITSTATUS(s) == 0}], 0, NULL) = 5140")
        let expected: TraceValue = .array([.structure([
            .binary(.logicalAnd, .call("WIFEXITED", [sym("s")]),
                    .binary(.equal, .call("WEXITSTATUS", [sym("s")]), int(0)))], truncated: false)], truncated: false)
        #expect(c.args[1] == expected)
        let m = try call("mknodat(AT_FDCWD, \"/dev/x\", S_IFCHR|0600, makedev(0x8, 0x1)) = 0")
        #expect(m.args[3] == .call("makedev", [hex(8), hex(1)]))
        let i = try call("ioctl(0, SNDCTL_TMR_TIMEBASE or TCGETS, 0x7ffd1234) = -1 ENOTTY (Inappropriate ioctl for device)")
        #expect(i.args[1] == .binary(.alternative, sym("SNDCTL_TMR_TIMEBASE"), sym("TCGETS")))
    }

    @Test func fdDecorations() throws {
        let c = try call("read(3</etc/ld.so.cache>, 0x7ffd, 832) = 832")
        #expect(c.args[0] == .fd(TraceInteger(3), "/etc/ld.so.cache"))
        #expect(c.args[0].integer?.int64Value == 3)
        let s = try call("close(4<TCP:[10.0.0.1:22->10.0.0.2:5555]>) = 0")
        #expect(s.args[0] == .fd(TraceInteger(4), "TCP:[10.0.0.1:22->10.0.0.2:5555]"))
    }

    @Test func elisionAndEmptyArguments() throws {
        let c = try call("sched_yield() = 0")
        #expect(c.args.isEmpty)
        let e = try call("f(1, ...)")
        #expect(e.args == [int(1), .elided])
        #expect(e.result == .none)
    }

    @Test func addressOfAndNot() throws {
        let c = try call("inet_pton(AF_INET6, \"::1\", &sin6_addr) = 1")
        #expect(c.args[2] == .unary(.addressOf, sym("sin6_addr")))
    }

    @Test func argumentColumnsPointAtArguments() throws {
        let c = try call("mmap(NULL, 8192, PROT_READ, MAP_SHARED, 3, 0)")
        #expect(c.location(ofArgument: 0).column == 6)
        #expect(c.location(ofArgument: 1).column == 12)
        #expect(c.location(ofArgument: 2).column == 18)
        #expect(c.location.column == 1)
    }

    @Test func syscall434IsEncryptMprotect() throws {
        for spelled in ["syscall_0x1b2", "syscall_434"] {
            let c = try call("\(spelled)(0x7f0000000000, 4096, PROT_READ|PROT_WRITE, 123456) = 0")
            #expect(c.name == "encrypt_mprotect")
            #expect(c.spelledName == spelled)
            #expect(c.args.count == 4)
            #expect(c.description.hasPrefix(spelled + "("))
        }
        let plain = try call("encrypt_mprotect(0x1000, 4096, PROT_READ, 5) = 0")
        #expect(plain.name == "encrypt_mprotect" && plain.spelledName == nil)
        let other = try call("syscall_0x1b3(1) = -1 ENOSYS (Function not implemented)")
        #expect(other.name == "syscall_0x1b3")
    }

    @Test func modelOnlyCalls() throws {
        let all = try events("""
            file_create("/data/f", 65536) = 0
            mem_write(0x7f0000000000, "hello\\n") = 6
            mem_read(0x7f0000000000, 6) = "hello\\n"
            mem_touch(0x7f0000000000, 8192, PROT_READ|PROT_WRITE) = 2
            mem_write(0x10, "x") = SIGSEGV
            mem_read(0x7f0000100000, 1) = SIGBUS
            virt_to_phys(0x7f0000000000) = 0x12345000
            virt_to_phys(0x10) = -1 EFAULT (Bad address)
            phys_read(0x12345000, 64) = "\\x8f\\x01"
            wbinvd() = 0
            clflush(0x7f0000000000, 4096) = 0
            gup_pin(0x7f0000000000, 2) = 1
            gup_unpin(1) = 0
            ksm_scan() = 0
            khugepaged_scan() = 0
            reclaim(128) = 128
            numa_balance() = 0
            """)
        #expect(all.count == 17)
        let calls = all.compactMap { if case .call(let c) = $0 { c } else { nil } }
        #expect(calls.map(\.name) == ["file_create", "mem_write", "mem_read", "mem_touch", "mem_write", "mem_read",
                                     "virt_to_phys", "virt_to_phys", "phys_read", "wbinvd", "clflush", "gup_pin",
                                     "gup_unpin", "ksm_scan", "khugepaged_scan", "reclaim", "numa_balance"])
        #expect(calls[2].result == .value(str("hello\n")))
        #expect(calls[4].result == .signal("SIGSEGV"))
        #expect(calls[5].result == .signal("SIGBUS"))
        #expect(calls[7].result == .errno("EFAULT", text: "Bad address"))
        #expect(calls[8].result == .value(.string(TraceString(bytes: [0x8f, 0x01]))))
    }
}
