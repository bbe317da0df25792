// KeyMMWorkloads: running scenarios and traces, bench workloads.
import KeyMMBase
