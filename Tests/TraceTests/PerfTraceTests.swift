// perf trace -F all lines: syscalls normalized to strace's positional form, faults as events.
import Testing
import KeyMMTrace

@Suite struct PerfTraceTests {
    @Test func mmapIsNormalizedToStraceForm() throws {
        let c = try call("     0.432 ( 0.027 ms): true/5347 mmap(len: 8192, prot: READ|WRITE, flags: PRIVATE|ANONYMOUS)           = 0x7efd41178000")
        #expect(c.pid == 5347 && c.name == "mmap")
        #expect(c.args == [.null, int(8192), .union([sym("PROT_READ"), sym("PROT_WRITE")]),
                           .union([sym("MAP_PRIVATE"), sym("MAP_ANONYMOUS")]), int(-1), int(0)])
        #expect(c.result.uint64Value == 0x7efd_4117_8000)
        #expect(abs((c.timestamp ?? 0) - 0.000432) < 1e-12)
        #expect(abs((c.duration ?? 0) - 0.000027) < 1e-12)
        #expect(try c.arg(2).asUInt64([.prot]) == 3)
        #expect(try c.arg(3).asUInt64([.map]) == 0x22)
        let f = try call("     1.217 ( 0.031 ms): sh/14834 mmap(addr: 0x7f3602401000, len: 1400832, prot: READ|EXEC, flags: PRIVATE|FIXED|DENYWRITE, fd: 4, off: 0x26000) = 0x7f3602401000")
        #expect(f.args[0] == hex(0x7f36_0240_1000) && f.args[4] == int(4) && f.args[5] == hex(0x26000))
    }

    @Test func otherCallsAndResults() throws {
        let o = try call("     0.527 ( 0.023 ms): true/5347 openat(dfd: CWD, filename: 0x411ab0b1, flags: RDONLY|CLOEXEC)         = 3")
        #expect(o.args[0] == sym("AT_FDCWD") && o.args[2] == .union([sym("O_RDONLY"), sym("O_CLOEXEC")]) && o.args[3] == int(0))
        let e = try call("     0.484 ( 0.021 ms): true/5347 access(filename: 0x411ac2a0, mode: R)                                 = -1 ENOENT (No such file or directory)")
        #expect(e.result == .errno("ENOENT", text: "No such file or directory"))
        #expect(e.args == [.named("filename", hex(0x411a_c2a0)), .named("mode", sym("R"))])
        let w = try call("    10.037 ( 0.017 ms): sh/14834 wait4(upid: -1, stat_addr: 0x7ffd2c29c35c, options: NOHANG)           = ")
        #expect(w.result.int64Value == 0 && w.args[2] == sym("WNOHANG"))
        let c = try call("     9.596 ( 0.306 ms): sh/14834 clone(clone_flags: CHILD_CLEARTID|CHILD_SETTID|0x11, child_tidptr: 0x7f36023d8a10) = 14835 (sh)")
        #expect(c.result.int64Value == 14835 && c.resultDetail == "sh")
        #expect(try c.arg(0).asUInt64([.clone]) == 0x200000 | 0x100_0000 | 0x11)
        let g = try call("    48.693 (         ): sh/14834 exit_group()                                                          = ?")
        #expect(g.result == .unknown && g.args == [int(0)])
        let x = try call("    90.945 ( 0.021 ms): python3/9530 fcntl(cmd: GETFD)                                                     = CLOEXEC")
        #expect(x.result == .value(sym("CLOEXEC")))
    }

    @Test func unfinishedAndContinued() throws {
        let all = try events("""
                 7.879 (         ): sh/15066 rt_sigsuspend(unewset: 0x7ffeedcf6e40, sigsetsize: 8)              ...
                 9.195 ( 0.583 ms): ls/15067 execve(filename: 0x4fc88fc8, argv: 0x562b4fc88bb8, envp: 0x562b4fc88e78) = 0
                 7.879 (13.363 ms): sh/15066  ... [continued]: rt_sigsuspend())                                    = -1 (unknown) (INTERNAL ERROR: strerror_r(514, [buf], 128)=22)
                     ? (         ): python3/9530  ... [continued]: execve())                                           = 0
            """)
        let calls = all.compactMap { if case .call(let c) = $0 { c } else { nil } }
        #expect(calls.map(\.name) == ["execve", "rt_sigsuspend", "execve"])
        #expect(calls[1].args.count == 2 && calls[1].result.int64Value == -1 && calls[1].location.line == 1)
        #expect(calls[2].pid == 9530 && calls[2].args.isEmpty && calls[2].result.int64Value == 0)
    }

    /// perf prints each half of clone3: the parent's `clone3(...) = CHILD` and the child's
    /// `CHILD ... [continued]: clone3()) = 0`. The child's half is no call of its own (issue 15:
    /// replaying it as one forked a stray process and made the parent's next clone3 EAGAIN).
    @Test func cloneChildHalfIsJoinedToTheParentsCall() throws {
        let parentFirst = try events("""
                 9.763 ( 0.310 ms): t/13289 clone3(uargs: 0x7fff6cf733b0, size: 88)                               = 13292
                     ? (         ): t/13292  ... [continued]: clone3())                                           = 0
                10.111 ( 0.000 ms): t/13292 mmap(len: 8192, prot: READ|WRITE, flags: PRIVATE|ANONYMOUS)           = 0x7f0000000000
                10.294 ( 0.073 ms): t/13289 clone3(uargs: 0x7fff6cf733b0, size: 88)                               = 13293
            """)
        let calls = parentFirst.compactMap { if case .call(let c) = $0 { c } else { nil } }
        #expect(calls.map(\.name) == ["clone3", "mmap", "clone3"])
        #expect(calls.map(\.pid) == [13289, 13292, 13289])
        #expect(calls[0].result.int64Value == 13292 && calls[2].result.int64Value == 13293)
        // The child's half first (per-CPU buffers without --sort-events): its events wait for
        // the parent's call that returns its pid.
        let childFirst = try events("""
                     ? (         ): t/13292  ... [continued]: clone3())                                           = 0
                10.111 ( 0.000 ms): t/13292 mmap(len: 8192, prot: READ|WRITE, flags: PRIVATE|ANONYMOUS)           = 0x7f0000000000
                 9.763 ( 0.310 ms): t/13289 clone3(uargs: 0x7fff6cf733b0, size: 88)                               = 13292
                 9.900 ( 0.010 ms): t/13289 munmap(addr: 0x7f0000000000, len: 8192)                               = 0
            """)
        let c2 = childFirst.compactMap { if case .call(let c) = $0 { c } else { nil } }
        #expect(c2.map(\.name) == ["clone3", "mmap", "munmap"])
        #expect(c2.map(\.pid) == [13289, 13292, 13289])
    }

    @Test func bracketedSymbolsAndCommDecoratedPids() throws {
        let all = try events("""
               238.502 ( 0.000 ms): node/14422 minfault [node::RealEnvStore::Get[abi:cxx11]+0x0] => /usr/bin/node@0x8b2de0 (d.)
               433.863 ( 0.014 ms): node/14422 sched_getaffinity(pid: 14422 (node), len: 32, user_mask_ptr: 0x1df837a0) = 32
            """)
        guard all.count == 2, case .fault(let f) = all[0], case .call(let c) = all[1] else {
            Issue.record("expected a fault and a call, got \(all)"); return
        }
        #expect(f.ip == "node::RealEnvStore::Get[abi:cxx11]+0x0" && f.map == "/usr/bin/node" && f.mapOffset == 0x8b2de0)
        #expect(c.args == [.named("pid", int(14422)), .named("len", int(32)), .named("user_mask_ptr", hex(0x1df8_37a0))])
        #expect(c.result.int64Value == 32)
    }

    @Test func faults() throws {
        let all = try events("""
                 0.000 ( 0.000 ms): true/5152 minfault [elf_load+0x28a] => 0x55678e2141e0 (?k)
                 0.562 ( 0.000 ms): true/5152 minfault [_start+0x0] => /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2@0x1ab70 (d.)
                 0.967 ( 0.000 ms): true/5152 majfault [do_lookup_x+0x18] => [stack]@0x7fffb06cff98 (d.)
                 0.994 ( 0.000 ms): true/5152 minfault [_dl_init_paths+0xce] => //anon@0x7f73d6991008 (x.)
            """)
        let faults = all.compactMap { if case .fault(let f) = $0 { f } else { nil } }
        #expect(faults.count == 4)
        #expect(faults[0].address == 0x5567_8e21_41e0 && faults[0].map == nil && faults[0].flags == "?k" && faults[0].ip == "elf_load+0x28a")
        #expect(faults[1].map == "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" && faults[1].mapOffset == 0x1ab70)
        #expect(faults[2].kind == .major && faults[2].map == "[stack]" && faults[2].mapOffset == 0x7fff_b06c_ff98)
        #expect(faults[3].map == "//anon" && faults[3].flags == "x." && faults[3].pid == 5152)
        #expect(abs((faults[1].timestamp ?? 0) - 0.000562) < 1e-12)
    }

    @Test func malformedPerfLinesAreLocated() {
        #expect(parseError("     0.1 ( 0.0 ms): nopid mmap(len: 1) = 0")?.hasPrefix("t.strace:1:") == true)
        #expect(parseError("     0.1 ( 0.0 ms): a/1 mmap(len 1) = 0")?.contains("expected ':' after the argument name len") == true)
        #expect(parseError("     0.1 ( 0.0 ms): a/1 minfault [x] => nowhere (d.)")?.contains("expected 0xADDRESS or MAP@0xOFFSET") == true)
    }
}
