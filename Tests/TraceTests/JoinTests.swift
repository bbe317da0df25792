// strace -f's <unfinished ...> / <... NAME resumed> pairs, interleaved PIDs, and the hold-back
// of a new process's events until the call that created it has its result.
import Testing
import KeyMMTrace

private func calls(_ events: [TraceEvent]) -> [SyscallLine] {
    events.compactMap { if case .call(let c) = $0 { c } else { nil } }
}

@Suite struct JoinTests {
    @Test func joinsAcrossInterleavedPids() throws {
        let all = try events("""
            5138  read(3,  <unfinished ...>
            5139  mmap(NULL, 8192, PROT_READ|PROT_WRITE <unfinished ...>
            5140  close(7) = 0
            5139  <... mmap resumed>, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000000000
            5138  <... read resumed>"abc", 3) = 3 <0.000100>
            """)
        let c = calls(all)
        #expect(c.map(\.name) == ["close", "mmap", "read"])
        #expect(c.map(\.pid) == [5140, 5139, 5138])
        let mmap = c[1]
        #expect(mmap.args == [.null, int(8192), .union([sym("PROT_READ"), sym("PROT_WRITE")]),
                              .union([sym("MAP_PRIVATE"), sym("MAP_ANONYMOUS")]), int(-1), int(0)])
        #expect(mmap.result.uint64Value == 0x7f00_0000_0000)
        #expect(mmap.location.line == 2 && mmap.location.column == 7)
        let read = c[2]
        #expect(read.args == [int(3), str("abc"), int(3)])
        #expect(read.location.line == 1)
        #expect(read.duration == 0.0001)
        #expect(read.result.int64Value == 3)
    }

    @Test func bracketPidFormAndTimestampsKeepTheUnfinishedTime() throws {
        let all = try events("""
            [pid  7] 10:00:01.000000 wait4(-1,  <unfinished ...>
            [pid  8] 10:00:02.000000 exit_group(0) = ?
            [pid  8] 10:00:02.000001 +++ exited with 0 +++
            [pid  7] 10:00:03.000000 <... wait4 resumed>[{WIFEXITED(s) && WEXITSTATUS(s) == 0}], 0, NULL) = 8
            """)
        let c = calls(all)
        #expect(c.map(\.name) == ["exit_group", "wait4"])
        #expect(c[1].timestamp == 36001)
        #expect(c[1].args.count == 4)
        #expect(c[1].result.int64Value == 8)
    }

    @Test func resumedArrowContinuesTheLastArgument() throws {
        let c = calls(try events("""
            100  clone3({flags=CLONE_VM|CLONE_VFORK, exit_signal=SIGCHLD, stack=0x7f00, stack_size=0x9000} <unfinished ...>
            100  <... clone3 resumed> => {parent_tid=[101]}, 88) = 101
            """))
        #expect(c.count == 1)
        #expect(c[0].args.count == 2)
        #expect(c[0].args[0].field("parent_tid") == .array([int(101)], truncated: false))
        #expect(c[0].args[0].field("flags") == .union([sym("CLONE_VM"), sym("CLONE_VFORK")]))
    }

    @Test func childEventsWaitForTheCloneResult() throws {
        let all = try events("""
            5138  clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD <unfinished ...>
            5140  set_robust_list(0x7f1234, 24) = 0
            5140  mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000001000
            5139  close(3) = 0
            5138  <... clone resumed>, child_tidptr=0x7f1234) = 5140
            5140  exit_group(0) = ?
            """)
        let c = calls(all)
        // 5139 is unknown too while the clone is in flight, so it waits as well; 5140 is released with its creator.
        #expect(c.map(\.name) == ["clone", "set_robust_list", "mmap", "close", "exit_group"])
        #expect(c[0].args.count == 3)
        #expect(c[0].argument(named: "child_tidptr")?.value == hex(0x7f1234))
        #expect(c[0].location.line == 1)
    }

    @Test func knownProcessesAreNotHeldBack() throws {
        let c = calls(try events("""
            1  close(9) = 0
            2  close(8) = 0
            1  vfork( <unfinished ...>
            2  close(7) = 0
            3  execve("/bin/true", ["true"], 0x1 /* 1 var */) = 0
            1  <... vfork resumed>) = 3
            """))
        #expect(c.map(\.name) == ["close", "close", "close", "vfork", "execve"])
        #expect(c[2].pid == 2)
    }

    @Test func exitFlushesUnfinishedCalls() throws {
        let all = try events("""
            [pid 9] futex(0x7f00, FUTEX_WAIT_PRIVATE, 2, NULL <unfinished ...>
            [pid 9] +++ killed by SIGKILL +++
            [pid 10] exit_group(0 <unfinished ...>
            [pid 10] +++ exited with 0 +++
            """)
        let c = calls(all)
        #expect(c.count == 2)
        #expect(c[0].name == "futex" && c[0].result == .unfinished && c[0].args.count == 4)
        #expect(c[1].name == "exit_group" && c[1].result == .unknown)
        #expect(all.count == 4)
        if case .killed(9, "SIGKILL", false, _) = all[1] {} else { Issue.record("kill after flushed futex") }
    }

    @Test func unfinishedThenClosedOnTheSameLine() throws {
        let c = try call("[pid 9] futex(0x7f00, FUTEX_WAIT_PRIVATE, 2, NULL <unfinished ...>) = ?")
        #expect(c.result == .unknown && c.args.count == 4)
    }

    @Test func endOfInputFlushesInLineOrder() throws {
        let c = calls(try events("""
            2  read(0,  <unfinished ...>
            1  wait4(-1,  <unfinished ...>
            """))
        #expect(c.map(\.name) == ["read", "wait4"])
        #expect(c.allSatisfy { $0.result == .unfinished })
    }

    @Test func resumedUnfinishedAgain() throws {
        let c = calls(try events("""
            4  read(3,  <unfinished ...>
            4  <... read resumed> <unfinished ...>
            4  +++ exited with 1 +++
            """))
        #expect(c.count == 1 && c[0].result == .unfinished)
    }

    @Test func aSecondUnfinishedCallEndsTheFirst() throws {
        // The clone never resumes; the next unfinished call of the same PID ends it, and the
        // unknown PID 9 is no longer held back once no creation is in flight.
        let c = calls(try events("""
            1  clone(child_stack=NULL, flags=SIGCHLD <unfinished ...>
            1  read(0,  <unfinished ...>
            9  close(3) = 0
            1  <... read resumed>"", 1) = 0
            """))
        #expect(c.map(\.name) == ["clone", "close", "read"])
        #expect(c[0].result == .unfinished)
    }

    @Test func encryptMprotectResumesUnderEitherSpelling() throws {
        let c = calls(try events("""
            5  syscall_0x1b2(0x7f0000000000, 4096 <unfinished ...>
            6  close(1) = 0
            5  <... syscall_0x1b2 resumed>, PROT_READ, 77) = 0
            """))
        #expect(c.map(\.name) == ["close", "encrypt_mprotect"])
        #expect(c[1].args.count == 4 && c[1].spelledName == "syscall_0x1b2")
    }
}
