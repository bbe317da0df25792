// KeyMMTrace: the scenario/trace language (strace syntax).
