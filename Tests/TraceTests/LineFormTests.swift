// Line prefixes (PIDs, timestamps), results, exit/signal lines, comments and directives.
import Testing
import KeyMMTrace

@Suite struct LineFormTests {
    @Test func pidForms() throws {
        #expect(try call("5138  brk(NULL) = 0x55860efe1000").pid == 5138)
        #expect(try call("[pid  5140] brk(NULL) = 0x55860efe1000").pid == 5140)
        #expect(try call("[pid 7] brk(NULL)").pid == 7)
        #expect(try call("1 mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x1000").pid == 1)
        #expect(try call("brk(NULL) = 0x1000").pid == nil)
    }

    @Test func timestamps() throws {
        let t = try call("10:21:33 brk(NULL) = 0x1000")
        #expect(t.timestamp == 37293.0)
        let tt = try call("10:21:33.250000 brk(NULL) = 0x1000")
        #expect(tt.timestamp == 37293.25)
        let ttt = try call("1700000000.500000 brk(NULL) = 0x1000")
        #expect(ttt.timestamp == 1_700_000_000.5)
        let withPid = try call("5138  10:21:33.000001 brk(NULL) = 0x1000")
        #expect(withPid.pid == 5138)
        #expect(abs((withPid.timestamp ?? 0) - 37293.000001) < 1e-6)
        let bracket = try call("[pid 12] 1700000000.000100 brk(NULL) = 0x1000")
        #expect(bracket.pid == 12 && abs((bracket.timestamp ?? 0) - 1_700_000_000.0001) < 1e-5)
        let ip = try call("[00007f1234567890] brk(NULL) = 0x1000")
        #expect(ip.name == "brk")
    }

    @Test func durations() throws {
        let c = try call("mmap(NULL, 4096, PROT_READ, MAP_SHARED, 3, 0) = 0x7f0000000000 <0.000012>")
        #expect(c.duration == 0.000012)
        #expect(c.result.uint64Value == 0x7f00_0000_0000)
        let e = try call("openat(AT_FDCWD, \"/x\", O_RDONLY) = -1 ENOENT (No such file or directory) <0.000020>")
        #expect(e.duration == 0.00002)
        #expect(e.result == .errno("ENOENT", text: "No such file or directory"))
        let all = try call("5138  10:21:33.123456 close(3) = 0 <0.000005>")
        #expect(all.pid == 5138 && all.duration == 0.000005 && all.result.int64Value == 0)
    }

    @Test func resultForms() throws {
        #expect(try call("brk(NULL) = 0x55d0c0a2e000").result.uint64Value == 0x55d0_c0a2_e000)
        #expect(try call("close(3) = 0").result == .value(int(0)))
        #expect(try call("exit_group(0) = ?").result == .unknown)
        #expect(try call("munmap(0x1000, 4096)").result == .none)
        #expect(try call("mmap(NULL, 1, PROT_READ, MAP_PRIVATE, -1, 0) = -1 ENOMEM (Cannot allocate memory)").result
                == .errno("ENOMEM", text: "Cannot allocate memory"))
        #expect(try call("mprotect(0x1000, 4096, PROT_READ) = -1 EINVAL").result == .errno("EINVAL", text: nil))
        let r = try call("read(0, 0x7ffc, 10) = ? ERESTARTSYS (To be restarted if SA_RESTART is set)")
        #expect(r.result == .errno("ERESTARTSYS", text: "To be restarted if SA_RESTART is set"))
        let p = try call("poll([{fd=3, events=POLLIN}], 1, 0) = 0 (Timeout)")
        #expect(p.result.int64Value == 0 && p.resultDetail == "Timeout")
        let q = try call("poll([{fd=3, events=POLLIN}], 1, 0) = 1 ([{fd=3, revents=POLLIN}])")
        #expect(q.resultDetail == "[{fd=3, revents=POLLIN}]")
        let f = try call("fcntl(3, F_GETFD) = 0x1 (flags FD_CLOEXEC)")
        #expect(f.result.int64Value == 1 && f.resultDetail == "flags FD_CLOEXEC")
        let y = try call("openat(AT_FDCWD, \"/etc/passwd\", O_RDONLY|O_CLOEXEC) = 3</etc/passwd>")
        #expect(y.result.int64Value == 3)
        #expect(y.result == .value(.fd(TraceInteger(3), "/etc/passwd")))
        #expect(try call("f() = -5").result.int64Value == -5)
        #expect(try call("mem_write(0x0, \"a\") = SIGSEGV").result == .signal("SIGSEGV"))
        #expect(try call("f() = 0 # expected zero").result == .value(int(0)))
        #expect(try call("f() # no expectation").result == .none)
    }

    @Test func paddedResultColumn() throws {
        let c = try call("brk(NULL)                               = 0x55860efe1000")
        #expect(c.result.uint64Value == 0x5586_0efe_1000)
    }

    @Test func exitKillSignalAndSupersededLines() throws {
        let all = try events("""
            5140  +++ exited with 0 +++
            [pid 5141] +++ killed by SIGKILL +++
            +++ killed by SIGSEGV (core dumped) +++
            5138  --- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED, si_pid=5140, si_uid=0, si_status=0, si_utime=0, si_stime=0} ---
            --- SIGSEGV {si_signo=SIGSEGV, si_code=SEGV_MAPERR, si_addr=0x10} ---
            --- SIGALRM (Alarm clock) @ 0 (0) ---
            5143  +++ superseded by execve in pid 5142 +++
            1 +++ exited with 255 +++
            """)
        guard all.count == 8 else { Issue.record("got \(all.count) events"); return }
        if case .exited(let pid, let code, let loc) = all[0] {
            #expect(pid == 5140 && code == 0 && loc.line == 1 && loc.column == 7)
        } else { Issue.record("not exited") }
        #expect(all[1] == .killed(pid: 5141, signal: "SIGKILL", coreDumped: false, location: all[1].location))
        #expect(all[2] == .killed(pid: nil, signal: "SIGSEGV", coreDumped: true, location: all[2].location))
        if case .signal(let pid, let name, let info, _) = all[3] {
            #expect(pid == 5138 && name == "SIGCHLD")
            #expect(info?.field("si_pid") == int(5140))
        } else { Issue.record("not signal") }
        if case .signal(_, "SIGSEGV", let info, _) = all[4] {
            #expect(info?.field("si_addr") == hex(0x10))
        } else { Issue.record("not SIGSEGV") }
        if case .signal(_, "SIGALRM", nil, _) = all[5] {} else { Issue.record("old signal form") }
        #expect(all[6] == .superseded(pid: 5143, by: 5142, location: all[6].location))
        if case .exited(1, 255, _) = all[7] {} else { Issue.record("exit 255") }
    }

    @Test func commentsBlankLinesAndChatterAreSkipped() throws {
        let all = try events("""
            # a scenario
               # indented comment

            strace: Process 5140 attached
            5140  --- stopped by SIGSTOP ---
            ????( <detached ...>
            close(3) = 0
            """)
        #expect(all.count == 1)
        #expect(all.first?.location.line == 7)
    }

    @Test func setDirectives() throws {
        let all = try events("#@ set memory=4G\n#@ set   keyid-bits = 6\n#@ set policy=integrated # not a comment\n")
        #expect(all.count == 3)
        #expect(all[0] == .set(key: "memory", value: "4G", location: all[0].location))
        #expect(all[1] == .set(key: "keyid-bits", value: "6", location: all[1].location))
        #expect(all[2] == .set(key: "policy", value: "integrated # not a comment", location: all[2].location))
    }

    @Test func crlfAndMissingFinalNewline() throws {
        let all = try events("close(3) = 0\r\nclose(4) = 0")
        #expect(all.count == 2)
        if case .call(let c) = all[1] { #expect(c.location.line == 2 && c.result.int64Value == 0) }
    }

    @Test func locationsCarryFileLineColumn() throws {
        let all = try events("\n\n   5  mmap(NULL, 1, PROT_READ, MAP_PRIVATE, -1, 0)\n", name: "s.scenario")
        #expect(all.first?.location == KeyMMTrace.SourceLocation(file: "s.scenario", line: 3, column: 7))
    }
}
